"""The daemon: composes store, queue, routing, links, intake and receipts, and runs them.

Owns `Gateway` (start-up order, shutdown order, the `LinkSink` every outbound link reports to,
the periodic sweeps, the SIGHUP reload of operator and route tables) and `run(config)`, the
entry point of `tandem run`.

How a message moves: a channel (HTTP, SMPP server) calls `gateway.intake.accept`, which stores it
durably and hands it to the `Dispatcher`, which queues it on a link. The link reports back here:
`on_submitted` records carrier ids (the correlation entries) and releases receipts that arrived
early; `on_receipt` applies receipts through the store, which keeps final states final; failures
requeue with backoff or fail the message. Status changes and MOs are then offered to listeners
(SMPP customer receipts, HTTP callbacks, the inbound handler), which subscribe at start-up.

Never does: protocol work or SQL. Those belong to links, channels and the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from dlr.aggregate import ReportMode, reports
from dlr.correlation import (
    Correlator,
    DroppedReceipt,
    DropReason,
    HeldReceipt,
    SegmentRef,
)
from dlr.ids import LinkReceiptKey
from dlr.status import MessageStatus, SegmentStatus, StatusSource, is_final
from gateway import stages
from gateway.backlog import Backlog, BacklogLimits
from gateway.batching import TurnBatch
from gateway.config import (
    BUILTIN_SOURCE,
    ConfigError,
    LinkConfig,
    SmppLinkConfig,
    TandemConfig,
    load_config,
)
from gateway.dispatch import DailyUsage, Dispatcher, LinkStateView
from gateway.egress import EgressPolicy
from gateway.events import EventKind, EventSinks, ReceiptEvents, link_state_payload, sink_specs
from gateway.inbound.handler import InboundHandler
from gateway.inbound.model import InboundPart
from gateway.inbound.replies import KeywordReplies
from gateway.inbound.routing import InboundRouter
from gateway.intake import DEFAULT_MAX_PARTS, MessageIntake
from gateway.links.base import (
    Link,
    LinkCapabilities,
    LinkState,
    ReceiptReport,
    SendFailure,
    SubmittedSegment,
)
from gateway.links.budget import BudgetedLink, LinkBudgets
from gateway.logs import message_fields
from gateway.messages import Message, Segment
from gateway.optouts.from_config import matcher_and_groups
from gateway.optouts.keywords import KeywordMatcher
from gateway.optouts.policy import QUEUED_REFUSAL, OptOutPolicy
from gateway.optouts.registry import OptOutRegistry, OptOutStats
from gateway.optouts.senders import SenderGroups, sender_key
from gateway.private_files import private_data_dir
from gateway.queue import AsyncSendQueue, RetryPolicy, SendGate
from gateway.reload import ReloadPlan, ReloadReport, plan_reload
from gateway.services import StatusListener
from gateway.startup import startup_step
from gateway.store.base import (
    InboundStore,
    MessageStore,
    OptOutStore,
    SegmentReceipt,
    StatusChange,
    SubmitResult,
)
from gateway.store.configured import store_from_config
from gateway.store.postgres import PostgresMessageStore
from gateway.store.retention import RetentionPurger
from gateway.store.sqlstore import SqlMessageStore
from gateway.store.writer import tune_collector
from gateway.tasks import cancel_and_settle, cancel_and_wait
from routing import NumberResolver, OperatorTables, RouteTable, TableFormatError
from smpp.constants import CommandStatus, status_name
from smpp.segmentation import Concatenation

log = logging.getLogger("tandem")

# Refusals that say "this route cannot carry it", not "this message is wrong": try the next target.
ROUTE_LEVEL_STATUSES = frozenset(
    {
        CommandStatus.ESME_RINVDSTADR,
        CommandStatus.ESME_RSUBMITFAIL,
        CommandStatus.ESME_RX_R_APPN,
        CommandStatus.ESME_RINVSRCADR,
    }
)
SWEEP_INTERVAL = 1.0
# How often a cluster node hands off what waits here for links it has no bind on.
HANDOFF_INTERVAL = 0.5
TAKE_OVER_BATCH = 10_000  # messages a take-over claims and reads at once
# Held receipts looked up again per sweep on a cluster (`Gateway._apply_held_elsewhere`).
_HELD_LOOKUPS = 1000
_DEFAULT_CAPABILITIES = LinkCapabilities(DEFAULT_MAX_PARTS, Concatenation.UDH8, None)


@dataclass(slots=True)
class GatewayStats:
    """Counters a sysadmin graphs; the metrics exporter reads them."""

    submitted: int = 0
    temporary_failures: int = 0
    permanent_failures: int = 0
    failovers: int = 0
    receipts: int = 0
    receipts_unparseable: int = 0
    receipts_unmatched: int = 0
    receipts_held: int = 0
    expired: int = 0
    dlr_timeouts: int = 0
    mo_received: int = 0  # MO parts links handed over (what became of them: `InboundStats`)
    # Messages that reached a final status, by (channel, link, status); link "" for one that
    # never left the queue. A message the DLR timeout made `unknown` and a late receipt then
    # settled is counted under both statuses.
    finals: dict[tuple[str, str, str], int] = field(default_factory=dict)
    submitted_by: dict[tuple[str, str], int] = field(default_factory=dict)  # (channel, link)
    receipts_correlated: int = 0  # receipts applied to the segment they belong to
    # Accept (created_at) to final status, by link: observed once per final message.
    accept_to_final: dict[str, stages.Histogram] = field(default_factory=dict)

    def count_final(self, message: Message, now: float) -> None:
        link = message.link or ""
        key = (message.channel.value, link, message.status.value)
        self.finals[key] = self.finals.get(key, 0) + 1
        histogram = self.accept_to_final.get(link)
        if histogram is None:
            histogram = self.accept_to_final[link] = stages.Histogram()
        histogram.observe(max(now - message.created_at, 0.0))


@dataclass
class Gateway:
    """One daemon instance. `await start()`, then channels and links run until `stop()`."""

    config: TandemConfig
    store: MessageStore | None = None
    clock: Callable[[], float] = time.time
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    stats: GatewayStats = field(default_factory=GatewayStats)
    status_listeners: list[StatusListener] = field(default_factory=list)
    # The file the config came from (None: the built-in default): what a reload reads again.
    config_path: Path | None = None

    def __post_init__(self) -> None:
        if self.store is None:
            with startup_step("data_dir", str(self.config.data_dir)):
                private_data_dir(self.config.data_dir)
            self.store = store_from_config(self.config)
        # Named event sinks (MQTT, ...): receipts and link states go to all of them, an MO to
        # the one its inbound route names. None configured: publishing is a no-op.
        self.events = EventSinks.from_config(self.config)
        self.status_listeners.append(ReceiptEvents(self.events))
        self.links: dict[str, Link] = {}
        self.link_states = LinkStateView(self.links)
        self.queue = AsyncSendQueue(
            self._on_expired_in_queue,
            clock=self.clock,
            load=self.store.load_waiting,
            in_memory=self.config.queue.in_memory,
            page=self.config.queue.page,
        )
        self.numbers = NumberResolver(self.config.numbering)
        self.routes = RouteTable.from_config(self.config.routes)
        self.link_states.waiting = self.queue.size
        self.dispatcher = Dispatcher(self.queue, lambda: self.routes, self.link_states)
        self.queue.place = self.dispatcher.place
        self.backlog = Backlog(backlog_limits(self.config), self.queue.size, self.queue.route_size)
        self.intake = MessageIntake(
            numbers=self.numbers,
            routes=self.routes,
            link_states=self.link_states,
            store=self.message_store,
            dispatch=self.dispatcher,
            link_max_parts=self._link_max_parts,
            link_concatenation=self._link_concatenation,
            clock=self.clock,
            backlog=self.backlog,
            senders=self.config.senders,
        )
        # The opt-out list (loaded at start) and the check every MT passes; the inbound
        # handler records STOP/START through `optouts` and matches MOs with `keywords` (read
        # it per MO: a reload puts a new matcher here).
        self.optout_stats = OptOutStats()
        self.keywords, sender_groups = matcher_and_groups(self.config)
        self.optouts = OptOutRegistry(
            cast(OptOutStore, self.store), sender_groups, clock=self.clock, stats=self.optout_stats
        )
        self.optout_policy = OptOutPolicy(
            self.optouts,
            otp_exempt=self.config.optouts.otp_exempt,
            enabled=self.config.optouts.enabled,
        )
        self.intake.policies.append(self.optout_policy)
        # ... and again as a link takes a message: a STOP stops what was queued before it.
        self.queue.stop_before_send = self._stopped_by_optout
        # Every MO, link-neutral: reassembly, storage, routing, keywords (gateway.inbound).
        self.inbound = InboundHandler(
            cast(InboundStore, self.store),
            self.config.inbound,
            events=self.events,
            egress=EgressPolicy.from_config(self.config.egress),
            matcher=self.keywords,
            groups=sender_groups,
            clock=self.clock,
        )
        self.inbound.keyword_actions = self.optouts
        self.inbound.reply = KeywordReplies(self.config.inbound.replies, self.intake, sender_groups)
        self.correlator: Correlator[LinkReceiptKey, _EarlyReceipt] = Correlator(
            max_held=max(self.config.dlr.hold_max, 1), hold_seconds=self.config.dlr.hold_seconds
        )
        self.simulator: object | None = None
        self.modem_simulator: object | None = None  # gateway.modem_simulator, when enabled
        self.smpp_server: object | None = None  # gateway.smpp_server.CustomerSmppServer
        self.http_api: object | None = None  # gateway.http.HttpApi when [http] is enabled
        self.metrics: object | None = None  # gateway.metrics.MetricsExporter when enabled
        self._recording_stages = False  # this daemon turned `gateway.stages` on
        self._tasks: set[asyncio.Task[None]] = set()
        # Submit results and receipts that arrive in one turn of the loop (a TCP read carries
        # dozens) are recorded together, in the order the links handed them over (wire order):
        # one store op and one task for all, each link awaiting the shared outcome before it
        # answers or counts the message as recorded.
        self._link_outcomes: TurnBatch[_Submitted | _Received] = TurnBatch(
            self._record_link_outcomes, self._spawn
        )
        self._sweeper: asyncio.Task[None] | None = None
        self.retention: RetentionPurger | None = None  # [retention]: the periodic purge
        self._cluster: asyncio.Task[None] | None = None  # lease and take-over (PostgreSQL)
        # The carrier budgets a cluster shares (PostgreSQL): each SMPP link binds only the
        # slots this node holds; None on SQLite, where a link binds all its sessions.
        self.budgets: LinkBudgets | None = None
        self._renewed_at = time.monotonic()  # when this node's lease was last renewed
        if isinstance(self.store, PostgresMessageStore):
            self.budgets = LinkBudgets(self.store, self.store.node)
            # Links send only while this node's lease is surely its own (see `_renewed`).
            self.queue.gate = SendGate(self._renewed_at + self.store.lease_seconds)
        self._rebalance_now = asyncio.Event()
        # Links this node ran with no bind slot at the end of the last budget round: what
        # waits here for them is handed off to the nodes that have one (`_hand_off_forever`).
        self._no_bind: set[str] = set()
        self._claim_checks = 0  # checks of this node's claims after a lease lapsed, so far
        self._stopped = asyncio.Event()
        self._background: list[Callable[[], Awaitable[None]]] = []  # stop hooks of channels
        self._reloading = asyncio.Lock()
        self._restarting: set[str] = set()  # links being restarted by a reload
        self._reconfigure_hooks: list[Callable[[TandemConfig], list[str]]] = []
        self.last_reload: ReloadReport | None = None
        self._stopping = False

    @property
    def stopping(self) -> bool:
        """`stop()` has begun (SIGTERM): readiness answers no from here on."""
        return self._stopping

    @property
    def message_store(self) -> MessageStore:
        assert self.store is not None
        return self.store

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        metrics = self.config.metrics
        if self.config.stage_times or (metrics.enabled and metrics.latency):
            # The exporter's latency without per-message marks; `stage_times` adds them.
            stages.enable(marks=self.config.stage_times)
            self._recording_stages = True
        if self.config.numbering.prefix_file or self.config.numbering.mnp_file:
            # Large operator tables load off the loop; the swap itself is atomic.
            with startup_step("numbering"):
                tables = await loop.run_in_executor(None, self._load_tables)
            self.numbers.swap_tables(tables)
        await self.events.start()  # connects in the background; events buffer until then
        try:
            await self.message_store.open()
        except BaseException:
            await self.events.stop()
            raise
        try:
            await self._start_after_store()
        except BaseException:
            # Undo what started (listeners, links, the store's writer process and threads),
            # so a failed start ends the process instead of leaving it half alive.
            await self.stop()
            raise

    async def _start_after_store(self) -> None:
        """Start-up past the store; a step that fails raises `StartupError` naming it."""
        config = self.config
        if config.simulator.enabled:
            from gateway.sim_journal import JOURNAL_NAME, SimulatorJournal
            from gateway.simulator import SmscSimulator

            journal = SimulatorJournal(config.data_dir / JOURNAL_NAME)
            simulator = SmscSimulator(config.simulator, keep_received=False, journal=journal)
            with startup_step("simulator", f"{config.simulator.host}:{config.simulator.port}"):
                await simulator.start()
            self.simulator = simulator
        if config.modem_simulator.enabled:
            from gateway.modem_simulator import DaemonModemSimulator

            modem_simulator = DaemonModemSimulator(config.modem_simulator)
            devices = ", ".join(str(device) for device in config.modem_simulator.devices)
            with startup_step("modem_simulator", devices):
                await modem_simulator.start()
            self.modem_simulator = modem_simulator
        with startup_step("links"):
            for link_config in config.links:
                if link_config.enabled and self._runs_here(link_config):
                    self.links[link_config.name] = self._build_link(link_config)
        with startup_step("store", str(config.store_path)):
            await self._restore_daily_counts()
            await self._queue_pending()
            await self.optouts.load()  # before any channel takes a message
        self.optouts.start_sync(config.optouts.sync_seconds)
        if config.smpp_server.enabled:
            from gateway.smpp_server import start_customer_server

            server = config.smpp_server
            with startup_step("smpp_server", f"{server.host}:{server.port}"):
                self.smpp_server = await start_customer_server(self)
        # Before the HTTP API, which serves /metrics, /healthz and /readyz through it.
        from gateway.metrics import start_metrics

        with startup_step("metrics", config.metrics.listen or "the HTTP API's port"):
            self.metrics = await start_metrics(self)
        if config.http.enabled:
            from gateway.http import start_http_api

            with startup_step("http", f"{config.http.host}:{config.http.port}"):
                self.http_api = await start_http_api(self)
        with startup_step("inbound"):
            await self.inbound.start()
        with startup_step("links"):
            for link in self.links.values():
                await self._start_link(link)
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="tandem-sweeper")
        store = self.store
        if config.retention.enabled and isinstance(store, SqlMessageStore):  # either backend
            from gateway.store.retention import StoreRetention

            self.retention = RetentionPurger(StoreRetention(store), config)
            self.retention.start()

    async def _restore_daily_counts(self) -> None:
        """Links that count their day against a cap (SIMs) go on from what the store says
        they sent today, so a restart does not hand a SIM a fresh cap."""
        for link in self.links.values():
            restore = getattr(link, "restore_sent_today", None)
            day_started_at = getattr(link, "day_started_at", None)
            if restore is not None and day_started_at is not None:
                restore(await self.message_store.count_submitted_since(link.name, day_started_at()))
        if isinstance(self.store, PostgresMessageStore):
            self._cluster = asyncio.create_task(
                self._hold_lease_forever(self.store), name="tandem-cluster"
            )

    async def _queue_pending(self) -> None:
        """Put what waits in the store back into the send queue: scheduled messages whole,
        the rest by reference (the queue reads them back as their link gets to them)."""
        store, queue = self.message_store, self.queue
        now = self.clock()
        for message in await store.load_scheduled(now):
            self.dispatcher.enqueue(message)
        whole: list[str] = []
        # Each waits for the link it had (`Dispatcher.place` decides so while no link is up).
        async for page in store.pending_refs(now):
            whole += queue.put_refs(page)
        for message in await store.load_waiting(whole):
            self.dispatcher.enqueue(message)

    def _load_tables(self) -> OperatorTables:
        return NumberResolver.from_config(self.config.numbering).tables

    def add_stop_hook(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Channels register how they stop; they stop first, before links and the store."""
        self._background.append(hook)

    async def stop(self) -> None:
        self._stopping = True
        for hook in reversed(self._background):
            with contextlib.suppress(Exception):
                await hook()
        if self._cluster is not None:  # no budget round may open binds from here on
            await cancel_and_wait(self._cluster)
        # All links at once: each waits up to `[shutdown] drain_seconds` for the answers to
        # what it sent, so the whole stop takes that once, not once per link.
        await asyncio.gather(*(link.stop() for link in self.links.values()), return_exceptions=True)
        if self.budgets is not None and self._cluster is not None:
            try:  # the binds are closed: other nodes may have their slots now
                await self.budgets.leave()
            except Exception:
                log.exception("could not give back this node's bind slots")
        if self.retention is not None:
            await self.retention.stop()
        if self._sweeper is not None:
            await cancel_and_wait(self._sweeper)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.inbound.stop()
        await self.queue.close()
        await self.optouts.stop()
        stop_simulator = getattr(self.simulator, "stop", None)
        if stop_simulator is not None:
            await stop_simulator()
        stop_modem_simulator = getattr(self.modem_simulator, "stop", None)
        if stop_modem_simulator is not None:
            await stop_modem_simulator()
        await self.message_store.close()
        await self.events.stop()  # last: the links' final states go out first
        if self._recording_stages and not self.config.stage_times:
            # The exporter's recorder ends with the daemon; `stage_times` leaves its table to
            # be read after the stop (the benches print it), as it always did.
            stages.disable()
        self._recording_stages = False
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def _runs_here(self, link_config: LinkConfig) -> bool:
        """Whether this node runs the link: a link pinned to named nodes runs on those only."""
        return not link_config.nodes or self.config.node.name in link_config.nodes

    async def _start_link(self, link: Link) -> None:
        """Start a link; in a cluster an SMPP link starts with no binds, and binds the slots
        its node holds from the next budget round (asked for at once)."""
        if self.budgets is not None and isinstance(link, BudgetedLink):
            await link.set_budget(0, None)
            self._rebalance_now.set()
        await link.start()

    def _budgeted_links(self) -> dict[str, BudgetedLink]:
        return {name: link for name, link in self.links.items() if isinstance(link, BudgetedLink)}

    def _budget_limits(self) -> dict[str, tuple[int, float | None]]:
        limits: dict[str, tuple[int, float | None]] = {}
        for link_config in self.config.links:
            if isinstance(link_config, SmppLinkConfig):
                limits[link_config.name] = (link_config.sessions, link_config.tps)
        return limits

    def _build_link(self, link_config: LinkConfig, *, count: bool = True) -> Link:
        from gateway.links import build_link

        link = build_link(link_config, self.queue, self)
        if hasattr(link, "drain_seconds"):  # how long its stop waits for answers (SIGTERM)
            link.drain_seconds = self.config.shutdown.drain_seconds
        if count:
            self._count_usage(link)
        return link

    def _count_usage(self, link: Link) -> None:
        if isinstance(link, DailyUsage):  # a SIM: "even" routes spread by what it used today
            self.link_states.count_usage(link.name, link)

    def _capabilities(self, name: str | None) -> LinkCapabilities:
        """What link `name` can carry: the running link's word; for one not running (disabled,
        or gone since a reload), what its config entry says, else the defaults."""
        link = self.links.get(name) if name is not None else None
        if link is not None:
            return link.capabilities
        if name is not None:
            from gateway.links import link_capabilities

            with contextlib.suppress(KeyError):
                return link_capabilities(self.config.link(name))
        return _DEFAULT_CAPABILITIES

    def _link_max_parts(self, name: str) -> int:
        return self._capabilities(name).max_parts

    def _link_concatenation(self, name: str) -> Concatenation:
        return self._capabilities(name).concatenation

    # --- LinkSink -------------------------------------------------------------------------------

    def on_submitted(
        self, link: str, message: Message, segments: Sequence[SubmittedSegment]
    ) -> Awaitable[None]:
        stats = self.stats
        stats.submitted += 1
        key = (message.channel.value, link)
        stats.submitted_by[key] = stats.submitted_by.get(key, 0) + 1
        self.dispatcher.forget(message.id)
        return self._link_outcomes.add(_Submitted(link, message, segments))

    async def _record_link_outcomes(
        self, batch: list[_Submitted | _Received]
    ) -> dict[int, asyncio.Future[None]] | None:
        """Record one turn's submit results and receipts with one store op, in the order given,
        except that a receipt goes behind its own submit result when that is in the batch too
        (an SMSC that writes the receipt first). Receipts held for a carrier id these submit
        results bring go into the same op. Receipts whose carrier id is still unknown are held
        and answered only once recorded (their futures are returned), so the carrier is never
        told we have a receipt that only memory holds."""
        now = self.clock()
        correlator = self.correlator
        submitted_keys: set[tuple[str, str]] = set()
        if len(batch) > 1:
            for item in batch:
                if isinstance(item, _Submitted):
                    submitted_keys.update((item.link, part.carrier_id) for part in item.segments)
        rows: list[SubmitResult | SegmentReceipt] = []
        # For each row: the batch index it came from, or the held receipt it applies.
        origins: list[int | _EarlyReceipt] = []
        behind: list[int] = []  # receipts read before their own submit result
        for index, item in enumerate(batch):
            if isinstance(item, _Received):
                if (item.link, item.carrier_id) in submitted_keys:
                    behind.append(index)
                else:
                    rows.append(_segment_receipt(item.link, item.report, item.carrier_id, now))
                    origins.append(index)
                continue
            rows.append(_submit_result(item, now))
            origins.append(index)
            for part in item.segments:
                key = LinkReceiptKey(item.link, part.carrier_id)
                target = SegmentRef(item.message.id, part.index)
                for released in correlator.on_submit_resp(key, target, now):
                    held = released.receipt
                    rows.append(_segment_receipt(held.link, held.report, held.carrier_id, now))
                    origins.append(held)
        for index in behind:
            item = batch[index]
            assert isinstance(item, _Received)
            rows.append(_segment_receipt(item.link, item.report, item.carrier_id, now))
            origins.append(index)
        try:
            changes = await self.message_store.record_link_outcomes(rows)
        except BaseException as exc:
            for origin in origins:
                if isinstance(origin, _EarlyReceipt) and not origin.answered.done():
                    _fail_future(origin.answered, exc)
            raise
        loop = asyncio.get_running_loop()
        later: dict[int, asyncio.Future[None]] = {}
        raced: list[_EarlyReceipt] = []
        for origin, row, change in zip(origins, rows, changes, strict=True):
            if isinstance(row, SubmitResult):
                self._notify(change)
                continue
            if change.message is not None:
                if isinstance(origin, _EarlyReceipt):
                    _answer(origin.answered)
                self.stats.receipts_correlated += 1
                self._notify_segment(change)
                continue
            if isinstance(origin, _EarlyReceipt):
                early = origin  # its submit result was just recorded, yet no segment has it
            else:
                item = batch[origin]
                assert isinstance(item, _Received)
                answered: asyncio.Future[None] = loop.create_future()
                early = _EarlyReceipt(item.link, item.report, item.carrier_id, answered)
                later[origin] = early.answered
            key = LinkReceiptKey(early.link, early.carrier_id)
            outcome = correlator.on_receipt(key, early, now)
            if isinstance(outcome, HeldReceipt):
                self.stats.receipts_held += 1
                if outcome.evicted is not None:
                    self._log_unmatched([outcome.evicted])
            elif isinstance(origin, _EarlyReceipt):
                self._log_unmatched(
                    [DroppedReceipt(outcome.key, early, outcome.received_at, DropReason.EXPIRED)]
                )
            else:
                raced.append(early)  # a submit result raced the store lookup: apply it again
        if raced:
            self._spawn(self._apply_raced(raced))
        return later

    async def _apply_held_elsewhere(self, now: float) -> None:
        """Receipts held here whose submit result another node has recorded since (the
        carrier sent the receipt to this node's bind before that node's submit_sm_resp was
        recorded): looked up again each sweep, applied once found. The carrier is answered
        only then, so a node that dies holding them loses none: the carrier offers them again."""
        correlator = self.correlator
        released: list[_EarlyReceipt] = []
        for key in correlator.held_keys(limit=_HELD_LOOKUPS):
            target = await self.message_store.find_segment(key.link, key.carrier_id)
            if target is not None:
                released += [r.receipt for r in correlator.on_submit_resp(key, target, now)]
        if released:
            await self._apply_raced(released)

    async def _apply_raced(self, receipts: list[_EarlyReceipt]) -> None:
        """Receipts whose store lookup ran just before their submit result was recorded: one
        op for all of them, off the path that frees the links' window slots."""
        now = self.clock()
        rows = [_segment_receipt(r.link, r.report, r.carrier_id, now) for r in receipts]
        try:
            changes = await self.message_store.apply_segment_statuses(rows)
        except BaseException as exc:
            for receipt in receipts:
                _fail_future(receipt.answered, exc)
            raise
        for receipt, change in zip(receipts, changes, strict=True):
            if change.message is None:
                key = LinkReceiptKey(receipt.link, receipt.carrier_id)
                self._log_unmatched([DroppedReceipt(key, receipt, now, DropReason.EXPIRED)])
                continue
            _answer(receipt.answered)
            self.stats.receipts_correlated += 1
            self._notify_segment(change)

    def on_temporary_failure(
        self, link: str, message: Message, failure: SendFailure
    ) -> Awaitable[None] | None:
        self.stats.temporary_failures += 1
        if failure.not_attempted:
            # Never tried (its SIM is at the day's cap): another target now, no attempt spent.
            return self._queue_again(message)
        return self._requeue(link, message, failure)

    def _queue_again(self, message: Message) -> Awaitable[None] | None:
        """A message a link handed back goes back into the queue: at once on one node; in a
        cluster once this node is known to still hold it (`_queue_if_still_held`)."""
        if isinstance(self.store, PostgresMessageStore):
            return self._queue_if_still_held(self.store, message)
        self.dispatcher.enqueue(message)
        return None

    async def _requeue(self, link: str, message: Message, failure: SendFailure) -> None:
        now = self.clock()
        error = _describe_failure(failure)
        if message.is_expired(now):
            await self._fail(message, MessageStatus.EXPIRED, error, count_attempt=False)
            return
        attempts = message.attempts + 1
        if self.retry.exhausted(attempts):
            await self._fail(message, MessageStatus.FAILED, f"{error} (gave up after retries)")
            return
        next_attempt = self.retry.next_attempt_at(now, attempts)
        change = await self.message_store.requeue(
            message.id, next_attempt_at=next_attempt, error=error, at=now, source=StatusSource.QUEUE
        )
        if change.message is not None and is_final(change.message.status):
            return  # cancelled or finished meanwhile: nothing to send again
        message.attempts = attempts
        message.next_attempt_at = next_attempt
        message.last_error = error
        message.status = MessageStatus.QUEUED
        again = self._queue_again(message)
        if again is not None:
            await again

    def on_permanent_failure(
        self, link: str, message: Message, failure: SendFailure
    ) -> Awaitable[None]:
        self.stats.permanent_failures += 1
        if failure.status in ROUTE_LEVEL_STATUSES and self.dispatcher.exclude(message, link):
            self.stats.failovers += 1
            message.link = None
            again = self._queue_again(message)
            if again is not None:
                self._spawn(again)
            return self.message_store.record_history(
                message.id,
                status=MessageStatus.QUEUED,
                source=StatusSource.SUBMIT_RESP,
                at=self.clock(),
                detail=f"{link} refused it ({_describe_failure(failure)}); next route target",
            )
        return self._fail(message, MessageStatus.FAILED, _describe_failure(failure))

    async def _fail(
        self, message: Message, status: MessageStatus, error: str, *, count_attempt: bool = True
    ) -> None:
        self.dispatcher.forget(message.id)
        change = await self.message_store.fail(
            message.id,
            status,
            error=error,
            at=self.clock(),
            source=StatusSource.SUBMIT_RESP,
            count_attempt=count_attempt,
        )
        self._notify(change)

    def on_receipt(self, link: str, report: ReceiptReport) -> Awaitable[None] | None:
        self.stats.receipts += 1
        key = report.key
        if key is None or report.status is None:
            self.stats.receipts_unparseable += 1
            log.warning("unreadable receipt on link %s (%s)", link, report.evidence or "no detail")
            return None
        return self._link_outcomes.add(_Received(link, report, key))

    def on_mo(self, link: str, part: InboundPart) -> Awaitable[None] | None:
        self.stats.mo_received += 1
        return self.inbound.receive(part)

    def on_link_state(self, link: str, state: LinkState) -> None:
        log.info("link %s is %s", link, state.value)
        if self.events.enabled:
            self.events.publish(EventKind.LINK, link, link_state_payload(link, state.value))
        # A link stopped for good while the daemon runs (a modem whose SIM refused its PIN)
        # hands its queue on like one that is down; at shutdown nothing needs moving.
        if (
            state is LinkState.DOWN
            or state is LinkState.CAPPED
            or (
                state is LinkState.STOPPED
                and not self._stopping
                and link not in self._restarting  # a reload restarts it: its queue waits
            )
        ):
            moved = self.dispatcher.link_down(link)
            if moved:
                log.info("moved %d queued messages off link %s", moved, link)

    # --- listeners and sweeps -----------------------------------------------------------------

    def notify_status(self, change: StatusChange) -> None:
        """A status change made outside the links (an operator's cancel): counted, and told
        to the status listeners."""
        self._notify(change)

    def _notify(self, change: StatusChange) -> None:
        if not change.changed or change.message is None:
            return
        if is_final(change.message.status) and change.update is None:
            self.stats.count_final(change.message, self.clock())
        self._tell(change)

    def _tell(self, change: StatusChange) -> None:
        assert change.message is not None
        for listener in self.status_listeners:
            try:
                listener.message_status_changed(change.message, change)
            except Exception:  # one listener's bug must not stop receipts for the others
                log.exception("status listener failed")

    def _notify_segment(self, change: StatusChange) -> None:
        """A receipt or timeout for one segment: tell listeners what `[dlr] report` asks for.

        "message": only when the aggregated status changed (a later part's outcome after the
        first failure tells nobody again). "segment": each part's final or intermediate status,
        given to listeners as the status of the message they report on.
        """
        update = change.update
        message = change.message
        if update is None or message is None or not change.changed:
            self._notify(change)
            return
        if update.message is not None and is_final(message.status):
            self.stats.count_final(message, self.clock())
        mode = self.config.dlr.report
        if mode is ReportMode.MESSAGE:
            if update.message is not None:
                self._tell(change)
            return
        for report in reports(update, mode):
            if report.status is message.status:
                self._tell(change)
            else:
                self._tell(
                    dataclasses.replace(
                        change, message=dataclasses.replace(message, status=report.status)
                    )
                )

    def _log_unmatched(
        self, dropped: Sequence[DroppedReceipt[LinkReceiptKey, _EarlyReceipt]]
    ) -> None:
        """Receipts whose carrier id matched no segment in time: counted and logged, not kept;
        the carrier is answered now (it would only offer them again)."""
        self.stats.receipts_unmatched += len(dropped)
        for dropped_receipt in dropped:
            early = dropped_receipt.receipt
            _answer(early.answered)
            log.warning(
                "receipt on link %s for carrier id %s (%s) matched no message: %s",
                dropped_receipt.key.link,
                dropped_receipt.key.carrier_id,
                early.report.detail,
                "no submit result in time"
                if dropped_receipt.reason is DropReason.EXPIRED
                else "hold full",
            )

    def _on_expired_in_queue(self, messages: list[Message]) -> None:
        for message in messages:
            self.stats.expired += 1
            self._spawn(
                self._fail(message, MessageStatus.EXPIRED, "validity ended", count_attempt=False)
            )

    def _stopped_by_optout(self, message: Message) -> bool:
        """A queued message whose recipient opted out since it was accepted: finished REJECTED
        (its customer gets the receipt or callback of any final status), not sent."""
        if not self.optout_policy.stops_queued(message):
            return False
        self.dispatcher.forget(message.id)
        self._spawn(
            self._fail(message, MessageStatus.REJECTED, QUEUED_REFUSAL, count_attempt=False)
        )
        return True

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _hold_lease_forever(self, store: PostgresMessageStore) -> None:
        """A node of a cluster: renew this node's lease every `lease_seconds / 3`, on a fixed
        cadence that nothing else delays (the take-over and budget work runs beside it, in
        `_cluster_work_forever`, woken by each renewal; hand-offs in `_hand_off_forever`)."""
        period = store.lease_seconds / 3
        work = asyncio.create_task(self._cluster_work_forever(store), name="tandem-cluster-work")
        hand_off = asyncio.create_task(self._hand_off_forever(store), name="tandem-hand-off")
        store.watch_handoffs(self._rebalance_now.set)
        try:
            while True:
                started = time.monotonic()
                try:
                    renewed = await asyncio.wait_for(store.heartbeat(), store.lease_seconds / 2)
                    await self._renewed(store, started, renewed)
                except Exception:
                    log.exception("node %s: lease renewal failed", store.node)
                else:
                    self._rebalance_now.set()
                await asyncio.sleep(max(0.0, started + period - time.monotonic()))
        finally:
            await cancel_and_settle(work, hand_off)

    async def _renewed(self, store: PostgresMessageStore, started: float, renewed: bool) -> None:
        """A renewal sent at `started` (monotonic) went through: the lease is this node's
        until `started + lease_seconds` at least, and the links may send until then. If the
        lease may have lapsed since the last renewal (the database says so, or the last one
        that went through was sent `lease_seconds` ago or more: one that timed out here may
        have been the one that found it lapsed), other nodes may have taken this node's
        messages over: they leave its queue first (`_drop_taken_over`), with the links held.
        A take-over locks the dead node's row to its commit, so this renewal came after any
        take-over of this node's messages, and the check below sees all it took."""
        gate = self.queue.gate
        assert gate is not None
        lapsed = not renewed or time.monotonic() - self._renewed_at >= store.lease_seconds
        if lapsed:
            gate.open_until(0.0)  # shut until the check is done
            log.error(
                "node %s: its lease %s (a stall longer than %.0f s): other nodes may have "
                "taken over its unsent messages and bind slots",
                store.node,
                "had lapsed" if not renewed else "may have lapsed",
                store.lease_seconds,
            )
            dropped = await self._drop_taken_over(store)
            if dropped:
                log.error(
                    "node %s: dropped %d queued messages another node took over",
                    store.node,
                    dropped,
                )
        self._renewed_at = started
        gate.open_until(started + store.lease_seconds)

    async def _drop_taken_over(self, store: PostgresMessageStore) -> int:
        """Take out of the queue every message this node no longer holds (another node took
        it over while this node's lease had lapsed, and sends it); how many. References not
        yet read are checked as they are read (`load_waiting` reads this node's only)."""
        self._claim_checks += 1
        held = self.queue.core.held_ids()
        mine = await store.still_claimed(held)
        dropped = 0
        for message_id in held:
            if message_id not in mine and self.queue.remove(message_id):
                self.dispatcher.forget(message_id)
                dropped += 1
        return dropped

    async def _queue_if_still_held(self, store: PostgresMessageStore, message: Message) -> None:
        """A message a link handed back (a retry, another route target) goes back into this
        node's queue only if this node still holds it: its link took it before a lapse of
        this node's lease that another node may have used to take it over. Checked again
        if a check of this node's claims began meanwhile (it did not see this message)."""
        while True:
            checks = self._claim_checks
            try:
                held = await store.still_claimed([message.id])
            except Exception:
                if self._stopping:  # it waits in the store; a restart queues it
                    return
                log.exception(
                    "node %s: could not check the claim on %s",
                    store.node,
                    message.id,
                    extra=message_fields(message.id),
                )
                await asyncio.sleep(1.0)
                continue
            if checks == self._claim_checks:
                break
        if message.id in held:
            self.dispatcher.enqueue(message)

    async def _cluster_work_forever(self, store: PostgresMessageStore) -> None:
        """After each renewal (and when another node hands messages off): move the links'
        binds to this node's share of their budgets, then take into this node's queue the
        unsent messages of nodes whose lease ran out and those handed off for links it now
        has binds on (each goes to one node only). A node whose lease was not renewed for two
        periods closes its binds before the lease can lapse: its bind slots are free from
        then on."""
        period = store.lease_seconds / 3
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rebalance_now.wait(), period)
            self._rebalance_now.clear()
            silent = time.monotonic() - self._renewed_at
            try:
                if silent >= 2 * period:
                    if self.budgets is not None:
                        log.error(
                            "node %s: lease not renewed for %.1f s: closing its carrier binds",
                            store.node,
                            silent,
                        )
                        await self.budgets.shed_all(self._budgeted_links())
                    continue
                if self.budgets is not None:
                    async with self._reloading:  # a reload's links settle first
                        links = self._budgeted_links()
                        await self.budgets.rebalance(links, self._budget_limits())
                        self._no_bind = {name for name, link in links.items() if not link.budget}
                await self.take_over(store)
            except Exception:
                log.exception("node %s: take-over or budget round failed", store.node)

    def _sends_on(self) -> list[str]:
        """The links this node sends on: those it runs, but for those it holds no bind slot of."""
        return sorted(name for name in self.links if name not in self._no_bind)

    async def take_over(self, store: PostgresMessageStore) -> int:
        """Queue here the unsent messages of dead nodes, and those handed off for a link this
        node sends on; how many. A full batch asks for another round at once."""
        ids = await store.take_over(links=self._sends_on(), limit=TAKE_OVER_BATCH)
        if not ids:
            return 0
        if len(ids) >= TAKE_OVER_BATCH:
            self._rebalance_now.set()
        messages = await store.load_waiting(ids)
        log.warning(
            "node %s: took over %d unsent messages of nodes whose lease ran out or that had "
            "no bind on their link",
            store.node,
            len(messages),
        )
        for message in messages:
            self.dispatcher.enqueue(message)
        return len(messages)

    async def _hand_off_forever(self, store: PostgresMessageStore) -> None:
        """Messages waiting here for a link this node has no bind on (it does not run it, or
        holds none of its slots) go to a node that has one: every `HANDOFF_INTERVAL`, while
        this node's lease is surely its own, they leave its queue and its claim is released;
        a node sending on that link takes them when notified (or on its next round)."""
        gate = self.queue.gate
        assert gate is not None
        while True:
            await asyncio.sleep(HANDOFF_INTERVAL)
            if not gate.is_open():
                continue  # nothing is surely this node's to give
            for link in sorted(self.queue.depth()):
                if link in self.links and link not in self._no_bind:
                    continue
                try:
                    await self._hand_off(store, link)
                except Exception:
                    log.exception(
                        "node %s: handing off link %s's messages failed", store.node, link
                    )

    async def _hand_off(self, store: PostgresMessageStore, link: str) -> int:
        """Release what waits here for `link`; how many were still this node's to give."""
        messages, refs = self.queue.take_link(link)
        ids = [message.id for message in messages] + [ref.message_id for ref in refs]
        if not ids:
            return 0
        try:
            released = await store.release(ids, link)
        except BaseException:
            self.queue.put_back(link, messages, refs)
            raise
        for message_id in ids:
            self.dispatcher.forget(message_id)
        log.info(
            "node %s: handed off %d messages for link %s (no bind on it here)",
            store.node,
            released,
            link,
        )
        return released

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                await self.sweep()
            except Exception:
                log.exception("sweep failed")

    async def sweep(self) -> None:
        """Periodic work: drop early receipts nobody claimed, expire what outlived its
        validity, give up on receipts that never came."""
        now = self.clock()
        if isinstance(self.store, PostgresMessageStore):
            await self._apply_held_elsewhere(now)
        self._log_unmatched(self.correlator.expire(now))
        for message_id in await self.message_store.expire_due(now, source=StatusSource.TIMEOUT):
            self.stats.expired += 1
            # Whole messages only: a reference is dropped when its page is read back.
            if self.queue.remove(message_id, refs=False):
                self.dispatcher.forget(message_id)
            # Its customer is told, as of any other final status (receipt, callback).
            record = await self.message_store.get(message_id)
            if record is not None:
                self._notify(StatusChange(True, record.message))
        await self._sweep_receipt_timeouts(now)

    async def _sweep_receipt_timeouts(self, now: float) -> None:
        shortest = min(
            (self._dlr_timeout_of(link.name) for link in self.config.links),
            default=self.config.dlr.dlr_timeout,
        )
        for segment in await self.message_store.list_submitted_older_than(now - shortest):
            timeout = self._dlr_timeout_of(segment.link)
            if segment.submitted_at is None or segment.submitted_at > now - timeout:
                continue
            record = await self.message_store.get(segment.message_id)
            expired = record is not None and record.message.is_expired(now)
            change = await self.message_store.set_segment_status(
                segment.message_id,
                segment.index,
                SegmentStatus.EXPIRED if expired else SegmentStatus.UNKNOWN,
                at=now,
                source=StatusSource.TIMEOUT,
                detail=f"no final receipt within {timeout:.0f} s",
            )
            self.stats.dlr_timeouts += 1
            self._notify_segment(change)

    def _dlr_timeout_of(self, link: str | None) -> float:
        timeout = self._capabilities(link).dlr_timeout
        return timeout if timeout is not None else self.config.dlr.dlr_timeout

    # --- reload (SIGHUP) -----------------------------------------------------------------------

    async def reload(self, config_path: Path | None = None) -> bool:
        """Read the config again (`config_path`, or the built-in default when None) and apply
        what changed without dropping a bind that did not: operator tables and routes swap in
        at once; a link added is started, one removed is drained and stopped, one whose
        settings changed is restarted alone; accounts, keys' default limits, callback
        settings, the egress rule, sender ids, receipt reporting and event sinks follow.
        Sections only a restart can change keep their running values and are named in the
        log. A config that does not load, or whose tables do not, is refused whole: nothing
        changes and one line names the file, the key and the reason. Returns True when the
        new config is in effect; `last_reload` says what changed."""
        report = await self.reload_report(config_path)
        return report.ok

    async def reload_report(self, config_path: Path | None = None) -> ReloadReport:
        source = str(config_path) if config_path is not None else BUILTIN_SOURCE
        async with self._reloading:
            loop = asyncio.get_running_loop()
            try:
                plan, tables, routes, keywords, groups = await loop.run_in_executor(
                    None, self._read_reloadable, config_path
                )
                new_links = {
                    cfg.name: self._build_link(cfg, count=False)
                    for cfg in plan.added
                    if self._runs_here(cfg)
                }
                restarted = {cfg.name: cfg for cfg in plan.changed}
                inbound_router = InboundRouter(
                    plan.config.inbound.routes, self.inbound.router.account_of
                )
            except (ConfigError, TableFormatError, OSError, ValueError) as exc:
                log.error("reload failed, the running config stays: %s", _one_line(exc))
                self.last_reload = ReloadReport(False, source, error=_one_line(exc))
                return self.last_reload
            config = plan.config
            # No await until the swap is done: intake and dispatch see all old or all new.
            if config.egress != self.config.egress:
                self.inbound.webhooks.set_egress(EgressPolicy.from_config(config.egress))
            self.config = config
            self.numbers.config = config.numbering
            self.numbers.swap_tables(tables)
            self.routes = self.intake.routes = routes
            self.intake.senders = config.senders
            self.backlog.limits = backlog_limits(config)
            self.keywords = self.inbound.matcher = keywords
            self.inbound.groups = groups
            self.inbound.reply = KeywordReplies(config.inbound.replies, self.intake, groups)
            self.inbound.config = config.inbound
            self.inbound.router = inbound_router
            self.optouts.set_groups(groups)
            self.optout_policy.enabled = config.optouts.enabled
            self.optout_policy.otp_exempt = frozenset(
                sender_key(sender) for sender in config.optouts.otp_exempt
            )
            for name, link in new_links.items():
                self._count_usage(link)
                self.links[name] = link
            removed = [self.links.pop(name) for name in plan.removed if name in self.links]
            changes = [
                f"{tables.stats.prefixes} prefixes",
                f"{tables.stats.ported} ported numbers",
                f"{len(routes.routes)} routes",
            ]
            for reconfigure in self._reconfigure_hooks:
                changes += reconfigure(config)
            # Links: each on its own, every other bind untouched.
            for link in new_links.values():
                await self._start_link(link)
                changes.append(f"link {link.name} added")
            for link in removed:
                await link.stop()
                moved = self.dispatcher.link_down(link.name)
                changes.append(f"link {link.name} removed ({moved} queued messages moved)")
            for name, link_config in restarted.items():
                await self._restart_link(name, link_config)
                changes.append(f"link {name} restarted")
            changes += [f"event sink {c}" for c in await self.events.replace(sink_specs(config))]
            report = ReloadReport(True, source, changes=changes, needs_restart=plan.needs_restart)
            log.info("reloaded %s: %s", source, "; ".join(changes))
            if plan.needs_restart:
                log.warning(
                    "reload: %s changed and take effect at the next restart",
                    ", ".join(plan.needs_restart),
                )
            self.last_reload = report
            return report

    async def _restart_link(self, name: str, link_config: LinkConfig) -> None:
        """Stop the link and start it again with its new settings. Its queue stays (queues
        are per link name): what waits for it waits for the new one."""
        old = self.links.get(name)
        self._restarting.add(name)
        try:
            if old is not None:
                await old.stop()
            if not self._runs_here(link_config):  # pinned to other nodes now
                self.links.pop(name, None)
                return
            link = self._build_link(link_config)
            self.links[name] = link
            await self._start_link(link)
        finally:
            self._restarting.discard(name)

    def add_reconfigure_hook(self, hook: Callable[[TandemConfig], list[str]]) -> None:
        """Channels register how a reloaded config reaches them (synchronous: it runs inside
        the swap); the hook returns what it changed, for the log."""
        self._reconfigure_hooks.append(hook)

    def _read_reloadable(
        self, config_path: Path | None
    ) -> tuple[ReloadPlan, OperatorTables, RouteTable, KeywordMatcher, SenderGroups]:
        new = load_config(config_path)
        plan = plan_reload(self.config, new)
        tables = NumberResolver.from_config(plan.config.numbering).tables
        routes = RouteTable.from_config(plan.config.routes)
        running = {link.name for link in plan.config.links if link.enabled}
        missing = routes.link_names() - running
        if missing:
            source = str(config_path) if config_path is not None else BUILTIN_SOURCE
            raise ConfigError(
                source, "routes", f"targets links that are disabled: {', '.join(sorted(missing))}"
            )
        keywords, groups = matcher_and_groups(plan.config)
        return plan, tables, routes, keywords, groups

    async def _reload_logged(self, config_path: Path | None) -> None:
        await self.reload(config_path)


def backlog_limits(config: TandemConfig) -> BacklogLimits:
    """The queue limits of the links and routes in `config` (`queue_limit`)."""
    return BacklogLimits(
        links={link.name: link.queue_limit for link in config.links if link.queue_limit},
        routes={route.name: route.queue_limit for route in config.routes if route.queue_limit},
        retry_after=config.queue.retry_after,
    )


@dataclass(slots=True, eq=False)
class _Submitted:
    """A link's submit result, as handed to `Gateway.on_submitted`."""

    link: str
    message: Message
    segments: Sequence[SubmittedSegment]


@dataclass(slots=True, eq=False)
class _Received:
    """A readable receipt, as handed to `Gateway.on_receipt`."""

    link: str
    report: ReceiptReport
    carrier_id: str


@dataclass(slots=True, eq=False)
class _EarlyReceipt:
    """A receipt whose carrier id no recorded submit result had: held (`Correlator`) until its
    submit result comes. The carrier is answered when `answered` is done: once the receipt is
    recorded, or given up on (the hold's time or room ran out)."""

    link: str
    report: ReceiptReport
    carrier_id: str
    answered: asyncio.Future[None]


def _submit_result(item: _Submitted, now: float) -> SubmitResult:
    message, link = item.message, item.link
    return SubmitResult(
        message.id,
        [
            Segment(
                message_id=message.id,
                index=part.index,
                total=part.total,
                status=SegmentStatus.SUBMITTED,
                link=link,
                carrier_id=part.carrier_id,
                submitted_at=now,
            )
            for part in item.segments
        ],
        link,
        now,
        StatusSource.SUBMIT_RESP,
    )


def _segment_receipt(
    link: str, report: ReceiptReport, carrier_id: str, now: float
) -> SegmentReceipt:
    status = report.status
    assert status is not None  # unreadable reports stop at `Gateway.on_receipt`
    return SegmentReceipt(
        link,
        carrier_id,
        status,
        now,
        StatusSource.RECEIPT,
        report.detail,
        report.error,
        report.network_error,
    )


def _answer(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _fail_future(future: asyncio.Future[None], exc: BaseException) -> None:
    if future.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(exc)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _describe_failure(failure: SendFailure) -> str:
    if failure.status is None:
        return failure.reason
    return f"0x{failure.status:08X} {status_name(failure.status)}: {failure.reason}"


def tune_interpreter_for_daemon() -> None:
    """Interpreter settings for a long-running daemon: call once, after start-up.

    Garbage collector: see `gateway.store.writer.tune_collector` (the writer process uses the
    same settings).

    Thread switching: threads (the store's writer thread, when it runs on one, and aiosqlite's
    reader) share the GIL with the event loop, and a loop waiting 5 ms (the default switch
    interval) for a writer batch holds up every connection; 0.5 ms gave 7-15% more messages
    per second in bench/mt_path.py and bench/http.py with the writer on a thread.
    """
    tune_collector()
    sys.setswitchinterval(0.0005)


async def serve(config: TandemConfig, config_path: Path | None = None) -> int:
    """Run the daemon until SIGINT/SIGTERM; SIGHUP reloads the config (`Gateway.reload`).

    Under systemd (`Type=notify`): READY=1 once the store, listeners and links are started,
    WATCHDOG=1 from the loop while it turns, STATUS= with the link and bind counts, STOPPING=1
    when a stop begins. A stop closes the listeners, unbinds customers, lets links wait
    `[shutdown] drain_seconds` for the answers to what they sent, flushes the store and ends 0.
    """
    from gateway.sd_notify import Notifier, ServiceHeartbeat, watchdog_interval
    from gateway.status import service_status_line

    notifier = Notifier()
    gateway = Gateway(config, config_path=config_path)
    await gateway.start()
    tune_interpreter_for_daemon()
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    loop.add_signal_handler(
        signal.SIGHUP, lambda: gateway._spawn(gateway._reload_logged(gateway.config_path))
    )
    heartbeat = ServiceHeartbeat(
        notifier,
        lambda: service_status_line(gateway),
        watchdog=watchdog_interval(os.environ, os.getpid()),
    )
    notifier.ready(service_status_line(gateway))
    heartbeat.start()
    log.info("tandem is running")
    await stopping.wait()
    log.info("stopping")
    notifier.stopping("stopping: closing listeners, draining links, flushing the store")
    # The pings go on while it drains: a stop that hangs is systemd's TimeoutStopSec to end.
    await gateway.stop()
    await heartbeat.stop()
    notifier.close()
    log.info("stopped")
    return 0


def run(config: TandemConfig, config_path: Path | None = None) -> int:
    from gateway.logs import configure_logging

    configure_logging(
        config.log, node=config.node.name if config.store.backend == "postgresql" else None
    )
    try:
        import uvloop
    except ImportError:  # uvloop is not available on every platform
        return asyncio.run(serve(config, config_path))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(serve(config, config_path))
