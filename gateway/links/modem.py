"""The GSM modem link: one SIM card in a modem, as a peer of the SMPP link.

Owns, for one `[[links]]` entry of type modem: keeping the modem's port open and its session
running (`modems.serial_link.ModemSupervisor`: reopen with backoff after an unplug or a serial
error, reset a modem that stops answering with the configured command, never a second PIN),
pulling messages from the send queue one at a time, cutting each into SMS-SUBMIT TPDUs (the
same parts an SMPP link sends), pacing them to the SIM's rate and stopping at its daily cap
(`modems.limits`), and reporting to the sink: submitted with each part's correlation key,
temporary or permanent failures (+CMS ERROR codes by `modems.errors`), status reports as
receipts in the one status model, MOs into the inbound path, and the link's state. What the
modem holds for us (a stored message, or a routed +CMT/+CDS the network waits to hear about) is
let go only once the daemon has kept it: stored copies are deleted, routed ones acknowledged
(+CNMA); a failure to keep one leaves the stored copy for the next read, and answers a routed
one with RP-ERROR so the network offers it again (rather than letting the modem time out, which
holds back every later routed message and makes the modem turn routing off). A PDU that does
not decode is logged with its octets in hex at WARNING, counted (`unreadable`), and then
deleted or acknowledged: it would never decode on the next read either, and would fill the SIM.
Counters a sysadmin needs (signal, registration, operator, SIM state, sends today against the
cap) are in `ModemLinkStats`.

Must never: decide a message's status, touch the store, or keep a message the daemon does not
know about. Messages it could not try (the modem went away, the SIM reached its cap) go back
through the sink at once, so route failover re-homes them.

Correlation: a status report names its part only by TP-MR, one octet the modem counts up and
wraps at 256 (and may restart after a reset). The key is the TP-MR with the recipient's last
digits (`correlation_key`), scoped to this link; the store gives a report to the part submitted
last under that key, so a reused TP-MR finds the newest part to that number, and only a number
that got 256 parts from this SIM within one report's delay could be confused.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from dlr.status import status_from_tp_status
from gateway.config import ModemLinkConfig
from gateway.inbound.model import Concat, ConcatScheme, InboundPart, decoded_text
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
from gateway.logs import message_fields
from gateway.messages import Message
from gateway.tasks import cancel_and_wait
from modems.errors import FailureKind, cms_error_name
from modems.limits import SimSendLimits
from modems.serial_link import ModemPort, ModemSupervisor, PortLost
from modems.session import (
    REGISTERED,
    AcknowledgementRefused,
    MessageReceived,
    MessageSent,
    NotReady,
    OperatorUpdate,
    Ready,
    RegistrationUpdate,
    SendFailed,
    SessionEvent,
    SessionSettings,
    SignalUpdate,
    StatusReportReceived,
    Stopped,
    UnreadableMessage,
    Unresponsive,
    signal_dbm,
)
from modems.tpdu import (
    NPI_ISDN,
    NPI_UNKNOWN,
    Address,
    Alphabet,
    SmsStatusReport,
    SmsSubmit,
    TpduError,
    TypeOfNumber,
    UserData,
    Validity,
    split_binary_user_data,
    split_text_user_data,
)
from smpp.constants import ESM_CLASS_UDHI, REGISTERED_DELIVERY_RECEIPT_MASK
from smpp.reassembly import MalformedUdh, parse_udh
from smpp.segmentation import Concatenation, TooManyParts
from smpp.text import AUTO, DataCoding, Encoding, TextEncodingError, decode_text

log = logging.getLogger("tandem.modem")

# Seconds `stop` lets the message in hand finish by default (a part takes a few seconds).
STOP_DRAIN_SECONDS = 5.0

# Digits of the recipient kept in the correlation key: enough to tell numbers apart, few enough
# that a service centre writing the number nationally ("07700...") or internationally
# ("447700...") in its report still gives the same key.
KEY_DIGITS = 9

# +CREG/+CEREG <stat> (TS 27.007 7.2) as words for the counters.
REGISTRATION_NAMES = {
    0: "not registered",
    1: "home",
    2: "searching",
    3: "denied",
    4: "unknown",
    5: "roaming",
}


def correlation_key(reference: int, recipient: str) -> str:
    """The key a part sent with TP-MR `reference` to `recipient` is reported under; the status
    report's TP-MR and TP-RA give the same key."""
    digits = "".join(char for char in recipient if char.isdigit())
    return f"{reference & 0xFF}:{digits[-KEY_DIGITS:]}"


def receipt_report(report: SmsStatusReport) -> ReceiptReport:
    """An SMS-STATUS-REPORT in the daemon's terms (`dlr.status.status_from_tp_status`)."""
    status = report.status
    return ReceiptReport(
        correlation_key(report.message_reference, str(report.recipient)),
        status_from_tp_status(status),
        f"TP-ST 0x{status:02X} ({report.group.value})",
        f"0x{status:02X}",
    )


@dataclass(slots=True)
class ModemLinkStats:
    """What a sysadmin graphs for one modem link; plain attributes, read at any time."""

    sim_state: str = "unknown"  # ready, or why the SIM stopped the link (wrong PIN, PUK, ...)
    registration: str = "not registered"  # home, roaming, searching, denied, ...
    operator: str | None = None
    signal_dbm: int | None = None  # None: unknown (no +CSQ yet, or the modem said 99)
    sends_today: int = 0  # parts, against the daily cap
    daily_cap: int | None = None
    messages_submitted: int = 0
    parts_submitted: int = 0
    messages_requeued: int = 0  # reported as temporary failures
    messages_failed: int = 0  # reported as permanent failures
    handed_back: int = 0  # not tried (modem gone, cap reached): re-homed at once
    receipts: int = 0
    mos: int = 0
    unreadable: int = 0  # stored or routed PDUs that do not decode (logged in hex, deleted)
    routed_acknowledged: int = 0  # +CMT/+CDS answered with RP-ACK once kept
    routed_rejected: int = 0  # answered with RP-ERROR (not kept): the network offers them again
    acknowledgements_late: int = 0  # +CNMA the modem refused or ignored (it gave up waiting)
    opens: int = 0  # ports opened (reconnects after the first)
    resets: int = 0  # silent modem reset with the reset command
    unresponsive: int = 0
    last_stop: str | None = None  # why the session last stopped


class ModemLink:
    """An outbound link through one GSM modem. `await start()` returns at once."""

    def __init__(
        self,
        config: ModemLinkConfig,
        source: MessageSource,
        sink: LinkSink,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.stats = ModemLinkStats(daily_cap=config.daily_cap)
        self.limits = SimSendLimits(config.messages_per_minute, config.daily_cap)
        self._source = source
        self._sink = sink
        self._clock = clock
        self._zone = ZoneInfo(config.cap_time_zone)
        self._capabilities = modem_capabilities(config)
        self._state = LinkState.STOPPED
        self._ready = asyncio.Event()
        self._supervisor: ModemSupervisor | None = None
        self._runner: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._recordings: set[asyncio.Future[None]] = set()
        self._next_reference = 0
        self._stopping = False
        self._idle = asyncio.Event()  # set while no message is in hand
        self._idle.set()
        # How long `stop` lets a message in hand finish (the daemon sets `[shutdown]`'s).
        self.drain_seconds = STOP_DRAIN_SECONDS

    # -- what the daemon and routing read --------------------------------------------------

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def throttle_level(self) -> float:
        return 0.0

    @property
    def capabilities(self) -> LinkCapabilities:
        return self._capabilities

    def day_started_at(self) -> float:
        """When today began in the cap's time zone (UNIX seconds)."""
        now = datetime.fromtimestamp(self._clock(), self._zone)
        return datetime.combine(now.date(), datetime.min.time(), self._zone).timestamp()

    def restore_sent_today(self, parts: int) -> None:
        """Today's count as the store kept it (start-up): a restart keeps the SIM's cap."""
        self.limits.restore(self._today(), parts)
        self.stats.sends_today = self.sent_today()

    @property
    def daily_cap(self) -> int | None:
        return self.config.daily_cap

    def sent_today(self) -> int:
        """Parts sent today (in the cap's time zone)."""
        return self.limits.sent_today(self._today())

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        config = self.config
        self._stopping = False
        self._set_state(LinkState.STARTING)
        self._supervisor = ModemSupervisor(
            config.device,
            session_settings(config),
            baudrate=config.baud,
            listener=self._on_event,
            reset_command=config.reset_command,
            reset_wait=config.reset_wait,
            backoff=backoff_delays(config.reconnect_initial, config.reconnect_max),
        )
        self._runner = asyncio.create_task(self._run(), name=f"link {self.name} modem")
        self._sender = asyncio.create_task(self._send_loop(), name=f"link {self.name} sender")

    async def stop(self, drain_seconds: float | None = None) -> None:
        """Stop taking messages; let the one in hand finish for up to `drain_seconds`
        (default `self.drain_seconds`), else hand it back; close the port."""
        self._stopping = True
        drain = self.drain_seconds if drain_seconds is None else drain_seconds
        if self._sender is not None and not self._idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), drain)
        if self._sender is not None:
            await cancel_and_wait(self._sender)
        if self._supervisor is not None:
            self._supervisor.close()
        if self._runner is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._runner, 5.0)
        if self._recordings:
            await asyncio.gather(*self._recordings, return_exceptions=True)
        self._ready.clear()
        self._state = LinkState.STOPPED
        with contextlib.suppress(Exception):
            self._sink.on_link_state(self.name, LinkState.STOPPED)

    async def _run(self) -> None:
        assert self._supervisor is not None
        try:
            fatal = await self._supervisor.run()
        except Exception:
            log.exception("link %s: modem supervisor failed", self.name)
            fatal = None
        if fatal is not None:
            log.error(
                "link %s stops for good: %s (it needs an operator, then a restart)",
                self.name,
                fatal.reason,
            )
            self._ready.clear()
            self._set_state(LinkState.STOPPED)

    # -- sending ---------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            await self._ready.wait()
            if await self._wait_out_the_cap():
                continue
            message = await self._source.get(self.name)
            self._idle.clear()
            try:
                await self._send(message)
            except asyncio.CancelledError:
                # Stopped (past the drain) with a message in hand: it goes back, never lost.
                await self._hand_back(message, "the link stopped")
                raise
            except Exception:
                log.exception(
                    "link %s: sending %s failed",
                    self.name,
                    message.id,
                    extra=message_fields(message.id, link=self.name),
                )
                await self._report(message, SendFailure("internal error"), permanent=False)
            finally:
                self._idle.set()
            if self._stopping:
                return

    async def _wait_out_the_cap(self) -> bool:
        """While the SIM is at its daily cap: state CAPPED (routing moves its messages away)
        until the day turns. True when it waited (the caller looks at the state again)."""
        remaining = self.limits.remaining_today(self._today())
        if remaining is None or remaining > 0:
            if self._state is LinkState.CAPPED:
                self._set_state(LinkState.UP)
            return False
        log.warning(
            "link %s: daily cap of %d parts reached; sends again tomorrow (%s)",
            self.name,
            self.config.daily_cap,
            self.config.cap_time_zone,
        )
        self._set_state(LinkState.CAPPED)
        await asyncio.sleep(self._seconds_to_midnight())
        return True

    async def _send(self, message: Message) -> None:
        if self._state is not LinkState.UP or self._supervisor is None:
            await self._hand_back(message, f"link {self.name} is {self._state.value}")
            return
        try:
            tpdus = self.submits_for(message)
        except (TpduError, TooManyParts, TextEncodingError, ValueError) as error:
            await self._report(message, SendFailure(f"cannot encode: {error}"), permanent=True)
            return
        loop = asyncio.get_running_loop()
        while True:
            allowance = self.limits.check(len(tpdus), loop.time(), self._today())
            if allowance.allowed:
                break
            if allowance.capped:
                await self._hand_back(message, "the SIM's daily cap leaves too few parts")
                return
            await asyncio.sleep(allowance.wait)
        try:
            outcome = await self._supervisor.send(message.id, tpdus)
        except NotReady:
            await self._hand_back(message, f"modem on link {self.name} is not ready")
            return
        except PortLost as lost:
            # The PDU may have gone out before the port went: a retry may repeat it.
            await self._report(message, SendFailure(f"modem lost: {lost}"), permanent=False)
            return
        parts = len(outcome.references)
        if isinstance(outcome, SendFailed) and outcome.maybe_sent:
            parts += 1
        if parts:
            self.limits.record(parts, loop.time(), self._today())
            self.stats.sends_today = self.sent_today()
        if isinstance(outcome, MessageSent):
            await self._report_submitted(message, outcome.references)
            return
        self._report_send_failed(message, outcome)
        await self._report(
            message,
            self._failure_of(message, outcome, len(tpdus)),
            permanent=outcome.kind is FailureKind.PERMANENT,
        )

    def submits_for(self, message: Message) -> list[bytes]:
        """The SMS-SUBMIT TPDUs of `message`, one per part, cut as an SMPP link cuts them."""
        if message.esm_class & ESM_CLASS_UDHI:
            raise ValueError("a modem link does not send messages with a customer-built UDH")
        config = self.config
        reference = self._next_reference
        self._next_reference = (reference + 1) & (
            0xFF if config.concatenation is Concatenation.UDH8 else 0xFFFF
        )
        text = message.text
        coding = message.data_coding
        if text is None and coding in (DataCoding.SMSC_DEFAULT, DataCoding.UCS2, DataCoding.LATIN1):
            text = decode_text(message.body, coding)
        parts: list[UserData]
        if text is None:
            parts = split_binary_user_data(
                message.body,
                concatenation=config.concatenation,
                reference=reference,
                max_parts=config.max_parts,
            )
        else:
            encoding: Encoding | str = Encoding.UCS2 if coding == DataCoding.UCS2 else AUTO
            parts = split_text_user_data(
                text,
                encoding,
                concatenation=config.concatenation,
                reference=reference,
                max_parts=config.max_parts,
            )
        wants_report = config.status_reports and bool(
            message.registered_delivery & REGISTERED_DELIVERY_RECEIPT_MASK
        )
        validity = None
        if message.validity_at is not None:
            validity = Validity.relative(max(message.validity_at - self._clock(), 300.0))
        destination = Address.parse("+" + message.destination.lstrip("+"))
        return [
            SmsSubmit(
                destination, part, status_report_request=wants_report, validity=validity
            ).encode()
            for part in parts
        ]

    async def _report_submitted(self, message: Message, references: tuple[int, ...]) -> None:
        total = len(references)
        segments = [
            SubmittedSegment(index, total, correlation_key(mr, message.destination), str(mr))
            for index, mr in enumerate(references)
        ]
        self.stats.messages_submitted += 1
        self.stats.parts_submitted += total
        await _settle(self._sink.on_submitted(self.name, message, segments), self.name)

    def _report_send_failed(self, message: Message, outcome: SendFailed) -> None:
        log.warning(
            "link %s: %s not sent (%s, %s)%s",
            self.name,
            message.id,
            outcome.reason,
            outcome.kind.value,
            f"; {len(outcome.references)} parts went before" if outcome.references else "",
            extra=message_fields(message.id, link=self.name),
        )

    def _failure_of(self, message: Message, outcome: SendFailed, total: int) -> SendFailure:
        reason = outcome.reason
        if outcome.cms_error is not None:
            reason = f"+CMS ERROR {outcome.cms_error} ({cms_error_name(outcome.cms_error)})"
        submitted = tuple(
            SubmittedSegment(index, total, correlation_key(mr, message.destination), str(mr))
            for index, mr in enumerate(outcome.references)
        )
        return SendFailure(reason, None, submitted)

    async def _report(self, message: Message, failure: SendFailure, *, permanent: bool) -> None:
        if permanent:
            self.stats.messages_failed += 1
            result = self._sink.on_permanent_failure(self.name, message, failure)
        else:
            self.stats.messages_requeued += 1
            result = self._sink.on_temporary_failure(self.name, message, failure)
        await _settle(result, self.name)

    async def _hand_back(self, message: Message, reason: str) -> None:
        """A message this link did not try: back to the daemon for another target, no
        attempt spent."""
        self.stats.handed_back += 1
        failure = SendFailure(reason, not_attempted=True)
        await _settle(self._sink.on_temporary_failure(self.name, message, failure), self.name)

    # -- what the modem says ---------------------------------------------------------------

    def _on_event(self, event: SessionEvent) -> None:
        stats = self.stats
        if isinstance(event, Ready):
            stats.sim_state = "ready"
            stats.opens = self._supervisor.opens if self._supervisor is not None else 0
            stats.operator = event.operator
            stats.registration = REGISTRATION_NAMES.get(event.registration, "unknown")
            if event.rssi is not None:
                stats.signal_dbm = signal_dbm(event.rssi)
            log.info(
                "link %s: modem ready on %s (%s, %s)",
                self.name,
                self.config.device,
                event.operator or "operator unknown",
                stats.registration,
            )
            self._ready.set()
            # Back after an unplug or a reset: still capped if the SIM's day is used up.
            remaining = self.limits.remaining_today(self._today())
            self._set_state(LinkState.CAPPED if remaining == 0 else LinkState.UP)
        elif isinstance(event, Stopped):
            self._on_stopped(event)
        elif isinstance(event, StatusReportReceived):
            self._on_status_report(event)
        elif isinstance(event, MessageReceived):
            self._on_message(event)
        elif isinstance(event, SignalUpdate):
            stats.signal_dbm = event.dbm
            stats.sends_today = self.sent_today()  # also after the day turned
        elif isinstance(event, RegistrationUpdate):
            stats.registration = REGISTRATION_NAMES.get(event.status, "unknown")
            if event.status not in REGISTERED:
                log.warning("link %s: network registration %s", self.name, stats.registration)
        elif isinstance(event, OperatorUpdate):
            stats.operator = event.name
        elif isinstance(event, Unresponsive):
            stats.unresponsive += 1
            stats.resets += 1
            log.warning(
                "link %s: the modem stopped answering; resetting it with %s",
                self.name,
                self.config.reset_command,
            )
        elif isinstance(event, UnreadableMessage):
            self._on_unreadable(event)
        elif isinstance(event, AcknowledgementRefused):
            stats.acknowledgements_late += 1
            log.warning(
                "link %s: a routed message's answer did not reach the network (%s): it offers "
                "that message again; routing set again and the storage read",
                self.name,
                event.reason,
            )

    def _on_stopped(self, event: Stopped) -> None:
        self.stats.last_stop = event.reason
        self._ready.clear()
        if event.fatal:
            self.stats.sim_state = event.reason
            self._set_state(LinkState.STOPPED)
            return
        if self._stopping:
            return
        log.warning("link %s: modem down: %s", self.name, event.reason)
        self._set_state(LinkState.DOWN)

    def _on_unreadable(self, event: UnreadableMessage) -> None:
        """Kept as the log line (its octets in hex), then let go: it would never decode at
        the next read either, and a SIM full of them takes no more messages."""
        self.stats.unreadable += 1
        where = (
            f"storage index {event.storage_index}"
            if event.storage_index is not None
            else "routed to us"
        )
        log.warning(
            "link %s: unreadable message (%s): %s; pdu=%s; deleted from the modem, this line "
            "is the only copy",
            self.name,
            where,
            event.reason,
            event.pdu.hex().upper(),
        )
        port = self._port()
        if port is not None:
            port.acknowledge(event.acknowledgement, True)
        self._delete([event.storage_index] if event.storage_index is not None else [])

    def _on_status_report(self, event: StatusReportReceived) -> None:
        self.stats.receipts += 1
        report = receipt_report(event.report)
        port = self._port()
        try:
            result = self._sink.on_receipt(self.name, report)
        except Exception:
            log.exception("link %s: sink failed on a status report", self.name)
            # Left on the SIM (when stored): read again at the next start; refused when routed.
            self._refuse(port, event.acknowledgement)
            return
        self._after_recorded(result, event.storage_index, port, event.acknowledgement)

    def _on_message(self, event: MessageReceived) -> None:
        """An MO part into the inbound path (the gateway joins parts, not the link); its
        stored copy is deleted once the part is kept (held for its siblings or delivered)."""
        self.stats.mos += 1
        port = self._port()
        results: list[Awaitable[None]] = []
        try:
            for part in inbound_parts(self.name, event, self.config.number, self._clock()):
                result = self._sink.on_mo(self.name, part)
                if result is not None and inspect.isawaitable(result):
                    results.append(result)
        except TemporarilyRefused as refusal:
            log.warning(
                "link %s: MO from %s left with the modem or the network: %s",
                self.name,
                event.originator,
                refusal,
            )
            self._refuse(port, event.acknowledgement)
            return
        except Exception:
            log.exception("link %s: sink failed on an MO; left with the modem", self.name)
            self._refuse(port, event.acknowledgement)
            return
        self._after_recorded(
            _all_of(results) if results else None,
            event.storage_indexes,
            port,
            event.acknowledgement,
        )

    def _after_recorded(
        self,
        result: SinkResult,
        storage: int | tuple[int, ...] | None,
        port: ModemPort | None,
        acknowledgement: int | None,
    ) -> None:
        """Delete the stored copies, or acknowledge the routed one, once the daemon has kept
        what they said; refuse a routed one it could not keep."""
        indexes = [storage] if isinstance(storage, int) else list(storage or ())
        if result is None or not inspect.isawaitable(result):
            self._let_go(port, acknowledgement, indexes)
            return
        recorded = asyncio.ensure_future(result)
        self._recordings.add(recorded)

        def done(future: asyncio.Future[None]) -> None:
            self._recordings.discard(future)
            if future.cancelled() or future.exception() is not None:
                if not future.cancelled():
                    log.error(
                        "link %s: recording failed; the modem keeps its copy",
                        self.name,
                        exc_info=future.exception(),
                    )
                self._refuse(port, acknowledgement)
                return
            self._let_go(port, acknowledgement, indexes)

        recorded.add_done_callback(done)

    def _let_go(
        self, port: ModemPort | None, acknowledgement: int | None, indexes: list[int]
    ) -> None:
        if acknowledgement is not None and port is not None:
            self.stats.routed_acknowledged += 1
            port.acknowledge(acknowledgement, True)
        self._delete(indexes)

    def _refuse(self, port: ModemPort | None, acknowledgement: int | None) -> None:
        """RP-ERROR for a routed message the daemon did not keep: the network offers it again
        (its retry schedule), and the modem goes on routing the next ones at once."""
        if acknowledgement is not None and port is not None:
            self.stats.routed_rejected += 1
            port.acknowledge(acknowledgement, False)

    def _port(self) -> ModemPort | None:
        """The port the session that reported an event runs on (acknowledgements go to it,
        never to one opened since)."""
        return self._supervisor.port if self._supervisor is not None else None

    def _delete(self, indexes: list[int]) -> None:
        supervisor = self._supervisor
        if indexes and supervisor is not None and supervisor.port is not None:
            supervisor.port.delete(indexes)

    # -- plumbing --------------------------------------------------------------------------

    def _set_state(self, state: LinkState) -> None:
        if state is self._state:
            return
        stopped_for_good = self._supervisor is not None and self._supervisor.fatal is not None
        if self._state is LinkState.STOPPED and stopped_for_good:
            return  # nothing moves it again
        self._state = state
        try:
            self._sink.on_link_state(self.name, state)
        except Exception:
            log.exception("link %s: sink failed on state %s", self.name, state)

    def _today(self) -> date:
        return datetime.fromtimestamp(self._clock(), self._zone).date()

    def _seconds_to_midnight(self) -> float:
        now = datetime.fromtimestamp(self._clock(), self._zone)
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), self._zone)
        return max(1.0, (midnight - now).total_seconds())


# The SMPP data_coding an MO's alphabet is carried as (TS 23.038 and SMPP agree on 0, 4, 8).
_CODING_OF_ALPHABET = {Alphabet.GSM7: 0x00, Alphabet.EIGHT_BIT: 0x04, Alphabet.UCS2: 0x08}


def inbound_parts(
    link: str, received: MessageReceived, own_number: str | None, now: float
) -> list[InboundPart]:
    """An MO as the inbound path takes it: each SMS-DELIVER part as it came, with its place
    (reference, total, sequence from its UDH), as an SMPP carrier's parts are; the gateway
    joins them. (The link's session hands parts over unjoined, so this is one part.)"""
    first = received.user_data[0]
    coding = _CODING_OF_ALPHABET[first.alphabet]
    source, source_ton, source_npi = _originator(received.originator)
    stamp = received.service_centre_time
    parts = []
    for user_data in received.user_data:
        found = user_data.concat
        concat = None
        if found is not None:
            scheme = ConcatScheme.UDH16 if found.reference_bits == 16 else ConcatScheme.UDH8
            concat = Concat(found.reference, found.total, found.seqnum, scheme)
        parts.append(
            InboundPart(
                link=link,
                source=source,
                destination=own_number or "",
                data_coding=coding,
                payload=user_data.payload,
                text=decoded_text(user_data.payload, coding),
                concat=concat,
                received_at=now,
                carrier_timestamp=stamp.timestamp() if stamp is not None else None,
                source_ton=source_ton,
                source_npi=source_npi,
                destination_ton=TypeOfNumber.INTERNATIONAL if own_number else TypeOfNumber.UNKNOWN,
                destination_npi=NPI_ISDN,
                udh_elements=_other_elements(user_data.header),
            )
        )
    return parts


def _originator(originator: str) -> tuple[str, int, int]:
    """(address as the inbound model keeps it, TON, NPI): international numbers as E.164 digits
    without '+', as an SMPP carrier gives them."""
    if originator.startswith("+") and originator[1:].isdigit():
        return originator[1:], TypeOfNumber.INTERNATIONAL, NPI_ISDN
    if originator.isdigit():
        return originator, TypeOfNumber.UNKNOWN, NPI_ISDN
    return originator, TypeOfNumber.ALPHANUMERIC, NPI_UNKNOWN


def _other_elements(header: bytes) -> tuple[tuple[int, bytes], ...]:
    if not header:
        return ()
    try:
        return parse_udh(header).elements
    except MalformedUdh:
        return ()


async def _all_of(results: list[Awaitable[None]]) -> None:
    for result in results:
        await result


def session_settings(config: ModemLinkConfig) -> SessionSettings:
    # +CNMI (TS 27.005 3.4.1) <mt>: 1 MOs stored and announced (+CMTI), 2 handed over (+CMT);
    # <ds>: 2 reports stored and announced (+CDSI), 1 handed over (+CDS), 0 none.
    direct = config.indications == "direct"
    reports = ("1" if direct else "2") if config.status_reports else "0"
    indications = f"2,{'2' if direct else '1'},0,{reports},0"
    return SessionSettings(
        pin=config.pin,
        service_centre=config.smsc,
        storage=config.storage,
        new_message_indications=indications,
        init_commands=tuple(config.init_commands),
        command_timeout=config.command_timeout,
        send_timeout=config.send_timeout,
        signal_interval=config.signal_interval,
        poll_interval=config.poll_interval,
        join_parts=False,  # the gateway's inbound path joins every link's parts, once
    )


def backoff_delays(initial: float, maximum: float) -> tuple[float, ...]:
    """Reconnect delays: doubling from `initial`, ending at `maximum` (repeated from then on)."""
    delays = [initial]
    while delays[-1] < maximum:
        delays.append(min(delays[-1] * 2, maximum))
    return tuple(delays)


def modem_capabilities(config: ModemLinkConfig) -> LinkCapabilities:
    return LinkCapabilities(config.max_parts, config.concatenation, config.dlr_timeout)


async def _settle(result: SinkResult | Awaitable[None], link: str) -> None:
    try:
        if result is not None and inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("link %s: sink failed", link)
