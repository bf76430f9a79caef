"""The Prometheus exporter: what the daemon's counters say, read at scrape time.

Owns `TandemCollector` (a prometheus-client custom collector over the stats dataclasses the
rooms already keep: `GatewayStats`, `IntakeStats`, the links' stats, `CustomerServerStats`,
`HttpStats`, `OtpStats`, `CallbackStats`, the store's `StoreStats`, `BacklogStats`, ...),
`LoopLag` (the event loop's lag, measured as a sleep's overshoot), the answers of
`GET /healthz` and `GET /readyz`, and `MetricsExporter`, which ties them to the daemon (and to
a listener of its own when `[metrics] listen` is set).

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

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import platform
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.exposition import generate_latest

from gateway import stages
from gateway.links.base import LinkState
from gateway.links.modem import REGISTRATION_NAMES
from gateway.tasks import cancel_and_wait
from smpp.constants import status_name

if TYPE_CHECKING:
    from aiohttp import web

    from dlr.correlation import Correlator
    from gateway.services import GatewayCounters, GatewayServices

    class ExportedCounters(GatewayCounters, Protocol):
        """What the exporter reads of `gateway.app.GatewayStats` beyond the channels' view."""

        @property
        def submitted_by(self) -> dict[tuple[str, str], int]: ...
        @property
        def finals(self) -> dict[tuple[str, str, str], int]: ...
        @property
        def temporary_failures(self) -> int: ...
        @property
        def failovers(self) -> int: ...
        @property
        def expired(self) -> int: ...
        @property
        def receipts_correlated(self) -> int: ...
        @property
        def receipts_held(self) -> int: ...
        @property
        def receipts_unmatched(self) -> int: ...
        @property
        def receipts_unparseable(self) -> int: ...
        @property
        def dlr_timeouts(self) -> int: ...
        @property
        def accept_to_final(self) -> dict[str, stages.Histogram]: ...

    class MetricsSource(GatewayServices, Protocol):
        """The running gateway as the exporter reads it: the channels' interface and a few
        counters more. `gateway.app.Gateway` satisfies it; typing against it, not against
        `Gateway`, keeps `gateway.app` (which starts the exporter) out of this module's
        imports."""

        @property
        def stats(self) -> ExportedCounters: ...
        @property
        def correlator(self) -> Correlator[Any, Any]: ...
        @property
        def stopping(self) -> bool: ...


log = logging.getLogger("tandem.metrics")

# The text format every Prometheus 2.x reads (newer clients say version=1.0.0 for the same
# body with escaped names; ours need no escaping).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRICS_PATH = "/metrics"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
TOKEN_FILE = "metrics.token"
# The stage histograms exported under a name of their own; the others as
# tandem_stage_duration_seconds{stage=...}.
NAMED_STAGES = {
    "submit_round_trip": (
        "tandem_submit_response_seconds",
        "submit_sm written to its submit_sm_resp read, per segment",
    ),
    "writer_batch": (
        "tandem_store_writer_batch_seconds",
        "a batch of store writes sent to the writer until its commit is answered",
    ),
}
LINK_STATES = tuple(state.value for state in LinkState)
# A loop that has not ticked for this long is not alive (`/healthz` answers 503).
STALLED_LOOP_SECONDS = 10.0
# `/readyz` probes the store with a real write at most this often.
STORE_PROBE_SECONDS = 1.0
STORE_PROBE_TIMEOUT = 5.0


@functools.cache
def _version() -> str:
    """Read once: the installed metadata is parsed from disk (milliseconds a scrape)."""
    try:
        return metadata.version("tandem")
    except metadata.PackageNotFoundError:
        return "unknown"


# --- the event loop's lag -------------------------------------------------------------------


@dataclass(slots=True)
class LoopLag:
    """Sleeps `interval` again and again and records how late each wake-up came: a loop that
    runs something long (a big JSON, a blocking call) shows it here before customers do."""

    interval: float = 0.5
    histogram: stages.Histogram = field(default_factory=stages.Histogram)
    last: float = 0.0  # the lag of the last tick
    last_tick: float = field(default_factory=time.monotonic)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.last_tick = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _run(self) -> None:
        clock = time.monotonic
        while True:
            before = clock()
            await asyncio.sleep(self.interval)
            now = clock()
            self.last = max(now - before - self.interval, 0.0)
            self.last_tick = now
            self.histogram.observe(self.last)

    def stalled_for(self, now: float) -> float:
        """Seconds since the last tick beyond what the interval explains (0: ticking)."""
        return max(now - self.last_tick - self.interval, 0.0)


# --- the collector ----------------------------------------------------------------------------


def _histogram(
    name: str, documentation: str, labels: Iterable[tuple[tuple[str, ...], stages.Histogram]]
) -> HistogramMetricFamily | None:
    """One family from `gateway.stages` histograms (their buckets are Prometheus's `le`)."""
    family: HistogramMetricFamily | None = None
    for values, histogram in labels:
        if family is None:
            label_names = _HISTOGRAM_LABELS.get(name, [])
            family = HistogramMetricFamily(name, documentation, labels=label_names)
        cumulative, running = [], 0
        for le, in_bucket in zip(_LE, histogram.counts):
            running += in_bucket
            cumulative.append((le, float(running)))
        family.add_metric(list(values), cumulative, sum_value=histogram.total)
    return family


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(f"{bound:.6g}"))


_LE = tuple(_le(bound) for bound in (*stages.BOUNDS, float("inf")))  # the buckets' `le`, once


_HISTOGRAM_LABELS: dict[str, list[str]] = {
    "tandem_stage_duration_seconds": ["stage"],
    "tandem_message_accept_to_final_seconds": ["link"],
}


class TandemCollector:
    """Reads the running daemon's counters when Prometheus scrapes (`collect`)."""

    def __init__(self, gateway: MetricsSource, loop_lag: LoopLag | None = None) -> None:
        self.gateway = gateway
        self.loop_lag = loop_lag
        self.started_at = time.time()

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: names are not reserved in the registry

    def collect(self) -> Iterator[Metric]:
        yield from self._process()
        yield from self._messages()
        yield from self._links()
        yield from self._receipts()
        yield from self._customers()
        yield from self._http()
        yield from self._otp()
        yield from self._store()
        yield from self._latency()
        yield from self._later_rooms()

    # --- the process ------------------------------------------------------------------------

    def _process(self) -> Iterator[Metric]:
        yield InfoMetricFamily(
            "tandem_build",
            "The running Tandem's version and Python",
            value={"version": _version(), "python": platform.python_version()},
        )
        yield InfoMetricFamily(
            "tandem_node",
            "This node's [node] name (several nodes on one PostgreSQL database tell apart)",
            value={"node": self.gateway.config.node.name},
        )
        yield GaugeMetricFamily(
            "tandem_start_time_seconds",
            "When the daemon started, unix seconds",
            value=self.started_at,
        )
        lag = self.loop_lag
        if lag is not None:
            family = _histogram(
                "tandem_event_loop_lag_seconds",
                "How late the event loop woke up from a sleep",
                [((), lag.histogram)],
            )
            if family is not None:
                yield family

    # --- messages ---------------------------------------------------------------------------

    def _messages(self) -> Iterator[Metric]:
        gateway = self.gateway
        intake = gateway.intake.stats
        accepted = CounterMetricFamily(
            "tandem_messages_accepted",
            "Messages stored and acknowledged, by channel and route",
            labels=["channel", "route"],
        )
        for (channel, route), count in sorted(intake.accepted.items(), key=_key):
            accepted.add_metric([channel, route or ""], count)
        yield accepted
        segments = CounterMetricFamily(
            "tandem_message_segments_accepted",
            "SMS parts of the messages accepted, by channel and route",
            labels=["channel", "route"],
        )
        for (channel, route), count in sorted(intake.segments.items(), key=_key):
            segments.add_metric([channel, route or ""], count)
        yield segments
        refused = CounterMetricFamily(
            "tandem_messages_refused",
            "Messages refused at intake (nothing stored), by channel and reason",
            labels=["channel", "reason"],
        )
        for (channel, code), count in sorted(intake.refused.items()):
            refused.add_metric([channel, code], count)
        yield refused
        stats = gateway.stats
        submitted = CounterMetricFamily(
            "tandem_messages_submitted",
            "Messages whose every part the carrier accepted (submit_sm_resp OK), by channel "
            "and link",
            labels=["channel", "link"],
        )
        for (channel, link), count in sorted(stats.submitted_by.items()):
            submitted.add_metric([channel, link], count)
        yield submitted
        final = CounterMetricFamily(
            "tandem_messages_final",
            "Messages that reached a final status (delivered, undeliverable, expired, failed, "
            "rejected, deleted, unknown), by channel, link (empty: never sent) and status",
            labels=["channel", "link", "status"],
        )
        for (channel, link, status), count in sorted(stats.finals.items()):
            final.add_metric([channel, link, status], count)
        yield final
        yield _counter(
            "tandem_message_retries", "Temporary send failures requeued", stats.temporary_failures
        )
        yield _counter(
            "tandem_message_failovers",
            "Messages a link refused with a route-level status, offered to the next target",
            stats.failovers,
        )
        yield _counter(
            "tandem_message_expired_in_queue",
            "Messages whose validity ended before they were sent",
            stats.expired,
        )
        queued = GaugeMetricFamily(
            "tandem_queue_messages", "Messages waiting to be sent, by link", labels=["link"]
        )
        oldest = GaugeMetricFamily(
            "tandem_queue_oldest_age_seconds",
            "Age of the oldest message ready to go and waiting, by link (0: none waits)",
            labels=["link"],
        )
        limit = GaugeMetricFamily(
            "tandem_queue_limit_messages",
            "The queue_limit of a link (back-pressure past it)",
            labels=["link"],
        )
        queue, now = gateway.queue, time.time()
        limits = gateway.backlog.limits
        for name in sorted(gateway.links):
            queued.add_metric([name], queue.size(name))
            since = queue.oldest_ready_at(name)
            oldest.add_metric([name], 0.0 if since is None else max(now - since, 0.0))
            if name in limits.links:
                limit.add_metric([name], limits.links[name])
        yield queued
        yield oldest
        yield limit
        backlog = gateway.backlog.stats
        by_link = CounterMetricFamily(
            "tandem_backlog_refused_link",
            "Messages refused because a link's queue was at its limit, by link",
            labels=["link"],
        )
        for name, count in sorted(backlog.by_link.items()):
            by_link.add_metric([name], count)
        yield by_link
        by_route = CounterMetricFamily(
            "tandem_backlog_refused_route",
            "Messages refused because a route's queue was at its limit, by route",
            labels=["route"],
        )
        for name, count in sorted(backlog.by_route.items()):
            by_route.add_metric([name], count)
        yield by_route

    # --- outbound links -----------------------------------------------------------------------

    def _links(self) -> Iterator[Metric]:
        gateway = self.gateway
        up = GaugeMetricFamily(
            "tandem_link_up", "1 while a link has a bound session", labels=["link"]
        )
        state = StateSetMetricFamily("tandem_link_state", "A link's state", labels=["link"])
        throttle = GaugeMetricFamily(
            "tandem_link_throttle_level",
            "How much the carrier throttles a link, 0 (not) to 1 (everything)",
            labels=["link"],
        )
        window = GaugeMetricFamily(
            "tandem_link_window_in_use",
            "Submits sent and not answered yet, over a link's sessions",
            labels=["link"],
        )
        window_size = GaugeMetricFamily(
            "tandem_link_window_size", "A link's window times its sessions", labels=["link"]
        )
        sessions = GaugeMetricFamily(
            "tandem_link_sessions_bound", "Sessions of a link bound now", labels=["link"]
        )
        counters = {
            name: CounterMetricFamily(name, documentation, labels=["link"])
            for name, documentation in _LINK_COUNTERS.items()
        }
        responses = CounterMetricFamily(
            "tandem_smpp_submit_sm_resp",
            "submit_sm_resp received, by link and command_status",
            labels=["link", "status"],
        )
        modem_gauges = {
            name: GaugeMetricFamily(name, documentation, labels=["link"])
            for name, documentation in _MODEM_GAUGES.items()
        }
        registration = StateSetMetricFamily(
            "tandem_modem_registration", "A modem's network registration", labels=["link"]
        )
        sim = GaugeMetricFamily(
            "tandem_modem_sim_ready",
            "1 while a modem's SIM is ready (the reason it is not is in the log and /status)",
            labels=["link"],
        )
        for name in sorted(gateway.links):
            link = gateway.links[name]
            current = link.state
            up.add_metric([name], 1.0 if current is LinkState.UP else 0.0)
            state.add_metric([name], {value: value == current.value for value in LINK_STATES})
            throttle.add_metric([name], link.throttle_level)
            in_flight = getattr(link, "in_flight", None)
            if in_flight is not None:
                window.add_metric([name], in_flight)
            config = getattr(link, "config", None)
            if config is not None and hasattr(config, "window"):
                window_size.add_metric([name], config.window * config.sessions)
            stats: Any = getattr(link, "stats", None)
            if stats is None:
                continue
            if hasattr(stats, "sessions_up"):  # an SMPP link (gateway.links.smpp_client)
                sessions.add_metric([name], stats.sessions_up)
                for status, count in sorted(stats.responses.items()):
                    responses.add_metric([name, status_name(status)], count)
            if hasattr(stats, "signal_dbm"):  # a modem link (gateway.links.modem)
                self._modem(name, stats, modem_gauges, registration, sim)
            for metric_name, attribute in _LINK_ATTRIBUTES.items():
                value = getattr(stats, attribute, None)
                if value is not None:
                    counters[metric_name].add_metric([name], value)
        yield up
        yield state
        yield throttle
        yield window
        yield window_size
        yield sessions
        yield from counters.values()
        yield responses
        yield from modem_gauges.values()
        yield registration
        yield sim

    @staticmethod
    def _modem(
        name: str,
        stats: Any,
        gauges: dict[str, GaugeMetricFamily],
        registration: StateSetMetricFamily,
        sim: GaugeMetricFamily,
    ) -> None:
        if stats.signal_dbm is not None:
            gauges["tandem_modem_signal_dbm"].add_metric([name], stats.signal_dbm)
        gauges["tandem_modem_sends_today"].add_metric([name], stats.sends_today)
        if stats.daily_cap is not None:
            gauges["tandem_modem_daily_cap"].add_metric([name], stats.daily_cap)
        # +CREG's words (gateway.links.modem): a bounded set, each shown 0 or 1.
        known = {*_REGISTRATIONS, stats.registration}
        registration.add_metric([name], {value: value == stats.registration for value in known})
        sim.add_metric([name], 1.0 if stats.sim_state == "ready" else 0.0)

    # --- receipts and MOs ---------------------------------------------------------------------

    def _receipts(self) -> Iterator[Metric]:
        stats = self.gateway.stats
        received = CounterMetricFamily(
            "tandem_receipts",
            "Delivery receipts from carriers, by outcome: received (all), correlated (applied "
            "to their message), held (waited for their submit result), orphaned (matched no "
            "message in time), unparseable",
            labels=["outcome"],
        )
        received.add_metric(["received"], stats.receipts)
        received.add_metric(["correlated"], stats.receipts_correlated)
        received.add_metric(["held"], stats.receipts_held)
        received.add_metric(["orphaned"], stats.receipts_unmatched)
        received.add_metric(["unparseable"], stats.receipts_unparseable)
        yield received
        yield GaugeMetricFamily(
            "tandem_receipts_held",
            "Receipts waiting now for their submit result (the early-receipt hold)",
            value=self.gateway.correlator.stats.held,
        )
        yield _counter(
            "tandem_receipt_timeouts",
            "Segments given up on: no final receipt within the DLR timeout (unknown/expired)",
            stats.dlr_timeouts,
        )
        mos = CounterMetricFamily(
            "tandem_mo_messages",
            "Mobile-originated messages from carriers, by outcome",
            labels=["outcome"],
        )
        mos.add_metric(["received"], stats.mo_received)
        mos.add_metric(["unclaimed"], self.gateway.inbound.stats.unmatched)
        yield mos

    # --- customers: SMPP server, callbacks ----------------------------------------------------

    def _customers(self) -> Iterator[Metric]:
        server: Any = self.gateway.smpp_server
        if server is not None:
            binds = GaugeMetricFamily(
                "tandem_customer_binds", "Customer SMPP binds now, by account", labels=["account"]
            )
            per_account: dict[str, int] = {}
            for account, _kind, _address in server.bound():
                per_account[account] = per_account.get(account, 0) + 1
            for account in sorted(per_account):
                binds.add_metric([account], per_account[account])
            yield binds
            stats = server.stats
            for metric_name, (documentation, attribute) in _SERVER_COUNTERS.items():
                yield _counter(metric_name, documentation, getattr(stats, attribute))
            guard = server.guard.stats
            yield _counter(
                "tandem_customer_bind_bans", "Addresses or accounts banned for failures", guard.bans
            )
        callbacks: Any = getattr(self.gateway.http_api, "callbacks", None)
        if callbacks is not None:
            stats = callbacks.stats
            family = CounterMetricFamily(
                "tandem_callbacks",
                "HTTP receipt callbacks, by outcome: queued (owed), attempts, delivered, "
                "retried, given_up",
                labels=["outcome"],
            )
            for outcome in ("queued", "attempts", "delivered", "retried", "given_up"):
                family.add_metric([outcome], getattr(stats, outcome))
            yield family
            yield GaugeMetricFamily(
                "tandem_callbacks_owed",
                "Callbacks owed now: queued, not delivered nor given up",
                value=max(stats.queued - stats.delivered - stats.given_up, 0),
            )

    # --- HTTP ---------------------------------------------------------------------------------

    def _http(self) -> Iterator[Metric]:
        api: Any = self.gateway.http_api
        if api is None:
            return
        stats = api.stats
        requests = CounterMetricFamily(
            "tandem_http_requests",
            "HTTP requests answered, by route template and status code",
            labels=["route", "code"],
        )
        for (route, code), count in sorted(stats.by_route.items()):
            requests.add_metric([route, str(code)], count)
        yield requests
        yield _counter("tandem_http_rate_limited", "Requests answered 429", stats.rate_limited)
        yield _counter(
            "tandem_http_auth_failures",
            "Unknown bearer values presented",
            stats.failed_auth.failures,
        )
        yield GaugeMetricFamily(
            "tandem_http_connections_open", "HTTP connections open", value=stats.connections.open
        )

    # --- OTP ----------------------------------------------------------------------------------

    def _otp(self) -> Iterator[Metric]:
        otp: Any = getattr(self.gateway.http_api, "otp", None)
        if otp is None:
            return
        stats = otp.stats
        family = CounterMetricFamily(
            "tandem_otp_verifications",
            "One-time passwords, by event: sent, resent, checked, approved, wrong_code, "
            "attempts_exhausted, expired",
            labels=["event"],
        )
        for event, attribute in (
            ("sent", "sent"),
            ("resent", "resent"),
            ("checked", "checks"),
            ("approved", "approved"),
            ("wrong_code", "wrong_codes"),
            ("attempts_exhausted", "attempts_exhausted"),
            ("expired", "expired"),
        ):
            family.add_metric([event], getattr(stats, attribute))
        yield family
        limited = CounterMetricFamily(
            "tandem_otp_limited",
            "OTP sends refused by a limit, by reason",
            labels=["reason"],
        )
        limited.add_metric(["destination"], stats.destination_limited)
        limited.add_metric(["prefix"], stats.prefix_limited)
        limited.add_metric(["country"], stats.country_refused)
        yield limited
        yield _counter(
            "tandem_otp_pumping_guard_trips",
            "Times a number prefix went over its OTP velocity limit and was blocked",
            stats.prefix_trips,
        )

    # --- the store ------------------------------------------------------------------------------

    def _store(self) -> Iterator[Metric]:
        store = self.gateway.message_store
        stats = store.stats()
        yield _counter("tandem_store_commits", "Store transactions committed", stats.commits)
        yield _counter(
            "tandem_store_operations",
            "Write requests those transactions carried (batch size: rate of this over commits)",
            stats.operations,
        )
        yield _counter("tandem_store_rows", "Rows the write requests wrote", stats.rows)
        yield _counter(
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

    # --- latency ----------------------------------------------------------------------------------

    def _latency(self) -> Iterator[Metric]:
        histograms = self.gateway.stats.accept_to_final
        family = _histogram(
            "tandem_message_accept_to_final_seconds",
            "From a message's acceptance to its final status, by link",
            [((link,), histograms[link]) for link in sorted(histograms)],
        )
        if family is not None:
            yield family
        recorder = stages.recording()
        if recorder is None:
            return
        for stage, (name, documentation) in NAMED_STAGES.items():
            named = _histogram(name, documentation, [((), recorder.histograms[stage])])
            if named is not None:
                yield named
        rest = [
            ((stage,), recorder.histograms[stage])
            for stage in stages.STAGES
            if stage not in NAMED_STAGES and (recorder.marks or stage not in stages.MARKED_STAGES)
        ]
        family = _histogram(
            "tandem_stage_duration_seconds",
            "Where messages wait, per stage of their way (gateway.stages)",
            rest,
        )
        if family is not None:
            yield family

    # --- opt-outs, events, retention, inbound ------------------------------------------------

    def _later_rooms(self) -> Iterator[Metric]:
        gateway = self.gateway
        optouts: Any = getattr(gateway, "optouts", None)
        if optouts is not None:
            stats = optouts.stats
            yield GaugeMetricFamily(
                "tandem_optouts_entries",
                "Opt-outs in force (number and scope)",
                value=stats.entries,
            )
            yield GaugeMetricFamily(
                "tandem_optouts_numbers", "Numbers with at least one opt-out", value=stats.numbers
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
            yield _counter(
                "tandem_optout_write_failures", "Opt-out changes not written", stats.write_failures
            )
        events: Any = getattr(gateway, "events", None)
        if events is not None:
            by_sink = events.stats()
            families = {
                name: CounterMetricFamily(name, documentation, labels=["sink"])
                for name, documentation in _EVENT_COUNTERS.items()
            }
            buffered = GaugeMetricFamily(
                "tandem_event_sink_buffered", "Events waiting in a sink's buffer", labels=["sink"]
            )
            for sink in sorted(by_sink):
                stats = by_sink[sink]
                for name in families:
                    families[name].add_metric([sink], getattr(stats, _EVENT_COUNTERS_FROM[name]))
                buffered.add_metric([sink], stats.buffered)
            yield from families.values()
            yield buffered
        retention: Any = getattr(gateway, "retention", None)
        if retention is not None:
            stats = retention.retention.stats
            removed = CounterMetricFamily(
                "tandem_retention_removed",
                "Rows the retention purge removed, by kind",
                labels=["kind"],
            )
            for kind, count in sorted(stats.removed.items()):
                removed.add_metric([kind], count)
            yield removed
            yield _counter("tandem_retention_runs", "Retention purges run", stats.runs)
            yield GaugeMetricFamily(
                "tandem_retention_longest_op_seconds",
                "The longest writer op of the purges (the stall it adds to a commit)",
                value=stats.longest_op_seconds,
            )
        inbound: Any = getattr(gateway, "inbound", None)
        if inbound is not None:
            yield from _inbound(inbound.stats)


# The inbound path's counters (`gateway.inbound.stats.InboundStats`, every field): field ->
# (family, label value); a family's label name and help are in `_INBOUND_FAMILIES`.
_INBOUND_FIELDS: dict[str, tuple[str, str | None]] = {
    "parts": ("tandem_inbound_parts", None),
    "messages": ("tandem_inbound_messages", None),
    "reassembled": ("tandem_inbound_reassembled", None),
    "parts_held": ("tandem_inbound_parts_held", None),
    "parts_timed_out": ("tandem_inbound_parts_timed_out", None),
    "routed": ("tandem_inbound_routed", None),
    "to_accounts": ("tandem_inbound_forwarded", "account"),
    "to_webhooks": ("tandem_inbound_forwarded", "webhook"),
    "to_event_sinks": ("tandem_inbound_forwarded", "event_sink"),
    "unmatched": ("tandem_inbound_not_forwarded", "unmatched"),
    "blocked": ("tandem_inbound_not_forwarded", "blocked"),
    "account_missing": ("tandem_inbound_not_forwarded", "account_missing"),
    "event_sink_missing": ("tandem_inbound_not_forwarded", "event_sink_missing"),
    "refused_full": ("tandem_inbound_not_forwarded", "refused_full"),
    "store_failures": ("tandem_inbound_not_forwarded", "store_failure"),
    "duplicate_parts": ("tandem_inbound_not_forwarded", "duplicate_part"),
    "keyword_opt_outs": ("tandem_inbound_keywords", "opt_out"),
    "keyword_opt_ins": ("tandem_inbound_keywords", "opt_in"),
    "keyword_help": ("tandem_inbound_keywords", "help"),
    "keyword_failures": ("tandem_inbound_keywords", "failure"),
    "webhook_attempts": ("tandem_inbound_webhooks", "attempt"),
    "webhook_delivered": ("tandem_inbound_webhooks", "delivered"),
    "webhook_retries": ("tandem_inbound_webhooks", "retried"),
    "webhook_given_up": ("tandem_inbound_webhooks", "given_up"),
    "replies": ("tandem_inbound_keyword_replies", "accepted"),
    "replies_refused": ("tandem_inbound_keyword_replies", "refused"),
}
_INBOUND_FAMILIES: dict[str, tuple[str, str | None]] = {
    "tandem_inbound_parts": ("MO parts links handed to the gateway", None),
    "tandem_inbound_messages": ("MOs kept (whole, single, or the parts of one given up on)", None),
    "tandem_inbound_reassembled": ("MOs joined from several parts", None),
    "tandem_inbound_parts_held": ("Parts kept waiting for the rest of their MO", None),
    "tandem_inbound_parts_timed_out": ("Parts delivered as they were: the rest never came", None),
    "tandem_inbound_routed": ("MOs an inbound route or account claimed", None),
    "tandem_inbound_forwarded": ("MOs forwarded, by destination kind", "destination"),
    "tandem_inbound_not_forwarded": (
        "MOs not forwarded, by reason: unmatched, blocked, account_missing, event_sink_missing "
        "(kept); refused_full, store_failure (the carrier offers them again); duplicate_part "
        "(a part resent after its MO was joined: answered, dropped)",
        "reason",
    ),
    "tandem_inbound_keywords": ("Keyword MOs by class, and failures to act on one", "keyword"),
    "tandem_inbound_webhooks": ("Inbound webhook POSTs, by outcome", "outcome"),
    "tandem_inbound_keyword_replies": ("Keyword replies, by outcome", "outcome"),
}


def _inbound(stats: Any) -> Iterator[Metric]:
    """The inbound path: MOs after reassembly, where they went, keywords, webhooks."""
    families: dict[str, CounterMetricFamily] = {}
    for name, (documentation, label) in _INBOUND_FAMILIES.items():
        labels = [label] if label is not None else None
        families[name] = CounterMetricFamily(name, documentation, labels=labels)
    for attribute, (name, value) in _INBOUND_FIELDS.items():
        count = getattr(stats, attribute, None)
        if count is None:
            continue
        families[name].add_metric([value] if value is not None else [], count)
    yield from families.values()


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _key(item: tuple[tuple[str, str | None], int]) -> tuple[str, str]:
    (channel, route), _ = item
    return channel, route or ""


# Counters every link kind may have (attribute of its stats -> metric), labelled by link.
_LINK_ATTRIBUTES = {
    "tandem_link_submits": "submits",
    "tandem_link_throttled": "throttles",
    "tandem_link_submit_timeouts": "timeouts",
    "tandem_link_reconnects": "reconnects",
    "tandem_link_connect_failures": "connect_failures",
    "tandem_link_bind_failures": "bind_failures",
    "tandem_link_messages_submitted": "messages_submitted",
    "tandem_link_parts_submitted": "parts_submitted",
    "tandem_link_messages_requeued": "messages_requeued",
    "tandem_link_messages_failed": "messages_failed",
    "tandem_link_receipts": "receipts",
    "tandem_link_receipts_unreadable": "unreadable_receipts",
    "tandem_link_mo_messages": "mos",
    "tandem_modem_port_opens": "opens",
    "tandem_modem_resets": "resets",
    "tandem_modem_unresponsive": "unresponsive",
    "tandem_modem_handed_back": "handed_back",
    "tandem_modem_unreadable_pdus": "unreadable",
    "tandem_modem_routed_acknowledged": "routed_acknowledged",
    "tandem_modem_routed_refused": "routed_rejected",
    "tandem_modem_acknowledgements_late": "acknowledgements_late",
}
_LINK_COUNTERS = {
    "tandem_link_submits": "submit_sm sent (segments, throttle retries included)",
    "tandem_link_throttled": "Throttling answers from the carrier (ESME_RTHROTTLED and kin)",
    "tandem_link_submit_timeouts": "Submits with no answer in time",
    "tandem_link_reconnects": "Binds after the first, per session",
    "tandem_link_connect_failures": "Connections to the carrier that failed",
    "tandem_link_bind_failures": "Binds the carrier refused",
    "tandem_link_messages_submitted": "Messages a link submitted",
    "tandem_link_parts_submitted": "Parts a modem link submitted",
    "tandem_link_messages_requeued": "Messages a link handed back as temporary failures",
    "tandem_link_messages_failed": "Messages a link reported as permanent failures",
    "tandem_link_receipts": "Receipts a link received",
    "tandem_link_receipts_unreadable": "Receipts a link could not read",
    "tandem_link_mo_messages": "MOs a link received",
    "tandem_modem_port_opens": "Serial ports opened (reconnects after the first)",
    "tandem_modem_resets": "Silent modems reset",
    "tandem_modem_unresponsive": "Times a modem stopped answering",
    "tandem_modem_handed_back": "Messages a modem did not try (gone, at its cap): re-homed",
    "tandem_modem_unreadable_pdus": "PDUs a modem could not decode: logged in hex, then deleted",
    "tandem_modem_routed_acknowledged": "Routed MOs/reports acknowledged (+CNMA) once kept",
    "tandem_modem_routed_refused": "Routed MOs/reports not kept: RP-ERROR, offered again",
    "tandem_modem_acknowledgements_late": "+CNMA the modem refused or ignored (it gave up)",
}
_MODEM_GAUGES = {
    "tandem_modem_signal_dbm": "A modem's signal strength, dBm",
    "tandem_modem_sends_today": "Parts a modem sent today",
    "tandem_modem_daily_cap": "A modem's daily cap in parts",
}
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
_REGISTRATIONS = tuple(REGISTRATION_NAMES.values())
_SERVER_COUNTERS = {
    "tandem_customer_binds_accepted": ("Customer binds accepted", "binds"),
    "tandem_customer_bind_failures": ("Customer binds refused (credentials)", "bind_failures"),
    "tandem_customer_binds_refused_banned": (
        "Customer binds refused while banned",
        "bind_refused_banned",
    ),
    "tandem_customer_submits_accepted": ("submit_sm from customers accepted", "submits_accepted"),
    "tandem_customer_submits_refused": ("submit_sm from customers refused", "submits_refused"),
    "tandem_customer_throttled": ("Customers answered ESME_RTHROTTLED", "throttled"),
    "tandem_customer_receipts_queued": ("Receipts queued for customers", "receipts_queued"),
    "tandem_customer_deliveries": ("deliver_sm customers answered OK", "delivered"),
    "tandem_customer_delivery_retries": ("deliver_sm sent again", "delivery_retries"),
    "tandem_customer_delivery_failures": ("deliver_sm refused for good", "delivery_failed"),
    "tandem_customer_deliveries_expired": ("deliver_sm that expired unsent", "delivery_expired"),
}


# --- health and readiness -------------------------------------------------------------------


def health(gateway: MetricsSource, loop_lag: LoopLag | None) -> tuple[bool, dict[str, Any]]:
    """`GET /healthz`: the process answers, and its loop ticks (a stuck loop would not
    answer at all; a loop that ticks rarely is reported stalled)."""
    stalled = loop_lag.stalled_for(time.monotonic()) if loop_lag is not None else 0.0
    alive = stalled < STALLED_LOOP_SECONDS
    document: dict[str, Any] = {"status": "ok" if alive else "stalled"}
    if loop_lag is not None:
        document["loop_lag_seconds"] = round(loop_lag.last, 6)
        document["loop_stalled_seconds"] = round(stalled, 3)
    return alive, document


@dataclass(slots=True)
class StoreProbe:
    """Whether the store takes a write: a real one through the writer (a purge that matches
    nothing), at most once per `STORE_PROBE_SECONDS`, bounded by `STORE_PROBE_TIMEOUT`."""

    checked_at: float = -1e9
    ok: bool = False
    reason: str = "not checked yet"
    _running: asyncio.Task[None] | None = None

    async def check(self, gateway: MetricsSource) -> tuple[bool, str]:
        now = time.monotonic()
        if now - self.checked_at >= STORE_PROBE_SECONDS:
            if self._running is None or self._running.done():
                self._running = asyncio.ensure_future(self._probe(gateway))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._running), STORE_PROBE_TIMEOUT)
            if not self._running.done():
                self.ok, self.reason = False, f"no commit within {STORE_PROBE_TIMEOUT:g} s"
        return self.ok, self.reason

    async def _probe(self, gateway: MetricsSource) -> None:
        store: Any = gateway.message_store  # every backend keeps idempotency records
        try:
            await store.purge_idempotency(0.0)  # nothing is that old: commits, changes nothing
        except Exception as exc:
            self.ok, self.reason = False, f"{type(exc).__name__}: {exc}"
        else:
            self.ok, self.reason = True, "committed a write"
        self.checked_at = time.monotonic()


async def readiness(gateway: MetricsSource, probe: StoreProbe) -> tuple[bool, dict[str, Any]]:
    """`GET /readyz`: the store takes writes, every route with targets has one of them up,
    and the daemon is not stopping. The body says which link is in what state."""
    store_ok, store_reason = await probe.check(gateway)
    data_dir = gateway.config.data_dir
    free = _free_bytes(data_dir)
    links = {
        name: {
            "state": link.state.value,
            "queued": gateway.queue.size(name),
            "in_flight": getattr(link, "in_flight", None),
        }
        for name, link in sorted(gateway.links.items())
    }
    routes = {}
    routes_ok = True
    for route in gateway.routes.routes:
        targets = [target.link for target in route.targets]
        if not targets:
            continue
        up = [name for name in targets if links.get(name, {}).get("state") == LinkState.UP.value]
        routes[route.name] = {"targets": targets, "up": up, "ready": bool(up)}
        routes_ok = routes_ok and bool(up)
    stopping = gateway.stopping
    ready = store_ok and routes_ok and not stopping
    return ready, {
        "status": "stopping" if stopping else "ready" if ready else "not ready",
        # Which node answers (several behind one load balancer share a database).
        "node": gateway.config.node.name,
        "store": {"writable": store_ok, "detail": store_reason, "free_bytes": free},
        "routes": routes,
        "links": links,
    }


def _free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


# --- the exporter -----------------------------------------------------------------------------


class MetricsExporter:
    """The daemon's exporter: registry, collector, loop lag, store probe, token, and the
    listener of its own when `[metrics] listen` is set."""

    def __init__(self, gateway: MetricsSource) -> None:
        self.gateway = gateway
        self.config = gateway.config.metrics
        self.loop_lag = LoopLag(self.config.loop_lag_interval)
        self.collector = TandemCollector(gateway, self.loop_lag)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self.probe = StoreProbe()
        self.token = load_or_create_token(metrics_token_path(gateway))
        self._runner: web.AppRunner | None = None
        self.port: int | None = None  # of the listener of its own, once started

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def token_matches(self, authorization: str) -> bool:
        scheme, _, value = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), self.token.encode()
        )

    async def start(self) -> None:
        self.loop_lag.start()
        address = self.config.listen_address
        if address is not None:
            await self._listen(*address)

    async def stop(self) -> None:
        await self.loop_lag.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _listen(self, host: str, port: int) -> None:
        from aiohttp import web

        app = web.Application()
        add_routes(app, self, token=False)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(
                exc.errno, f"[metrics] cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("metrics on http://%s:%d%s", host, self.port, METRICS_PATH)


def metrics_token_path(gateway: MetricsSource) -> Path:
    configured = gateway.config.metrics.token_file
    return configured if configured is not None else gateway.config.data_dir / TOKEN_FILE


def load_or_create_token(path: Path) -> str:
    """The metrics token in `path`, written (mode 0600) on first start (as the admin token)."""
    from gateway.http.admin_token import load_or_create_admin_token

    return load_or_create_admin_token(path)


def add_routes(app: web.Application, exporter: MetricsExporter, *, token: bool) -> None:
    """`/metrics` (with the metrics token when `token`; absent when `[metrics] enabled` is
    false), `/healthz` and `/readyz` (never a token)."""
    from aiohttp import web

    async def metrics(request: web.Request) -> web.Response:
        if token and not exporter.token_matches(request.headers.get("Authorization", "")):
            return web.json_response(
                {
                    "type": "about:blank",
                    "title": "unauthorized",
                    "status": 401,
                    "detail": "GET /metrics needs 'Authorization: Bearer <token>' with the "
                    "token in [metrics] token_file (by default <data_dir>/metrics.token).",
                },
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="tandem-metrics"'},
                content_type="application/problem+json",
            )
        body = exporter.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def healthz(request: web.Request) -> web.Response:
        alive, document = health(exporter.gateway, exporter.loop_lag)
        return web.json_response(document, status=200 if alive else 503)

    async def readyz(request: web.Request) -> web.Response:
        ready, document = await readiness(exporter.gateway, exporter.probe)
        return web.json_response(document, status=200 if ready else 503)

    if exporter.config.enabled:
        app.router.add_get(METRICS_PATH, metrics)
    app.router.add_get(HEALTH_PATH, healthz)
    app.router.add_get(READY_PATH, readyz)


async def start_metrics(gateway: MetricsSource) -> MetricsExporter:
    exporter = MetricsExporter(gateway)
    gateway.add_stop_hook(exporter.stop)
    await exporter.start()
    return exporter


__all__ = [
    "CONTENT_TYPE",
    "MetricsExporter",
    "TandemCollector",
    "add_routes",
    "health",
    "readiness",
    "start_metrics",
]
