"""The SMPP carrier link: binds to one SMSC and sends what the queue routes to it.

Owns, for one `[[links]]` entry of type smpp: `sessions` binds, each keeping up to `window`
submits in flight; the link-wide tps pacing (counted per segment, shared by the binds); splitting
each message into segments (smpp.segmentation, with the link's reference counter); the reaction
to carrier answers (accepted, throttled, temporary, permanent); reconnecting with capped
exponential backoff and jitter; receipts and MOs handed to the sink; live state and counters.
A bind also keeps at most `window` messages whose outcome the daemon has not recorded yet, so a
crash resends at most window x sessions messages the carrier had already accepted.

Must never: decide a message's status, touch the store or the queue's order, or normalise
carrier ids anywhere but through `dlr.ids.canonical_message_id`. Outcomes go to the `LinkSink`.

Throttling: ESME_RTHROTTLED and ESME_RMSGQFUL pause the whole bind that got them, and the
segment is sent again on that bind when the pause ends (the message never leaves the link, so
it keeps its place and its concatenation reference). `ThrottleGovernor` keeps the pause short:
it is three response intervals (0.5-50 ms) while throttles are a small share of the answers,
doubles with each new throttle while they are a large share, is capped at `max_pause`, and
falls back to zero as successes return. A throttle answering a submit sent before the latest
pause began is old news and does not lengthen it. Everything else temporary (connection lost with
the message in flight, response timeout, ESME_RSYSERR, throttling that did not clear) goes
back to the daemon through `on_temporary_failure`, which requeues with backoff.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import random
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass, field

from dlr.ids import InvalidMessageId, canonical_message_id
from dlr.receipt import DeliveryReceipt, UnparseableReceipt, is_receipt
from gateway.config import SmppLinkConfig
from gateway.inbound.smpp_pdus import part_from_pdu
from gateway.links.base import (
    LinkCapabilities,
    LinkSink,
    LinkState,
    MessageSource,
    ReceiptReport,
    SendFailure,
    SinkResult,
    SubmittedSegment,
    TemporarilyRefused,
)
from gateway.messages import Message
from gateway.stages import now as stage_clock
from gateway.stages import recording
from gateway.tasks import cancel_and_settle, cancel_and_wait
from smpp.aio import BindError, SmppClient, SmppConnection, SmppConnectionClosed, SmppHandler
from smpp.constants import (
    ESM_CLASS_UDHI,
    REGISTERED_DELIVERY_RECEIPT_ALWAYS,
    REGISTERED_DELIVERY_RECEIPT_MASK,
    CommandStatus,
    Npi,
    Ton,
    status_name,
)
from smpp.pdu import DataSm, DeliverSm, Pdu, SubmitSm, SubmitSmResp
from smpp.segmentation import Segment, TooManyParts, split_bytes
from smpp.session import SessionConfig, SessionError, response_to
from smpp.text import TextEncodingError

log = logging.getLogger(__name__)

THROTTLE_STATUSES = frozenset({CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RMSGQFUL})
TEMPORARY_STATUSES = THROTTLE_STATUSES | {CommandStatus.ESME_RSYSERR, CommandStatus.ESME_RX_T_APPN}
# A segment throttled this many times in a row goes back to the daemon's queue instead.
MAX_THROTTLE_RETRIES = 20
# How long `stop()` lets in-flight submits finish before handing them back.
STOP_DRAIN_SECONDS = 5.0
_REFERENCES_REMEMBERED = 4096


# --- sans-IO helpers ----------------------------------------------------------------------------


@dataclass(slots=True)
class ThrottleGovernor:
    """One bind's reaction to throttling: when it may send again. Pure: pass `now`.

    `throttled_share` is a moving average of the share of answers that were throttles. While
    it stays below `escalate_share` (a carrier refusing a few percent here and there), every
    throttle costs one short base pause; above it (the carrier means it), each new throttle
    doubles the pause up to `max_pause`. Successes bring the share, and so the pause, down.
    """

    min_pause: float = 0.0005
    base_pause_cap: float = 0.05
    max_pause: float = 1.0
    escalate_share: float = 0.3
    pause: float = 0.0  # current pause length; 0 when not throttled
    paused_at: float = -math.inf  # when the latest pause began
    paused_until: float = -math.inf
    throttled_share: float = 0.0
    response_interval: float = 0.01  # smoothed time between responses on this bind
    _last_response_at: float | None = None

    def on_success(self, now: float) -> None:
        self._observe(now, throttled=False)
        if self.pause > 0 and self.throttled_share < self.escalate_share / 2:
            self.pause = 0.0

    def on_throttled(self, now: float, sent_at: float) -> None:
        """A submit sent at `sent_at` was answered with a throttling status at `now`."""
        self._observe(now, throttled=True)
        if sent_at < self.paused_at:
            return  # sent before the latest pause: that pause already answers it
        if self.pause > 0 and self.throttled_share >= self.escalate_share:
            self.pause = min(self.max_pause, self.pause * 2)
        else:
            self.pause = self.base_pause()
        self.paused_at = now
        self.paused_until = now + self.pause

    def base_pause(self) -> float:
        # A few response intervals: long enough to let the SMSC breathe, short enough that a
        # carrier throttling a random few percent costs a few percent of throughput.
        return min(self.base_pause_cap, max(self.min_pause, 3 * self.response_interval))

    def delay(self, now: float) -> float:
        """Seconds this bind must still wait before sending."""
        return self.paused_until - now if self.paused_until > now else 0.0

    @property
    def level(self) -> float:
        """0.0 relaxed .. 1.0 paused for `max_pause` at a time."""
        return self.pause / self.max_pause if self.pause > 0 else 0.0

    def _observe(self, now: float, *, throttled: bool) -> None:
        self.throttled_share += 0.1 * ((1.0 if throttled else 0.0) - self.throttled_share)
        last = self._last_response_at
        self._last_response_at = now
        if last is not None:
            self.response_interval += 0.1 * (min(now - last, 1.0) - self.response_interval)


@dataclass(slots=True)
class RatePacer:
    """Spaces sends to `rate` per second (None: no limit), allowing a 50 ms burst. Pure."""

    rate: float | None
    burst_seconds: float = 0.05
    _next: float = -math.inf

    def reserve(self, now: float) -> float:
        """Take the next send slot; returns how long to wait before using it."""
        if self.rate is None:
            return 0.0
        interval = 1.0 / self.rate
        # Slots missed while idle or woken late are caught up, up to the burst allowance.
        slot = max(self._next, now - max(self.burst_seconds, interval) + interval)
        self._next = slot + interval
        return slot - now if slot > now else 0.0


def reconnect_delay(failures: int, initial: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: half the capped ceiling plus a random half."""
    ceiling = min(cap, initial * 2.0 ** min(max(failures - 1, 0), 30))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def relative_validity(seconds: float) -> str:
    """SMPP 3.4 7.1.1 relative time (YYMMDDhhmmss000R) for a validity of `seconds`."""
    remaining = max(int(seconds), 60)
    days, remaining = divmod(remaining, 86_400)
    hours, remaining = divmod(remaining, 3600)
    minutes, secs = divmod(remaining, 60)
    days = min(days, 99 * 365)
    years, days = divmod(days, 365)
    months, days = divmod(days, 30)
    return f"{years:02d}{months:02d}{days:02d}{hours:02d}{minutes:02d}{secs:02d}000R"


def default_source_ton_npi(source_addr: str) -> tuple[int, int]:
    """TON/NPI for a sender nobody configured: alphanumeric, international or short number."""
    digits = source_addr.removeprefix("+")
    if not digits.isdigit():
        return Ton.ALPHANUMERIC, Npi.UNKNOWN
    if source_addr.startswith("+") or len(digits) > 8:
        return Ton.INTERNATIONAL, Npi.ISDN
    return Ton.UNKNOWN, Npi.ISDN


# --- counters -----------------------------------------------------------------------------------


@dataclass(slots=True)
class SmppLinkStats:
    """Counters a sysadmin graphs; plain attributes, read at any time."""

    sessions_up: int = 0
    submits: int = 0  # submit_sm sent (segments, throttle retries included)
    responses: dict[int, int] = field(default_factory=dict)  # by command_status
    throttles: int = 0
    timeouts: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    reconnects: int = 0  # binds after the first, per session
    connect_failures: int = 0
    bind_failures: int = 0
    messages_submitted: int = 0
    messages_requeued: int = 0  # reported as temporary failures
    messages_failed: int = 0  # reported as permanent failures
    receipts: int = 0
    unreadable_receipts: int = 0
    mos: int = 0
    unreadable_ids: int = 0  # submit_sm_resp ids not in the configured format


# --- the link -----------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Bind:
    index: int
    governor: ThrottleGovernor
    client: SmppClient | None = None
    runner: asyncio.Task[None] | None = None
    sender: asyncio.Task[None] | None = None
    bound_once: bool = False
    # Messages sent on this bind whose outcome the daemon has not recorded yet (the sink's
    # awaitable is not done). Capped at the window, like unanswered submits: a crash can then
    # resend at most `window` messages per bind that the carrier had already accepted.
    unrecorded: int = 0
    recorded: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True, eq=False)
class _Flight:
    """One message between the queue and its outcome."""

    message: Message
    bind: _Bind
    segments: list[Segment]
    pdus: list[SubmitSm] = field(default_factory=list)
    futures: list[asyncio.Future[Pdu]] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    stopped_early: str | None = None  # why not every segment was sent


class _Outcome:
    """What a flight came to: the accepted parts and the worst failure seen."""

    __slots__ = ("accepted", "permanent", "reason", "status")

    def __init__(self, total: int) -> None:
        self.accepted: list[SubmittedSegment | None] = [None] * total
        self.reason: str | None = None
        self.status: int | None = None
        self.permanent = False

    def fail(self, reason: str, status: int | None = None, *, permanent: bool = False) -> None:
        if self.reason is None or (permanent and not self.permanent):
            self.reason, self.status, self.permanent = reason, status, permanent

    def failure(self) -> SendFailure:
        submitted = tuple(part for part in self.accepted if part is not None)
        return SendFailure(self.reason or "", self.status, submitted)


class SmppLink:
    """An outbound SMPP link. `await start()` returns at once; sessions bind in the background."""

    def __init__(
        self,
        config: SmppLinkConfig,
        source: MessageSource,
        sink: LinkSink,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.stats = SmppLinkStats()
        self._source = source
        self._sink = sink
        self._rng = rng if rng is not None else random.Random()
        self._pacer = RatePacer(config.tps)
        self._binds = [_Bind(index, ThrottleGovernor()) for index in range(config.sessions)]
        # The sessions this node may bind: all of them, unless a cluster shares the link's
        # binds among its nodes (`gateway.links.budget`, through `set_budget`).
        self._budget = config.sessions
        self._budget_changing = asyncio.Lock()
        self._state = LinkState.STOPPED
        self._stopping = False
        self.drain_seconds = STOP_DRAIN_SECONDS
        self._flights: set[asyncio.Task[None]] = set()
        # One-part messages waiting for their submit_sm_resp without a task of their own (the
        # usual case): settled by a callback when the answer is OK, else handed to a flight task.
        self._answering: dict[asyncio.Future[Pdu], _Flight] = {}
        self._recordings: set[asyncio.Future[None]] = set()  # receipts and MOs being recorded
        self._next_reference = self._rng.randrange(0x10000)
        self._references: OrderedDict[str, int] = OrderedDict()
        self._session_config = SessionConfig(
            window=config.window,
            response_timeout=config.response_timeout,
            enquire_link_interval=config.enquire_link_interval,
            inactivity_timeout=None,
            bind_timeout=max(2 * config.response_timeout, 5.0),
        )
        self._ssl = _client_tls(config)
        self._transmits = config.bind != "receiver"
        self._capabilities = smpp_capabilities(config)

    # -- what the daemon and routing read --------------------------------------------------

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def capabilities(self) -> LinkCapabilities:
        return self._capabilities

    @property
    def in_flight(self) -> int:
        """Submits sent and not yet answered, over every session (the sessions' windows)."""
        total = 0
        for bind in self._binds:
            client = bind.client
            if client is not None:
                total += client.connection.session.window_used
        return total

    @property
    def budget(self) -> int:
        """The sessions this node may bind now (`set_budget`)."""
        return self._budget

    @property
    def throttle_level(self) -> float:
        levels = [b.governor.level for b in self._binds if b.client is not None]
        return max(levels) if levels else 0.0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._state is not LinkState.STOPPED:
            return
        self._stopping = False
        self._set_state(LinkState.STARTING)
        self._start_sessions()

    def _start_sessions(self) -> None:
        for bind in self._binds[: self._budget]:
            if bind.runner is None:
                bind.runner = asyncio.create_task(
                    self._run_session(bind), name=f"link {self.name} session {bind.index}"
                )

    async def set_budget(self, binds: int, tps: float | None) -> None:
        """Bind at most `binds` sessions and send at most `tps` segments per second: the share
        of the carrier's limits a cluster gives this node. Fewer binds: the sessions above are
        drained (what they sent is answered or handed back) and unbound before this returns,
        so the caller may give their slots away. Before `start()` it only sets the budget."""
        binds = max(0, min(binds, len(self._binds)))
        async with self._budget_changing:
            if binds > 0:
                # Lower before closing and raise before opening: the slots are held by then.
                self._pacer.rate = tps
            if binds < self._budget:
                self._budget = binds
                await asyncio.gather(*(self._close_session(b) for b in self._binds[binds:]))
            elif binds > self._budget:
                self._budget = binds
                if self._state is not LinkState.STOPPED and not self._stopping:
                    self._start_sessions()

    async def _close_session(self, bind: _Bind) -> None:
        """Stop one session beyond the budget: no new sends, answers to what it sent waited
        for (unbind does), then unbound."""
        runner, sender = bind.runner, bind.sender
        if runner is None:
            return
        if sender is not None:
            # A message caught mid-send is handed back by its flight.
            await cancel_and_settle(sender)
        client = bind.client
        if client is not None:
            try:
                await asyncio.wait_for(client.unbind(), self.config.response_timeout)
            except (TimeoutError, SmppConnectionClosed, SessionError):
                client.close()
            await asyncio.wait({runner}, timeout=self.config.response_timeout)
        await cancel_and_settle(runner)
        if bind.client is not None:  # the runner was cancelled before its cleanup ran
            bind.client.close()
        bind.runner = None

    async def stop(self, drain_seconds: float | None = None) -> None:
        """Stop sending, wait up to `drain_seconds` (default: `self.drain_seconds`, the
        daemon's `[shutdown] drain_seconds`) for the answers to what was sent, then unbind."""
        if self._state is LinkState.STOPPED:
            return
        if drain_seconds is None:
            drain_seconds = self.drain_seconds
        self._stopping = True
        senders = [b.sender for b in self._binds if b.sender is not None]
        # A message caught mid-send is handed back by its flight.
        await cancel_and_settle(*senders)
        # One-part messages still waiting for their answer drain and report like the rest.
        waiting, self._answering = list(self._answering.values()), {}
        for one_part in waiting:
            self._launch(self._complete(one_part))
        if self._flights:
            await asyncio.wait(set(self._flights), timeout=drain_seconds)
        abandoned = list(self._flights)
        await cancel_and_settle(*abandoned)
        for bind in self._binds:
            client = bind.client
            if client is None:
                continue
            if abandoned:
                client.close()  # submits left unanswered: unbind would wait for them
                continue
            try:
                await asyncio.wait_for(client.unbind(), self.config.response_timeout)
            except (TimeoutError, SmppConnectionClosed, SessionError):
                client.close()
        runners = [b.runner for b in self._binds if b.runner is not None]
        await cancel_and_settle(*runners)
        for bind in self._binds:
            bind.runner = bind.sender = bind.client = None
        self.stats.sessions_up = 0
        self._set_state(LinkState.STOPPED)

    # -- sessions --------------------------------------------------------------------------

    async def _run_session(self, bind: _Bind) -> None:
        config = self.config
        failures = 0
        while not self._stopping and bind.index < self._budget:
            try:
                client = await self._open_session(bind)
            except BindError as exc:
                self.stats.bind_failures += 1
                failures += 1
                log.warning("link %s: bind refused: %s", self.name, status_name(exc.status))
            except (OSError, TimeoutError, SmppConnectionClosed, SessionError) as exc:
                self.stats.connect_failures += 1
                failures += 1
                log.info("link %s: cannot connect: %s", self.name, exc or type(exc).__name__)
            else:
                if bind.bound_once:
                    self.stats.reconnects += 1
                bind.bound_once = True
                failures = 0
                await self._serve(bind, client)
                if self._stopping or bind.index >= self._budget:
                    return
                failures = 1  # the next attempt waits the initial backoff
            delay = reconnect_delay(
                failures, config.reconnect_initial, config.reconnect_max, self._rng
            )
            await asyncio.sleep(delay)

    async def _open_session(self, bind: _Bind) -> SmppClient:
        config = self.config
        client = SmppClient(self._session_config, handler=_LinkHandler(self))
        await asyncio.wait_for(
            client.connect(config.host, config.port, ssl=self._ssl), config.response_timeout
        )
        try:
            await client.bind(
                config.bind,
                config.system_id,
                config.password,
                config.system_type,
                address_range=config.address_range,
            )
        except BaseException:
            client.close()
            raise
        return client

    async def _serve(self, bind: _Bind, client: SmppClient) -> None:
        """Run one bound session until its connection closes."""
        bind.client = client
        self.stats.sessions_up += 1
        self._refresh_state()
        closed = client.closed
        try:
            if self._transmits:
                bind.sender = asyncio.create_task(
                    self._send_loop(bind, client), name=f"link {self.name} sender {bind.index}"
                )
                await asyncio.wait({bind.sender, closed}, return_when=asyncio.FIRST_COMPLETED)
                if bind.sender.done() and not bind.sender.cancelled():
                    error = bind.sender.exception()
                    if error is not None:
                        log.error("link %s: sender failed", self.name, exc_info=error)
                        client.close()
            await closed
        finally:
            if bind.sender is not None and not bind.sender.done():
                await cancel_and_wait(bind.sender)
            bind.sender = None
            bind.client = None
            self.stats.sessions_up -= 1
            self._refresh_state()

    def _refresh_state(self) -> None:
        if self._stopping:
            return
        if self.stats.sessions_up > 0:
            self._set_state(LinkState.UP)
        elif self._state is LinkState.UP:
            self._set_state(LinkState.DOWN)

    def _set_state(self, state: LinkState) -> None:
        if state is self._state:
            return
        self._state = state
        try:
            self._sink.on_link_state(self.name, state)
        except Exception:
            log.exception("link %s: sink failed on state %s", self.name, state)

    # -- sending ---------------------------------------------------------------------------

    async def _send_loop(self, bind: _Bind, client: SmppClient) -> None:
        source = self._source
        name = self.name
        try:
            while True:
                stages = recording()
                if stages is None:
                    await self._wait_recorded(bind)
                    await self._wait_sendable(bind, client)
                    message = await source.get(name)
                else:
                    started = stage_clock()
                    await self._wait_recorded(bind)
                    await self._wait_sendable(bind, client)
                    stages.observe("slot_wait", stage_clock() - started)
                    message = await source.get(name)
                    stages.stop("queue_wait", message.id)
                await self._send_message(bind, client, message)
        except SmppConnectionClosed:
            return  # the session runner notices the closed connection and reconnects

    async def _wait_recorded(self, bind: _Bind) -> None:
        window = self.config.window
        while bind.unrecorded >= window:
            bind.recorded.clear()
            await bind.recorded.wait()

    async def _wait_sendable(self, bind: _Bind, client: SmppClient) -> None:
        loop = asyncio.get_running_loop()
        session = client.connection.session
        while True:
            pause = bind.governor.delay(loop.time())
            if pause > 0:
                await asyncio.sleep(pause)
                continue
            if session.window_free > 0:
                return
            await client.wait_for_window()

    async def _send_message(self, bind: _Bind, client: SmppClient, message: Message) -> None:
        try:
            segments = self._segments_of(message)
        except (TooManyParts, TextEncodingError, ValueError) as exc:
            self._launch(self._report(message, SendFailure(str(exc)), permanent=True))
            return
        flight = _Flight(message, bind, segments)
        bind.unrecorded += 1  # until `_complete` has reported the outcome
        try:
            for segment in segments:
                pdu = self._submit_pdu(message, segment)
                future, sent_at = await self._send_segment(bind, client, pdu)
                flight.pdus.append(pdu)
                flight.futures.append(future)
                flight.sent_at.append(sent_at)
        except (SmppConnectionClosed, SessionError):
            flight.stopped_early = "connection lost before every part was sent"
        except asyncio.CancelledError:
            flight.stopped_early = "link stopped before every part was sent"
            self._launch(self._complete(flight))
            raise
        if len(flight.segments) == 1 and len(flight.futures) == 1:
            future = flight.futures[0]
            self._answering[future] = flight
            future.add_done_callback(self._one_part_answered)
            return
        self._launch(self._complete(flight))

    def _one_part_answered(self, future: asyncio.Future[Pdu]) -> None:
        """The submit_sm_resp of a one-part message. ESME_ROK (nearly every answer) is
        reported from here; anything else goes through `_complete` like a multipart flight."""
        flight = self._answering.pop(future, None)
        if flight is None:
            return  # `stop` handed it to a flight task already
        if future.cancelled() or future.exception() is not None or self._stopping:
            self._launch(self._complete(flight))
            return
        response = future.result()
        if response.command_status != CommandStatus.ESME_ROK:
            self._launch(self._complete(flight))
            return
        assert isinstance(response, SubmitSmResp)
        stats, bind = self.stats, flight.bind
        stats.responses[0] = stats.responses.get(0, 0) + 1
        now = asyncio.get_running_loop().time()
        bind.governor.on_success(now)
        stages = recording()
        if stages is not None:
            stages.observe("submit_round_trip", now - flight.sent_at[0])
        part = self._submitted_segment(0, 1, response.message_id)
        try:
            result = self._hand_over_submitted(flight.message, [part])
        except Exception:
            log.exception("link %s: sink failed", self.name)
            result = None
        if result is None:
            self._recorded(bind)
            return
        recorded = asyncio.ensure_future(result)
        started = stage_clock() if stages is not None else None
        recorded.add_done_callback(functools.partial(self._one_part_recorded, bind, started))

    def _one_part_recorded(
        self, bind: _Bind, started: float | None, recorded: asyncio.Future[None]
    ) -> None:
        if not recorded.cancelled() and recorded.exception() is not None:
            log.error("link %s: sink failed", self.name, exc_info=recorded.exception())
        if started is not None:
            stages = recording()
            if stages is not None:
                stages.observe("result_commit", stage_clock() - started)
        self._recorded(bind)

    @staticmethod
    def _recorded(bind: _Bind) -> None:
        bind.unrecorded -= 1
        bind.recorded.set()

    async def _send_segment(
        self, bind: _Bind, client: SmppClient, pdu: SubmitSm
    ) -> tuple[asyncio.Future[Pdu], float]:
        loop = asyncio.get_running_loop()
        wait = self._pacer.reserve(loop.time())
        if wait > 0:
            await asyncio.sleep(wait)
        await self._wait_sendable(bind, client)
        future = client.send_request_nowait(pdu)
        stats = self.stats
        stats.submits += 1
        in_flight = self.in_flight
        stats.in_flight = in_flight
        if in_flight > stats.max_in_flight:
            stats.max_in_flight = in_flight
        future.add_done_callback(self._answered)
        return future, loop.time()

    def _answered(self, _future: asyncio.Future[Pdu]) -> None:
        self.stats.in_flight = self.in_flight

    def _launch(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._flights.add(task)
        task.add_done_callback(self._flights.discard)

    async def _complete(self, flight: _Flight) -> None:
        """Wait for every segment's answer (re-sending throttled ones), then report once."""
        try:
            await self._settle_and_report(flight)
        finally:
            self._recorded(flight.bind)

    async def _settle_and_report(self, flight: _Flight) -> None:
        message = flight.message
        total = len(flight.segments)
        outcome = _Outcome(total)
        try:
            for index in range(total):
                if index >= len(flight.futures):
                    outcome.fail(flight.stopped_early or "not sent")
                    continue
                await self._settle_segment(flight, index, outcome)
        except asyncio.CancelledError:
            outcome.fail("link stopped with the message in flight")
            await self._report(message, outcome.failure(), permanent=outcome.permanent)
            raise
        if outcome.reason is None:
            await self._report_submitted(message, outcome)
        else:
            await self._report(message, outcome.failure(), permanent=outcome.permanent)

    async def _settle_segment(self, flight: _Flight, index: int, outcome: _Outcome) -> None:
        bind = flight.bind
        stats = self.stats
        loop = asyncio.get_running_loop()
        future = flight.futures[index]
        throttled = 0
        while True:
            try:
                response = await future
            except TimeoutError:
                stats.timeouts += 1
                outcome.fail("no submit_sm_resp in time")
                return
            except SmppConnectionClosed:
                outcome.fail("connection lost with the message in flight")
                return
            status = response.command_status
            stats.responses[status] = stats.responses.get(status, 0) + 1
            now = loop.time()
            stages = recording()
            if stages is not None:
                stages.observe("submit_round_trip", now - flight.sent_at[index])
            if status == CommandStatus.ESME_ROK:
                bind.governor.on_success(now)
                assert isinstance(response, SubmitSmResp)
                outcome.accepted[index] = self._submitted_segment(
                    index, len(flight.segments), response.message_id
                )
                return
            if status in THROTTLE_STATUSES:
                stats.throttles += 1
                bind.governor.on_throttled(now, flight.sent_at[index])
                throttled += 1
                client = bind.client
                if throttled > MAX_THROTTLE_RETRIES or client is None or self._stopping:
                    outcome.fail(f"throttled: {status_name(status)}", status)
                    return
                try:
                    future, flight.sent_at[index] = await self._send_segment(
                        bind, client, flight.pdus[index]
                    )
                except (SmppConnectionClosed, SessionError):
                    outcome.fail("connection lost while throttled", status)
                    return
                continue
            permanent = status not in TEMPORARY_STATUSES
            outcome.fail(f"carrier refused: {status_name(status)}", status, permanent=permanent)
            return

    def _submitted_segment(self, index: int, total: int, raw_id: str) -> SubmittedSegment:
        try:
            carrier_id = canonical_message_id(raw_id, self.config.submit_id_format)
        except InvalidMessageId:
            self.stats.unreadable_ids += 1
            log.warning(
                "link %s: submit_sm_resp id %r is not %s; kept as sent",
                self.name,
                raw_id,
                self.config.submit_id_format.value,
            )
            carrier_id = raw_id.strip(" \x00")
        return SubmittedSegment(index, total, carrier_id, raw_id)

    async def _report_submitted(self, message: Message, outcome: _Outcome) -> None:
        segments = [part for part in outcome.accepted if part is not None]
        await self._deliver(self._hand_over_submitted, message, segments)

    def _hand_over_submitted(
        self, message: Message, segments: list[SubmittedSegment]
    ) -> SinkResult:
        """Every part accepted: count it, forget its concatenation reference, tell the sink."""
        self.stats.messages_submitted += 1
        self._references.pop(message.id, None)
        return self._sink.on_submitted(self.name, message, segments)

    async def _report(self, message: Message, failure: SendFailure, *, permanent: bool) -> None:
        if permanent:
            self.stats.messages_failed += 1
            self._references.pop(message.id, None)
            await self._deliver(self._sink.on_permanent_failure, self.name, message, failure)
        else:
            self.stats.messages_requeued += 1
            await self._deliver(self._sink.on_temporary_failure, self.name, message, failure)

    async def _deliver(self, method: object, *args: object) -> None:
        try:
            result = method(*args)  # type: ignore[operator]
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("link %s: sink failed", self.name)

    # -- building submits ------------------------------------------------------------------

    def _segments_of(self, message: Message) -> list[Segment]:
        config = self.config
        if message.esm_class & ESM_CLASS_UDHI:
            # The customer built the UDH: one part exactly as given.
            return [Segment(message.body, True, message.data_coding, 1, 1)]
        return split_bytes(
            message.body,
            message.data_coding,
            concatenation=config.concatenation,
            reference=self._reference_for(message.id),
            max_parts=config.max_parts,
        )

    def _reference_for(self, message_id: str) -> int:
        # A message sent again (after a requeue) keeps its reference, so handsets can still
        # join parts from both attempts.
        references = self._references
        reference = references.get(message_id)
        if reference is None:
            reference = self._next_reference
            self._next_reference = (reference + 1) & 0xFFFF
            references[message_id] = reference
            if len(references) > _REFERENCES_REMEMBERED:
                references.popitem(last=False)
        return reference

    def _submit_pdu(self, message: Message, segment: Segment) -> SubmitSm:
        config = self.config
        auto_ton, auto_npi = (
            (message.source_ton, message.source_npi)
            if message.source_ton or message.source_npi
            else default_source_ton_npi(message.source_addr)
        )
        esm_class = message.esm_class & ~ESM_CLASS_UDHI
        if segment.esm_class_udhi:
            esm_class |= ESM_CLASS_UDHI
        wants_receipt = message.registered_delivery & REGISTERED_DELIVERY_RECEIPT_MASK
        validity = ""
        if message.validity_at is not None:
            validity = relative_validity(message.validity_at - time.time())
        return SubmitSm(
            source_addr_ton=config.source_ton if config.source_ton is not None else auto_ton,
            source_addr_npi=config.source_npi if config.source_npi is not None else auto_npi,
            source_addr=message.source_addr.removeprefix("+"),
            dest_addr_ton=config.destination_ton,
            dest_addr_npi=config.destination_npi,
            destination_addr=message.destination.removeprefix("+"),
            esm_class=esm_class,
            validity_period=validity,
            registered_delivery=REGISTERED_DELIVERY_RECEIPT_ALWAYS if wants_receipt else 0,
            data_coding=segment.data_coding,
            short_message=segment.short_message,
            tlvs=dict(segment.tlvs),
        )

    # -- incoming --------------------------------------------------------------------------

    def _incoming(self, request: DeliverSm | DataSm, connection: SmppConnection) -> Pdu | None:
        stats = self.stats
        try:
            if is_receipt(request.esm_class):
                stats.receipts += 1
                result: SinkResult = self._sink.on_receipt(self.name, self._read_receipt(request))
            else:
                stats.mos += 1
                part = part_from_pdu(self.name, request, time.time())
                result = self._sink.on_mo(self.name, part)
        except TemporarilyRefused as refusal:
            return self._refused_for_now(request, refusal)
        except Exception:
            log.exception("link %s: sink failed on %r", self.name, request)
            return response_to(request, command_status=CommandStatus.ESME_RX_T_APPN)
        if result is None:
            return response_to(request)
        # Answered once recorded, from the recording's own task (no task per answer): a
        # connection lost meanwhile loses the answer (the SMSC offers the receipt again), never
        # the recording of what already arrived (an SMSC that died for good would take it along).
        recorded = asyncio.ensure_future(result)
        self._recordings.add(recorded)
        started = (
            stage_clock() if recording() is not None and is_receipt(request.esm_class) else None
        )
        recorded.add_done_callback(functools.partial(self._answer, request, connection, started))
        return None

    def _answer(
        self,
        request: Pdu,
        connection: SmppConnection,
        started: float | None,
        recorded: asyncio.Future[None],
    ) -> None:
        self._recordings.discard(recorded)
        if recorded.cancelled():
            return  # the link stopped: unanswered, the SMSC offers it again
        error = recorded.exception()
        stages = recording()
        if started is not None and stages is not None and error is None:
            stages.observe("receipt_commit", stage_clock() - started)
        if isinstance(error, TemporarilyRefused):
            connection.respond(self._refused_for_now(request, error))
            return
        if error is not None:
            log.error(
                "link %s: sink failed on %r", self.name, request, exc_info=recorded.exception()
            )
            # Temporary: the SMSC keeps the receipt or MO and offers it again.
            connection.respond(response_to(request, command_status=CommandStatus.ESME_RX_T_APPN))
            return
        connection.respond(response_to(request))

    def _refused_for_now(self, request: Pdu, refusal: TemporarilyRefused) -> Pdu:
        """The answer to something the sink cannot take now: the SMSC offers it again later."""
        log.warning("link %s: %s (answered 0x%08X)", self.name, refusal, refusal.status)
        return response_to(request, command_status=refusal.status)

    def _read_receipt(self, request: DeliverSm | DataSm) -> ReceiptReport:
        body = request.short_message if isinstance(request, DeliverSm) else b""
        try:
            receipt = DeliveryReceipt.parse(body, request.tlvs, request.esm_class)
            carrier_id = canonical_message_id(receipt.message_id, self.config.dlr_id_format)
        except (UnparseableReceipt, InvalidMessageId) as exc:
            self.stats.unreadable_receipts += 1
            log.warning("link %s: unreadable receipt: %s", self.name, exc)
            return ReceiptReport(None, None, evidence=f"sequence {request.sequence_number}")
        return receipt_report(receipt, carrier_id)


def receipt_report(receipt: DeliveryReceipt, carrier_id: str) -> ReceiptReport:
    """An SMPP receipt in the daemon's terms: keyed by the canonical carrier id, the stat word
    and err field kept as the carrier wrote them."""
    network = receipt.network_error
    return ReceiptReport(
        carrier_id,
        receipt.status,
        f"stat:{receipt.stat or receipt.status.value} err:{receipt.error or ''}",
        receipt.error,
        None if network is None else str(network),
    )


def smpp_capabilities(config: SmppLinkConfig) -> LinkCapabilities:
    return LinkCapabilities(config.max_parts, config.concatenation, config.dlr_timeout)


class _LinkHandler(SmppHandler):
    """What a link session does with what the SMSC sends."""

    def __init__(self, link: SmppLink) -> None:
        self._link = link
        self._connection: SmppConnection | None = None

    def connection_made(self, connection: SmppConnection) -> None:
        self._connection = connection

    def request_received(self, request: Pdu) -> Pdu | None:
        if isinstance(request, DeliverSm | DataSm) and self._connection is not None:
            return self._link._incoming(request, self._connection)
        return response_to(request, command_status=CommandStatus.ESME_RINVCMDID)


def _client_tls(config: SmppLinkConfig) -> ssl.SSLContext | None:
    if not config.tls:
        return None
    cafile = str(config.tls_ca_file) if config.tls_ca_file is not None else None
    return ssl.create_default_context(cafile=cafile)
