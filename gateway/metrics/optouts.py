"""The opt-out list: entries, changes by kind, messages refused because of it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway.metrics.families import counter_family

if TYPE_CHECKING:
    from gateway.metrics.source import MetricsSource


def optout_families(gateway: MetricsSource) -> Iterator[Metric]:
    """The opt-out list, when the daemon keeps one."""
    optouts: Any = getattr(gateway, "optouts", None)
    if optouts is not None:
        stats = optouts.stats
        yield GaugeMetricFamily(
            "tandem_optouts_entries",
            "Opt-outs in force (number and scope)",
            value=stats.entries,
        )
        yield GaugeMetricFamily(
            "tandem_optouts_numbers",
            "Numbers with at least one opt-out",
            value=stats.numbers,
        )
        changes = CounterMetricFamily(
            "tandem_optout_changes",
            "Opt-out list changes, by kind: opt_out, opt_in, keyword (opt-outs by keyword), "
            "lenient (keyword inside a short sentence), synced (from other writers)",
            labels=["kind"],
        )
        for kind, attribute in (
            ("opt_out", "opt_outs"),
            ("opt_in", "opt_ins"),
            ("keyword", "keyword_opt_outs"),
            ("lenient", "lenient_opt_outs"),
            ("synced", "synced_changes"),
        ):
            changes.add_metric([kind], getattr(stats, attribute))
        yield changes
        refused = CounterMetricFamily(
            "tandem_optout_refusals",
            "Messages refused because the recipient opted out, by channel (queued: "
            "accepted before the opt-out, stopped as a link took them)",
            labels=["channel"],
        )
        for channel in ("http", "smpp", "otp", "internal", "queued"):
            refused.add_metric([channel], getattr(stats, f"refused_{channel}"))
        yield refused
        yield counter_family(
            "tandem_optout_write_failures",
            "Opt-out changes not written",
            stats.write_failures,
        )
