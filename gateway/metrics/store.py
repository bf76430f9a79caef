"""The store: commits, the write requests they carry, the writer's queue; the retention purge."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, Metric

from gateway.metrics.families import counter_by_labels, counter_family

if TYPE_CHECKING:
    from gateway.metrics.source import MetricsSource


def store_families(gateway: MetricsSource) -> Iterator[Metric]:
    store = gateway.message_store
    stats = store.stats()
    yield counter_family("tandem_store_commits", "Store transactions committed", stats.commits)
    yield counter_family(
        "tandem_store_operations",
        "Write requests those transactions carried (batch size: rate of this over commits)",
        stats.operations,
    )
    yield counter_family("tandem_store_rows", "Rows the write requests wrote", stats.rows)
    yield counter_family(
        "tandem_store_failed_operations",
        "Write requests that raised (rolled back)",
        stats.failed_operations,
    )
    yield GaugeMetricFamily(
        "tandem_store_largest_batch_operations",
        "Most write requests one transaction carried",
        value=stats.largest_batch,
    )
    yield GaugeMetricFamily(
        "tandem_store_queued_operations",
        "Write requests waiting for the writer now",
        value=stats.queued,
    )


def retention_families(gateway: MetricsSource) -> Iterator[Metric]:
    """What the retention purge removed, and how long its longest op took."""
    retention: Any = getattr(gateway, "retention", None)
    if retention is not None:
        stats = retention.retention.stats
        yield counter_by_labels(
            "tandem_retention_removed",
            "Rows the retention purge removed, by kind",
            ["kind"],
            stats.removed,
        )
        yield counter_family("tandem_retention_runs", "Retention purges run", stats.runs)
        yield GaugeMetricFamily(
            "tandem_retention_longest_op_seconds",
            "The longest writer op of the purges (the stall it adds to a commit)",
            value=stats.longest_op_seconds,
        )
