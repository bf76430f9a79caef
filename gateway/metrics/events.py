"""Event sinks (MQTT, ...): events published, sent, dropped; connections."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from gateway.metrics.source import MetricsSource


_EVENT_COUNTERS = {
    "tandem_event_sink_published": "Events handed to a sink",
    "tandem_event_sink_sent": "Events a sink's transport took",
    "tandem_event_sink_dropped": "Events lost (buffer full, or not encodable)",
    "tandem_event_sink_connects": "Connections a sink made",
    "tandem_event_sink_connect_failures": "Connection attempts of a sink that failed",
}
_EVENT_COUNTERS_FROM = {
    "tandem_event_sink_published": "published",
    "tandem_event_sink_sent": "sent",
    "tandem_event_sink_dropped": "dropped",
    "tandem_event_sink_connects": "connects",
    "tandem_event_sink_connect_failures": "connect_failures",
}


def event_families(gateway: MetricsSource) -> Iterator[Metric]:
    """Each event sink's counters, labelled by sink."""
    events: Any = getattr(gateway, "events", None)
    if events is not None:
        by_sink = events.stats()
        families = {
            name: CounterMetricFamily(name, documentation, labels=["sink"])
            for name, documentation in _EVENT_COUNTERS.items()
        }
        buffered = GaugeMetricFamily(
            "tandem_event_sink_buffered",
            "Events waiting in a sink's buffer",
            labels=["sink"],
        )
        for sink in sorted(by_sink):
            stats = by_sink[sink]
            for name in families:
                families[name].add_metric([sink], getattr(stats, _EVENT_COUNTERS_FROM[name]))
            buffered.add_metric([sink], stats.buffered)
        yield from families.values()
        yield buffered
