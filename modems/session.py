"""The modem session: what a modem link says to its modem, sans-IO.

Owns start-up (echo off, verbose errors, SIM state with the PIN entered at most once, network
registration, operator, signal, PDU mode, service centre override, storage, new-message
indications, then reading the messages already stored), sending SMS-SUBMIT TPDUs one part
after another with the TP-MR each got, receiving SMS-DELIVER (parts joined, unless the caller
joins them itself: `SessionSettings.join_parts`) and
SMS-STATUS-REPORT whether stored (+CMTI/+CDSI, read with +CMGR) or routed (+CMT/+CDS), and
the health polls (signal, registration while unregistered, stored messages for modems that do
not announce them) whose timeouts tell a modem that stopped answering.

Must never touch a port or a clock (`now` is passed in; `deadline()` says when to call
`check_timers`), never decide routing or status (it reports TP-MR, TP-ST and +CMS codes; the
gateway maps them), and never enter a PIN twice: a wrong PIN, or a SIM that wants its PUK,
stops the session for good (`Stopped(fatal=True)`), because the next wrong try could lock the
SIM.

Stored messages are deleted only when the caller says so (`delete`), after it has kept them:
a message on the SIM is the only copy until then.

Routed messages (+CMT, +CDS) are acknowledged the same way. With +CNMI routing them to us, the
session asks for +CSMS service 1 (TS 27.005 3.2.1, "phase 2+"): the modem then leaves the
network's RP-ACK to us, and the network keeps its copy until we send it. Each routed arrival
carries an `acknowledgement` token; the caller answers it with `acknowledge(token, accepted)`
once the message is kept (AT+CNMA, an RP-ACK) or when keeping it failed (AT+CNMA=2 with an
SMS-DELIVER-REPORT of TP-FCS "unspecified", an RP-ERROR: the network offers it again later).
+CNMA names no message, so answers go out in arrival order, ahead of queued commands (the
network waits seconds, not minutes). A modem that gave up waiting (TS 27.005: it then sends
RP-ERROR itself and turns routing off, and answers a late +CNMA with +CMS ERROR 340) gets its
+CNMI again, and its storage is read, where a network's next offer lands meanwhile.
"""

from __future__ import annotations

import enum
import itertools
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from modems import at
from modems.errors import FailureKind, cms_failure_kind
from modems.tpdu import (
    SmsDeliver,
    SmsStatusReport,
    TpduError,
    UserData,
    decode_from_network,
    deliver_report_error,
    split_service_centre,
)
from smpp.reassembly import ConcatPart, Reassembler


@dataclass(frozen=True, slots=True)
class SessionSettings:
    pin: str | None = None
    service_centre: str | None = None  # +CSCA override; None keeps the SIM's
    storage: str = "SM"  # +CPMS: SM (SIM), ME (modem), MT (both)
    new_message_indications: str = "2,1,0,2,0"  # +CNMI: +CMTI for MO, +CDSI for reports
    init_commands: tuple[str, ...] = ()  # sent after PDU mode is set, errors ignored
    command_timeout: float = 10.0
    send_timeout: float = 60.0  # +CMGS waits for the network
    signal_interval: float = 30.0  # +CSQ poll, also the keep-alive that finds a silent modem
    registration_interval: float = 5.0  # +CREG? poll while not registered
    poll_interval: float | None = None  # +CMGL poll for modems that send no +CMTI
    unresponsive_after: int = 2  # consecutive command timeouts that make a modem "silent"
    # False: each SMS-DELIVER part is its own MessageReceived (its concatenation element left in
    # its user data), for a caller that joins parts from all its links in one place.
    # With join_parts on, a routed part held for its siblings is acknowledged at once (the modem
    # routes nothing more until it is): only the completing part waits for the caller.
    join_parts: bool = True
    # Routed MOs/reports (+CNMI mt 2/3, ds 1): ask for +CSMS service 1, so that each waits for
    # the caller's `acknowledge` rather than being acknowledged by the modem on arrival.
    acknowledge_routed: bool = True
    # A routed arrival the caller has not answered after this long is given up on (the modem
    # has long since answered the network with RP-ERROR and turned routing off): routing is
    # set again and the storage read, so one lost answer does not hold back all later ones.
    acknowledgement_wait: float = 120.0
    reassembly_timeout: float = 600.0
    reassembly_max_pending: int = 100
    reassembly_max_bytes: int = 256 * 1024


CMS_NO_ACKNOWLEDGEMENT_EXPECTED = 340  # +CNMA with nothing to answer (or answered too late)


def routes_to_us(indications: str) -> bool:
    """Whether +CNMI `indications` route MOs (<mt> 2 or 3) or reports (<ds> 1) to the TE."""
    values = [value.strip() for value in indications.split(",")]
    mt = values[1] if len(values) > 1 else ""
    ds = values[3] if len(values) > 3 else ""
    return mt in ("2", "3") or ds == "1"


# Answers to AT+CMGF=0 that mean the modem cannot do PDU mode at all.
_NOT_SUPPORTED_CODES: dict[at.ResultKind, tuple[int, ...]] = {
    at.ResultKind.CMS_ERROR: (302, 303, 304),  # not allowed / not supported / bad parameter
    at.ResultKind.CME_ERROR: (3, 4),  # operation not allowed / not supported
}


class SessionState(enum.Enum):
    STARTING = "starting"
    WAITING_FOR_NETWORK = "waiting_for_network"
    READY = "ready"
    STOPPED = "stopped"


REGISTERED = frozenset({1, 5})  # home, roaming
REGISTRATION_DENIED = 3


def signal_dbm(rssi: int) -> int | None:
    """+CSQ rssi (0-31) in dBm (TS 27.007 8.5: 0 is -113 dBm or less, 31 is -51 or more)."""
    return -113 + 2 * rssi if 0 <= rssi <= 31 else None


# --- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    operator: str | None
    registration: int
    rssi: int | None


@dataclass(frozen=True, slots=True)
class Stopped:
    """The session gave up. `fatal`: do not start again without an operator (wrong PIN, PUK,
    no PDU mode)."""

    reason: str
    fatal: bool
    unresponsive: bool = False  # the modem did not answer at all (a reset may bring it back)


@dataclass(frozen=True, slots=True)
class Unresponsive:
    """`unresponsive_after` commands in a row timed out: the modem needs a reset."""

    timeouts: int


@dataclass(frozen=True, slots=True)
class RegistrationUpdate:
    status: int
    technology: str  # "+CREG", "+CGREG" or "+CEREG"


@dataclass(frozen=True, slots=True)
class SignalUpdate:
    rssi: int
    dbm: int | None


@dataclass(frozen=True, slots=True)
class OperatorUpdate:
    name: str


@dataclass(frozen=True, slots=True)
class MessageSent:
    key: Hashable
    references: tuple[int, ...]  # TP-MR of each part, in order


@dataclass(frozen=True, slots=True)
class SendFailed:
    key: Hashable
    references: tuple[int, ...]  # parts that did go before the failure
    kind: FailureKind
    reason: str
    cms_error: int | None = None
    # The failed part may have gone all the same: the PDU went after the prompt and no answer
    # came, or the modem said OK without a TP-MR. A retry may then duplicate that part.
    maybe_sent: bool = False


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """An SMS-DELIVER, its parts joined (with `join_parts` off: one part as it came, its
    concatenation in `user_data[0].concat`). `storage_indexes`: where its parts sit in the
    modem's storage (delete them once kept); empty for +CMT."""

    originator: str
    text: str
    user_data: tuple[UserData, ...]  # each part's, in order
    service_centre_time: datetime | None
    storage_indexes: tuple[int, ...]
    complete: bool = True  # False: reassembly gave up waiting for the missing parts
    acknowledgement: int | None = None  # routed (+CMT) with service 1: answer with acknowledge()


@dataclass(frozen=True, slots=True)
class StatusReportReceived:
    report: SmsStatusReport
    storage_index: int | None
    acknowledgement: int | None = None  # routed (+CDS) with service 1: answer with acknowledge()


@dataclass(frozen=True, slots=True)
class UnreadableMessage:
    """A stored or routed PDU that does not decode (`pdu`: the octets as the modem gave them,
    with the service centre prefix; the text itself when it was not hexadecimal). Kept (not
    deleted, not acknowledged) until the caller says so."""

    storage_index: int | None
    pdu: bytes
    reason: str
    acknowledgement: int | None = None


@dataclass(frozen=True, slots=True)
class AcknowledgementRefused:
    """The modem refused or did not answer a +CNMA. `routing_lost`: it had given up waiting
    (+CMS ERROR 340, or no answer), so the network takes the message as not delivered and
    offers it again, and the modem may have turned routing off: the session sets +CNMI again
    and reads the storage."""

    accepted: bool
    reason: str
    routing_lost: bool


SessionEvent = (
    Ready
    | Stopped
    | Unresponsive
    | RegistrationUpdate
    | SignalUpdate
    | OperatorUpdate
    | MessageSent
    | SendFailed
    | MessageReceived
    | StatusReportReceived
    | UnreadableMessage
    | AcknowledgementRefused
)


class NotReady(RuntimeError):
    """send() before the session is ready, or after it stopped."""


# --- the session ---------------------------------------------------------------------------------

Outcome = at.CommandCompleted | at.CommandTimedOut
Handler = Callable[[Outcome, float], None]


@dataclass(slots=True)
class _Acknowledgement:
    token: int
    since: float
    accepted: bool | None = None  # None: the caller has not answered yet


@dataclass(slots=True)
class _Send:
    key: Hashable
    tpdus: deque[bytes]
    references: list[int] = field(default_factory=list)


class ModemSession:
    def __init__(self, settings: SessionSettings | None = None) -> None:
        self.settings = settings or SessionSettings()
        self.channel = at.AtChannel()
        self.state = SessionState.STARTING
        self.pin_entered = False
        self.operator: str | None = None
        self.registration = 0
        self.rssi: int | None = None
        self._handlers: deque[Handler] = deque()
        self._events: list[SessionEvent] = []
        self._timeouts_in_a_row = 0
        self._sends: deque[_Send] = deque()
        self._sending: _Send | None = None
        self._held_indexes: set[int] = set()  # read, handed over, not yet deleted
        self._reading: set[int] = set()  # +CMGR queued
        self._next_signal: float | None = None
        self._next_registration: float | None = None
        self._next_poll: float | None = None
        # Routed arrivals waiting for (or holding back, in order) their +CNMA.
        self.acknowledging = False  # the modem said yes to +CSMS service 1
        self._acknowledgements: deque[_Acknowledgement] = deque()
        self._tokens = itertools.count(1)
        self._reassembler = Reassembler(
            self.settings.reassembly_timeout,
            self.settings.reassembly_max_pending,
            self.settings.reassembly_max_bytes,
        )

    # --- the caller's side -------------------------------------------------------------------

    def start(self, now: float) -> list[SessionEvent]:
        self._command("ATE0", self._after_echo_off, now)
        return self._take_events()

    def outgoing(self) -> bytes:
        return self.channel.outgoing()

    def feed(self, data: bytes, now: float) -> list[SessionEvent]:
        for event in self.channel.feed(data, now):
            self._on_at_event(event, now)
        return self._take_events()

    def deadline(self) -> float | None:
        candidates = [
            self.channel.deadline(),
            self._next_signal,
            self._next_registration,
            self._next_poll,
            self._reassembler.next_deadline(),
            self._unanswered_deadline(),
        ]
        return min((c for c in candidates if c is not None), default=None)

    def check_timers(self, now: float) -> list[SessionEvent]:
        for event in self.channel.check_timeout(now):
            self._on_at_event(event, now)
        if self.state is SessionState.STOPPED:
            return self._take_events()
        if self._next_signal is not None and now >= self._next_signal:
            self._next_signal = None
            self._command("AT+CSQ", self._after_signal_poll, now)
        if self._next_registration is not None and now >= self._next_registration:
            self._next_registration = None
            self._command("AT+CREG?", self._after_registration_poll, now)
        if self._next_poll is not None and now >= self._next_poll:
            self._next_poll = None
            self._list_stored(now)
        for incomplete in self._reassembler.expire(now):
            self._emit_message([_context(part) for part in incomplete.parts], complete=False)
        self._give_up_unanswered(now)
        return self._take_events()

    def send(self, key: Hashable, tpdus: Sequence[bytes], now: float) -> None:
        """Queue a message's SMS-SUBMIT TPDUs (one per part); MessageSent or SendFailed
        follows. Raises NotReady unless the session is ready."""
        if self.state is not SessionState.READY:
            raise NotReady(f"modem session is {self.state.value}")
        if not tpdus:
            raise ValueError("a message has at least one part")
        self._sends.append(_Send(key, deque(tpdus)))
        self._next_part(now)

    def delete(self, indexes: Sequence[int], now: float) -> None:
        """Delete stored messages the caller has kept (MessageReceived/StatusReportReceived)."""
        for index in indexes:
            self._command(f"AT+CMGD={index}", self._after_delete(index), now)

    def acknowledge(self, token: int | None, accepted: bool, now: float) -> None:
        """Answer a routed arrival (its `acknowledgement`): RP-ACK once the caller has kept it,
        RP-ERROR (`accepted` False) when it could not, so the network offers it again.
        Answers go out in arrival order: one the caller has not answered holds the later ones."""
        if token is None:
            return
        for waiting in self._acknowledgements:
            if waiting.token == token:
                if waiting.accepted is None:
                    waiting.accepted = accepted
                break
        else:
            return  # answered already, or from before the port was reopened
        while self._acknowledgements and self._acknowledgements[0].accepted is not None:
            answered = self._acknowledgements.popleft()
            self._send_acknowledgement(bool(answered.accepted), now)

    def stop(self, reason: str) -> list[SessionEvent]:
        """The port is gone: fail what waits, stop."""
        self.channel.clear()
        self._handlers.clear()
        self._fail_sends(FailureKind.TEMPORARY, reason)
        self._stop(reason, fatal=False)
        return self._take_events()

    # --- plumbing ------------------------------------------------------------------------------

    def _take_events(self) -> list[SessionEvent]:
        events, self._events = self._events, []
        return events

    def _command(
        self,
        line: str,
        handler: Handler,
        now: float,
        *,
        timeout: float | None = None,
        pdu: str | None = None,
        urgent: bool = False,
    ) -> None:
        if self.state is SessionState.STOPPED:
            return
        command = at.AtCommand(line, timeout or self.settings.command_timeout, pdu)
        # Handlers are matched to outcomes by the order commands run in; an urgent one runs
        # before the queued ones (after the running one and earlier urgent ones).
        if urgent:
            self._handlers.insert(self._urgent_handlers(), handler)
        else:
            self._handlers.append(handler)
        self.channel.send(command, now, urgent=urgent)

    def _on_at_event(self, event: at.AtEvent, now: float) -> None:
        if isinstance(event, at.CommandCompleted | at.CommandTimedOut):
            if not self._handlers:
                return
            handler = self._handlers.popleft()
            if isinstance(event, at.CommandTimedOut):
                self._timeouts_in_a_row += 1
                if self._timeouts_in_a_row == self.settings.unresponsive_after:
                    self._events.append(Unresponsive(self._timeouts_in_a_row))
            else:
                self._timeouts_in_a_row = 0
            handler(event, now)
            return
        self._timeouts_in_a_row = 0  # anything from the modem shows it is alive
        if isinstance(event, at.MessageStored | at.StatusReportStored):
            self._read_stored(event.index, now)
        elif isinstance(event, at.MessageArrived | at.StatusReportArrived):
            self._take_pdu(event.pdu, None, now, self._routed_arrival(now))
        elif isinstance(event, at.MalformedUnsolicited) and _prefix(event.line) in _ROUTED:
            # The modem waits for an answer to this one too.
            token = self._routed_arrival(now)
            self._events.append(
                UnreadableMessage(None, event.line.encode("latin-1"), event.reason, token)
            )
        elif isinstance(event, at.RegistrationChanged):
            self._registration_changed(event.status, event.prefix, now)
        elif isinstance(event, at.SignalChanged):
            self._signal(event.rssi)

    def _stop(self, reason: str, *, fatal: bool, unresponsive: bool = False) -> None:
        if self.state is SessionState.STOPPED:
            return
        self.state = SessionState.STOPPED
        self._next_signal = self._next_registration = self._next_poll = None
        self._events.append(Stopped(reason, fatal, unresponsive))

    @staticmethod
    def _ok(outcome: Outcome) -> bool:
        return isinstance(outcome, at.CommandCompleted) and outcome.result.ok

    @staticmethod
    def _describe(outcome: Outcome) -> str:
        if isinstance(outcome, at.CommandTimedOut):
            return f"{outcome.command.line}: no answer in {outcome.command.timeout:g} s"
        return f"{outcome.command.line}: {outcome.result.name}"

    # --- start-up ------------------------------------------------------------------------------

    def _after_echo_off(self, outcome: Outcome, now: float) -> None:
        if isinstance(outcome, at.CommandTimedOut):
            reason = f"modem does not answer ({self._describe(outcome)})"
            self._stop(reason, fatal=False, unresponsive=True)
            return
        self._command("AT+CMEE=1", self._after_cmee, now)

    def _after_cmee(self, outcome: Outcome, now: float) -> None:
        self._command("AT+CPIN?", self._after_pin_query, now)

    def _after_pin_query(self, outcome: Outcome, now: float) -> None:
        if not self._ok(outcome):
            self._stop(f"cannot read the SIM state ({self._describe(outcome)})", fatal=False)
            return
        assert isinstance(outcome, at.CommandCompleted)
        state = next(
            (line.partition(":")[2].strip() for line in outcome.lines if line.startswith("+CPIN")),
            "",
        )
        if state == "READY":
            self._command("AT+CREG=1", self._after_creg_mode, now)
        elif state == "SIM PIN":
            pin = self.settings.pin
            if pin is None:
                self._stop("the SIM asks for a PIN and none is configured", fatal=True)
            elif self.pin_entered:
                self._stop("the SIM still asks for its PIN after it was entered", fatal=True)
            else:
                self.pin_entered = True
                self._command(f'AT+CPIN="{pin}"', self._after_pin_entry, now)
        elif state == "SIM PUK":
            self._stop("the SIM is blocked and asks for its PUK", fatal=True)
        else:
            self._stop(f"the SIM is not ready: {state or 'no +CPIN answer'}", fatal=True)

    def _after_pin_entry(self, outcome: Outcome, now: float) -> None:
        if self._ok(outcome):
            self._command("AT+CPIN?", self._after_pin_query, now)
            return
        if isinstance(outcome, at.CommandCompleted):
            self._stop(
                f"the SIM refused the configured PIN ({outcome.result.name}); not trying "
                "again, so the SIM does not lock: fix the PIN and restart the link",
                fatal=True,
            )
            return
        self._stop(
            f"PIN entry got no clear answer ({self._describe(outcome)}); not trying again",
            fatal=True,
        )

    def _after_creg_mode(self, outcome: Outcome, now: float) -> None:
        self._command("AT+CREG?", self._after_registration_query, now)

    def _after_registration_query(self, outcome: Outcome, now: float) -> None:
        status = self._registration_from(outcome, "+CREG")
        if status is not None:
            self._registration_changed(status, "+CREG", now)
        if self.registration in REGISTERED:
            self._continue_after_registration(now)
            return
        # Not on the circuit-switched network: an LTE-only modem says so in +CEREG.
        self._command("AT+CEREG?", self._after_eps_registration_query, now)

    def _after_eps_registration_query(self, outcome: Outcome, now: float) -> None:
        status = self._registration_from(outcome, "+CEREG")
        if status is not None and status in REGISTERED:
            self._registration_changed(status, "+CEREG", now)
        if self.registration in REGISTERED:
            self._continue_after_registration(now)
            return
        self.state = SessionState.WAITING_FOR_NETWORK
        self._next_registration = now + self.settings.registration_interval

    @staticmethod
    def _registration_from(outcome: Outcome, prefix: str) -> int | None:
        if not isinstance(outcome, at.CommandCompleted) or not outcome.result.ok:
            return None
        for line in outcome.lines:
            if line.startswith(prefix + ":"):
                fields = [f.strip() for f in line.partition(":")[2].split(",")]
                if len(fields) >= 2 and fields[1].isdigit():
                    return int(fields[1])
        return None

    def _after_registration_poll(self, outcome: Outcome, now: float) -> None:
        status = self._registration_from(outcome, "+CREG")
        if status is not None:
            self._registration_changed(status, "+CREG", now)
        if self.state is SessionState.WAITING_FOR_NETWORK and self.registration not in REGISTERED:
            self._next_registration = now + self.settings.registration_interval

    def _registration_changed(self, status: int, technology: str, now: float) -> None:
        if status == self.registration:
            return
        self.registration = status
        self._events.append(RegistrationUpdate(status, technology))
        if self.state is SessionState.WAITING_FOR_NETWORK and status in REGISTERED:
            self._next_registration = None
            self._continue_after_registration(now)

    def _continue_after_registration(self, now: float) -> None:
        self.state = SessionState.STARTING
        self._command("AT+COPS?", self._after_operator, now)

    def _after_operator(self, outcome: Outcome, now: float) -> None:
        if isinstance(outcome, at.CommandCompleted):
            for line in outcome.lines:
                if line.startswith("+COPS:"):
                    fields = line.partition(":")[2].split(",")
                    if len(fields) >= 3:
                        self.operator = fields[2].strip().strip('"')
                        self._events.append(OperatorUpdate(self.operator))
        self._command("AT+CSQ", self._after_signal, now)

    def _after_signal(self, outcome: Outcome, now: float) -> None:
        self._read_signal(outcome)
        self._command("AT+CMGF=0", self._after_pdu_mode, now)

    def _after_pdu_mode(self, outcome: Outcome, now: float) -> None:
        if not self._ok(outcome):
            # Only a refusal says "no PDU mode"; a SIM still busy after its PIN, or no answer,
            # is worth another start.
            refused = isinstance(outcome, at.CommandCompleted) and (
                outcome.result.kind is at.ResultKind.ERROR
                or outcome.result.code in _NOT_SUPPORTED_CODES.get(outcome.result.kind, ())
            )
            self._stop(
                f"the modem {'has no' if refused else 'could not set'} PDU mode "
                f"({self._describe(outcome)})",
                fatal=refused,
            )
            return
        if self.settings.service_centre:
            centre = self.settings.service_centre
            kind = 145 if centre.startswith("+") else 129
            self._command(f'AT+CSCA="{centre}",{kind}', self._ignore, now)
        for line in self.settings.init_commands:
            self._command(line, self._ignore, now)
        storage = self.settings.storage
        self._command(f'AT+CPMS="{storage}","{storage}","{storage}"', self._ignore, now)
        indications = self.settings.new_message_indications
        if self.settings.acknowledge_routed and routes_to_us(indications):
            self._command("AT+CSMS=1", self._after_message_service, now)
        self._command(f"AT+CNMI={indications}", self._after_indications, now)

    def _ignore(self, outcome: Outcome, now: float) -> None:
        pass

    def _after_message_service(self, outcome: Outcome, now: float) -> None:
        # Refused (a phase 2 modem): it acknowledges routed messages itself, on arrival.
        self.acknowledging = self._ok(outcome)

    def _after_indications(self, outcome: Outcome, now: float) -> None:
        self.state = SessionState.READY
        self._events.append(Ready(self.operator, self.registration, self.rssi))
        self._next_signal = now + self.settings.signal_interval
        self._list_stored(now)
        self._next_part(now)

    # --- health --------------------------------------------------------------------------------

    def _read_signal(self, outcome: Outcome) -> None:
        if not isinstance(outcome, at.CommandCompleted):
            return
        for line in outcome.lines:
            if line.startswith("+CSQ:"):
                first = line.partition(":")[2].split(",")[0].strip()
                if first.isdigit():
                    self._signal(int(first))

    def _signal(self, rssi: int) -> None:
        self.rssi = rssi if rssi != 99 else None
        self._events.append(SignalUpdate(rssi, signal_dbm(rssi)))

    def _after_signal_poll(self, outcome: Outcome, now: float) -> None:
        self._read_signal(outcome)
        if self.state is not SessionState.STOPPED:
            self._next_signal = now + self.settings.signal_interval

    # --- sending -------------------------------------------------------------------------------

    def _next_part(self, now: float) -> None:
        if self._sending is not None or not self._sends or self.state is not SessionState.READY:
            return
        self._sending = self._sends[0]
        tpdu = self._sending.tpdus[0]
        # "00": the SIM's service centre (set by +CSCA when overridden)
        pdu = "00" + tpdu.hex().upper()
        self._command(
            f"AT+CMGS={len(tpdu)}",
            self._after_part,
            now,
            timeout=self.settings.send_timeout,
            pdu=pdu,
        )

    def _after_part(self, outcome: Outcome, now: float) -> None:
        sending = self._sending
        if sending is None:
            return
        self._sending = None
        reference = None
        if isinstance(outcome, at.CommandCompleted) and outcome.result.ok:
            for line in outcome.lines:
                if line.startswith("+CMGS:"):
                    value = line.partition(":")[2].split(",")[0].strip()
                    reference = int(value) if value.isdigit() else None
        if reference is not None:
            sending.references.append(reference)
            sending.tpdus.popleft()
            if not sending.tpdus:
                self._sends.popleft()
                self._events.append(MessageSent(sending.key, tuple(sending.references)))
            self._next_part(now)
            return
        self._sends.popleft()
        references = tuple(sending.references)
        reason = self._describe(outcome)
        if isinstance(outcome, at.CommandTimedOut):
            failure = SendFailed(
                sending.key, references, FailureKind.TEMPORARY, reason, None, outcome.prompted
            )
        elif outcome.result.ok:
            reason = f"{reason}, but no +CMGS reference: sent, and its report cannot be matched"
            failure = SendFailed(sending.key, references, FailureKind.TEMPORARY, reason, None, True)
        elif outcome.result.kind is at.ResultKind.CMS_ERROR and outcome.result.code is not None:
            code = outcome.result.code
            failure = SendFailed(sending.key, references, cms_failure_kind(code), reason, code)
        else:
            failure = SendFailed(sending.key, references, FailureKind.TEMPORARY, reason)
        self._events.append(failure)
        self._next_part(now)

    def _fail_sends(self, kind: FailureKind, reason: str) -> None:
        for sending in self._sends:
            self._events.append(SendFailed(sending.key, tuple(sending.references), kind, reason))
        self._sends.clear()
        self._sending = None

    # --- receiving -----------------------------------------------------------------------------

    def _list_stored(self, now: float) -> None:
        self._command("AT+CMGL=4", self._after_list, now)

    def _after_list(self, outcome: Outcome, now: float) -> None:
        if self.settings.poll_interval is not None and self.state is not SessionState.STOPPED:
            self._next_poll = now + self.settings.poll_interval
        if not isinstance(outcome, at.CommandCompleted) or not outcome.result.ok:
            return
        lines = list(outcome.lines)
        for position, line in enumerate(lines):
            if not line.startswith("+CMGL:") or position + 1 >= len(lines):
                continue
            index_text = line.partition(":")[2].split(",")[0].strip()
            if not index_text.isdigit():
                continue
            index = int(index_text)
            if index in self._held_indexes or index in self._reading:
                continue
            self._take_hex(lines[position + 1], index, now)

    def _read_stored(self, index: int, now: float) -> None:
        if index in self._held_indexes or index in self._reading:
            return
        self._reading.add(index)
        self._command(f"AT+CMGR={index}", self._after_read(index), now)

    def _after_read(self, index: int) -> Handler:
        def handle(outcome: Outcome, now: float) -> None:
            self._reading.discard(index)
            if not isinstance(outcome, at.CommandCompleted) or not outcome.result.ok:
                return  # the next +CMGL (start-up or poll) finds it
            lines = list(outcome.lines)
            for position, line in enumerate(lines):
                if line.startswith("+CMGR:") and position + 1 < len(lines):
                    self._take_hex(lines[position + 1], index, now)
                    return

        return handle

    def _after_delete(self, index: int) -> Handler:
        def handle(outcome: Outcome, now: float) -> None:
            self._held_indexes.discard(index)

        return handle

    def _take_hex(self, text: str, index: int | None, now: float) -> None:
        try:
            pdu = bytes.fromhex(text)
        except ValueError:
            self._unreadable(index, text.encode("latin-1", "replace"), "PDU is not hexadecimal")
            return
        self._take_pdu(pdu, index, now)

    def _unreadable(
        self, index: int | None, pdu: bytes, reason: str, acknowledgement: int | None = None
    ) -> None:
        if index is not None:
            self._held_indexes.add(index)
        self._events.append(UnreadableMessage(index, pdu, reason, acknowledgement))

    def _take_pdu(
        self, pdu: bytes, index: int | None, now: float, acknowledgement: int | None = None
    ) -> None:
        try:
            _, tpdu = split_service_centre(pdu)
            message = decode_from_network(tpdu)
        except TpduError as error:
            self._unreadable(index, pdu, str(error), acknowledgement)
            return
        if index is not None:
            self._held_indexes.add(index)
        if isinstance(message, SmsStatusReport):
            self._events.append(StatusReportReceived(message, index, acknowledgement))
            return
        self._take_deliver(message, index, now, acknowledgement)

    def _take_deliver(
        self, deliver: SmsDeliver, index: int | None, now: float, acknowledgement: int | None
    ) -> None:
        concat = deliver.user_data.concat
        if concat is None or concat.total == 1 or not self.settings.join_parts:
            self._emit_message([(deliver, index)], acknowledgement=acknowledgement)
            return
        part = ConcatPart(
            concat, deliver.user_data.payload, deliver.user_data.dcs, (deliver, index)
        )
        key = (str(deliver.originator), deliver.user_data.alphabet)
        whole = self._reassembler.add(key, part, now)
        if whole is not None:
            self._emit_message(
                [_context(part) for part in whole.parts], acknowledgement=acknowledgement
            )
        else:
            # Held here, in memory: the modem routes no next part until this one is answered.
            self.acknowledge(acknowledgement, True, now)

    def _emit_message(
        self,
        parts: list[tuple[SmsDeliver, int | None]],
        *,
        complete: bool = True,
        acknowledgement: int | None = None,
    ) -> None:
        delivers = [deliver for deliver, _ in parts]
        indexes = tuple(index for _, index in parts if index is not None)
        first = delivers[0]
        joined = UserData(first.user_data.dcs, b"".join(d.user_data.payload for d in delivers))
        self._events.append(
            MessageReceived(
                originator=str(first.originator),
                text=joined.text,
                user_data=tuple(d.user_data for d in delivers),
                service_centre_time=first.service_centre_time,
                storage_indexes=indexes,
                complete=complete,
                acknowledgement=acknowledgement,
            )
        )

    # --- acknowledging routed messages ---------------------------------------------------------

    def _routed_arrival(self, now: float) -> int | None:
        """A token for a +CMT/+CDS the modem waits for us to answer; None when it does not."""
        if not self.acknowledging:
            return None
        token = next(self._tokens)
        self._acknowledgements.append(_Acknowledgement(token, now))
        return token

    def _unanswered_deadline(self) -> float | None:
        if not self._acknowledgements:
            return None
        return self._acknowledgements[0].since + self.settings.acknowledgement_wait

    def _give_up_unanswered(self, now: float) -> None:
        deadline = self._unanswered_deadline()
        if deadline is None or now < deadline:
            return
        self._acknowledgements.popleft()
        wait = self.settings.acknowledgement_wait
        reason = f"a routed message got no answer from the caller in {wait:g} s"
        self._events.append(AcknowledgementRefused(True, reason, True))
        self._routing_lost(now)
        # Those answered behind it go now (the modem takes them as answers to later ones).
        while self._acknowledgements and self._acknowledgements[0].accepted is not None:
            answered = self._acknowledgements.popleft()
            self._send_acknowledgement(bool(answered.accepted), now)

    def _routing_lost(self, now: float) -> None:
        """The modem gave up waiting for an answer, and may have turned routing off (TS 27.005
        3.4.4): set it again, and read what was stored meanwhile."""
        if self.state is SessionState.READY:
            self._command(f"AT+CNMI={self.settings.new_message_indications}", self._ignore, now)
            self._list_stored(now)

    def _urgent_handlers(self) -> int:
        """Where an urgent command's handler goes: after the running command's and the urgent
        ones already waiting."""
        running = 1 if self.channel.busy else 0
        return min(running + self.channel.urgent_queued, len(self._handlers))

    def _send_acknowledgement(self, accepted: bool, now: float) -> None:
        if accepted:
            self._command("AT+CNMA", self._after_acknowledgement(True), now, urgent=True)
            return
        report = deliver_report_error()
        self._command(
            f"AT+CNMA=2,{len(report)}",
            self._after_acknowledgement(False, with_report=True),
            now,
            pdu=report.hex().upper(),
            urgent=True,
        )

    def _after_acknowledgement(self, accepted: bool, *, with_report: bool = False) -> Handler:
        def handle(outcome: Outcome, now: float) -> None:
            if self._ok(outcome):
                return
            late = isinstance(outcome, at.CommandTimedOut) or (
                outcome.result.kind is at.ResultKind.CMS_ERROR
                and outcome.result.code == CMS_NO_ACKNOWLEDGEMENT_EXPECTED
            )
            if with_report and not late:
                # A modem that takes no report with its RP-ERROR still takes a bare one.
                self._command("AT+CNMA=2", self._after_acknowledgement(False), now, urgent=True)
                return
            self._events.append(AcknowledgementRefused(accepted, self._describe(outcome), True))
            self._routing_lost(now)

        return handle


_ROUTED = frozenset({"+CMT", "+CDS"})


def _prefix(line: str) -> str:
    return line.partition(":")[0].strip().upper()


def _context(part: ConcatPart) -> tuple[SmsDeliver, int | None]:
    context = part.context
    assert isinstance(context, tuple) and isinstance(context[0], SmsDeliver)
    index = context[1]
    return context[0], index if isinstance(index, int) else None
