"""The process: build and Python version, node name, start time, the event loop's lag."""

from __future__ import annotations

import functools
import platform
from collections.abc import Iterator
from importlib import metadata
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric

from gateway.metrics.families import histogram_family
from gateway.metrics.loop_lag import LoopLag

if TYPE_CHECKING:
    from gateway.metrics.source import MetricsSource


@functools.cache
def _version() -> str:
    """Read once: the installed metadata is parsed from disk (milliseconds a scrape)."""
    try:
        return metadata.version("tandem")
    except metadata.PackageNotFoundError:
        return "unknown"


def process_families(
    gateway: MetricsSource, started_at: float, loop_lag: LoopLag | None
) -> Iterator[Metric]:
    yield InfoMetricFamily(
        "tandem_build",
        "The running Tandem's version and Python",
        value={"version": _version(), "python": platform.python_version()},
    )
    yield InfoMetricFamily(
        "tandem_node",
        "This node's [node] name (several nodes on one PostgreSQL database tell apart)",
        value={"node": gateway.config.node.name},
    )
    yield GaugeMetricFamily(
        "tandem_start_time_seconds",
        "When the daemon started, unix seconds",
        value=started_at,
    )
    lag = loop_lag
    if lag is not None:
        family = histogram_family(
            "tandem_event_loop_lag_seconds",
            "How late the event loop woke up from a sleep",
            [((), lag.histogram)],
        )
        if family is not None:
            yield family
