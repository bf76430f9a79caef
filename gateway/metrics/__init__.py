"""The Prometheus exporter: what the daemon's counters say, read at scrape time.

Owns `TandemCollector` (`collector`: a prometheus-client custom collector over the stats
dataclasses the rooms already keep: `GatewayStats`, `IntakeStats`, the links' stats,
`CustomerServerStats`, `HttpStats`, `OtpStats`, `CallbackStats`, the store's `StoreStats`,
`BacklogStats`, ...), `LoopLag` (`loop_lag`: the event loop's lag, measured as a sleep's
overshoot), the answers of `GET /healthz` and `GET /readyz` (`health`), and `MetricsExporter`
(`exporter`), which ties them to the daemon (and to a listener of its own when
`[metrics] listen` is set).

One module per area makes that area's families from its stats: `process` (build, node, start
time, loop lag), `messages` (intake, submits, finals, queues, back-pressure, receipts and MOs,
latency), `links` (SMPP and modem links), `customers` (SMPP server, callbacks), `http_api`
(HTTP and OTP), `store` (store and retention), `optouts`, `events`, `inbound`. `families`
holds the helpers they share; `source` the type of what they read (`MetricsSource`). A room
with new counters adds its families to its area's module (or a new one) and to the collector.

Cost on the message path: nothing for counters (they are the plain integer attributes the
rooms increment anyway; this module only reads them when scraped). The latency histograms are
`gateway.stages` histograms, observed where each stage ends, and the accept-to-final histogram
`GatewayStats.accept_to_final` is observed once per final message.

Names follow Prometheus's conventions: `tandem_` prefix, base units (seconds), `_total` for
counters, `_seconds` for durations. Labels are bounded sets only: link, route, account,
channel, direction, status, stage, HTTP route template and code. Never a number, a message id
or a text: traffic to a million numbers makes no more series than traffic to one.

Never does: change anything, or read message content.
"""

from gateway.metrics.collector import TandemCollector
from gateway.metrics.exporter import CONTENT_TYPE, MetricsExporter, add_routes, start_metrics
from gateway.metrics.health import STALLED_LOOP_SECONDS, StoreProbe, health, readiness
from gateway.metrics.loop_lag import LoopLag

__all__ = [
    "CONTENT_TYPE",
    "STALLED_LOOP_SECONDS",
    "LoopLag",
    "MetricsExporter",
    "StoreProbe",
    "TandemCollector",
    "add_routes",
    "health",
    "readiness",
    "start_metrics",
]
