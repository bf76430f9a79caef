"""The SMPP 3.4 session state machine, for both roles (ESME client and SMSC server).

Owns: the session states and the table of which requests each role may send in each state,
sequence numbering, the window of outstanding requests with their response deadlines, bind and
unbind handshakes, outbind, enquire_link keep-alive, inactivity and bind timeouts, and the refusal
of requests the state does not allow (ESME_RINVBNDSTS, ESME_RALYBND) or that cannot be decoded
(generic_nack).

Must never: open a socket, await, start a task or read a clock. Bytes and `now` (monotonic
seconds) come in; events, bytes (`data_to_send`) and the next deadline (`next_deadline`) go out.
Encoding and decoding belong to `smpp.codec`; this module only decides.

Theory of operation: both ends of a connection agree on one state (OPEN, BOUND_TX, BOUND_RX,
BOUND_TRX, UNBOUND, CLOSED). `REQUEST_TABLE` says, for every request, which role may originate it
and in which states; what a role may *receive* is exactly what its peer may *send*. The two
derived lookups `_SENDABLE` and `_RECEIVABLE` turn every check on the hot path into one frozenset
membership test. Responses are matched by sequence number against the outstanding requests
(`dict` by sequence, plus a deadline heap with lazy deletion), so the state never needs to know
which response answers what.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from heapq import heapify, heappop, heappush
from typing import Any, Protocol, cast

from smpp.codec import PduDecoder, PduError, encode
from smpp.constants import RESPONSE_BIT, CommandId, CommandStatus
from smpp.pdu import EnquireLink, GenericNack, Pdu, Unbind

MAX_SEQUENCE_NUMBER = 0x7FFFFFFF
_ENQUIRE_LINK = int(CommandId.ENQUIRE_LINK)
_UNBIND = int(CommandId.UNBIND)
_OUTBIND = int(CommandId.OUTBIND)


class Role(enum.Enum):
    CLIENT = "client"  # the ESME: binds, submits
    SERVER = "server"  # the SMSC: accepts binds, delivers


class SessionState(enum.Enum):
    OPEN = "open"  # connected, not bound
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBOUND = "unbound"  # an unbind was sent or received: no new requests, answers still flow
    CLOSED = "closed"  # nothing more may be sent or received


OPEN = SessionState.OPEN
BOUND_TX = SessionState.BOUND_TX
BOUND_RX = SessionState.BOUND_RX
BOUND_TRX = SessionState.BOUND_TRX
UNBOUND = SessionState.UNBOUND
CLOSED = SessionState.CLOSED

BOUND_STATES = frozenset({BOUND_TX, BOUND_RX, BOUND_TRX})
_TRANSMIT = frozenset({BOUND_TX, BOUND_TRX})
_RECEIVE = frozenset({BOUND_RX, BOUND_TRX})
_CLIENT, _SERVER = Role.CLIENT, Role.SERVER

# The transition table (SMPP 3.4 section 2.3 and chapter 4): request -> {originating role: states
# in which it may be sent}. enquire_link is also allowed in OPEN, as SMPP 5.0 does, because
# refusing a link check before bind helps nobody.
REQUEST_TABLE: dict[CommandId, dict[Role, frozenset[SessionState]]] = {
    CommandId.BIND_TRANSMITTER: {_CLIENT: frozenset({OPEN})},
    CommandId.BIND_RECEIVER: {_CLIENT: frozenset({OPEN})},
    CommandId.BIND_TRANSCEIVER: {_CLIENT: frozenset({OPEN})},
    CommandId.OUTBIND: {_SERVER: frozenset({OPEN})},
    # UNBOUND is listed so that crossing unbinds are both answered.
    CommandId.UNBIND: {_CLIENT: BOUND_STATES | {UNBOUND}, _SERVER: BOUND_STATES | {UNBOUND}},
    CommandId.ENQUIRE_LINK: {_CLIENT: BOUND_STATES | {OPEN}, _SERVER: BOUND_STATES | {OPEN}},
    CommandId.SUBMIT_SM: {_CLIENT: _TRANSMIT},
    CommandId.SUBMIT_MULTI: {_CLIENT: _TRANSMIT},
    CommandId.QUERY_SM: {_CLIENT: _TRANSMIT},
    CommandId.CANCEL_SM: {_CLIENT: _TRANSMIT},
    CommandId.REPLACE_SM: {_CLIENT: _TRANSMIT},
    CommandId.DATA_SM: {_CLIENT: _TRANSMIT, _SERVER: _RECEIVE},
    CommandId.DELIVER_SM: {_SERVER: _RECEIVE},
    CommandId.ALERT_NOTIFICATION: {_SERVER: _RECEIVE},
}

# A successful bind_*_resp moves OPEN to the bound state named by the bind.
BIND_RESULT: dict[int, SessionState] = {
    CommandId.BIND_TRANSMITTER: BOUND_TX,
    CommandId.BIND_RECEIVER: BOUND_RX,
    CommandId.BIND_TRANSCEIVER: BOUND_TRX,
}

# Requests that have no response PDU: refused with generic_nack, never tracked in the window.
WITHOUT_RESPONSE: frozenset[int] = frozenset({CommandId.OUTBIND, CommandId.ALERT_NOTIFICATION})
# Session housekeeping requests: tracked for their deadline but never counted in the window.
OUTSIDE_WINDOW: frozenset[int] = frozenset(
    {CommandId.ENQUIRE_LINK, CommandId.UNBIND, *BIND_RESULT, *WITHOUT_RESPONSE}
)


def _derive(originator: Role) -> dict[SessionState, frozenset[int]]:
    return {
        state: frozenset(
            int(cid) for cid, roles in REQUEST_TABLE.items() if state in roles.get(originator, ())
        )
        for state in SessionState
    }


_SENDABLE: dict[Role, dict[SessionState, frozenset[int]]] = {
    _CLIENT: _derive(_CLIENT),
    _SERVER: _derive(_SERVER),
}
_RECEIVABLE: dict[Role, dict[SessionState, frozenset[int]]] = {
    _CLIENT: _SENDABLE[_SERVER],
    _SERVER: _SENDABLE[_CLIENT],
}
_EVER_RECEIVABLE: dict[Role, frozenset[int]] = {
    role: frozenset().union(*table.values()) for role, table in _RECEIVABLE.items()
}


@dataclass(slots=True, frozen=True)
class SessionConfig:
    """Every knob of a session. Times are seconds; None disables that timer."""

    window: int = 10  # outstanding application requests at most
    response_timeout: float = 30.0  # default per-request response deadline
    enquire_link_interval: float | None = 30.0  # send enquire_link after this long without input
    inactivity_timeout: float | None = None  # unbind after this long without any traffic
    bind_timeout: float | None = 30.0  # close if the session is not bound this long after start
    max_pdu_length: int = 65536  # longer command_length is a fatal framing error

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window must be at least 1, not {self.window}")
        times = (self.response_timeout, self.enquire_link_interval, self.inactivity_timeout)
        if any(t is not None and t <= 0 for t in (*times, self.bind_timeout)):
            raise ValueError("timeouts and intervals must be positive (or None to disable)")


# ---------------------------------------------------------------------------------------------
# Events


@dataclass(slots=True, frozen=True)
class RequestReceived:
    """The peer sent a request the state allows; answer it with `send_response`."""

    pdu: Pdu


@dataclass(slots=True, frozen=True)
class ResponseReceived:
    pdu: Pdu
    request: Pdu


@dataclass(slots=True, frozen=True)
class RequestTimedOut:
    request: Pdu


@dataclass(slots=True, frozen=True)
class BindRequested:
    """Server role: the peer asks to bind; call `accept_bind` or `reject_bind`."""

    pdu: Pdu


@dataclass(slots=True, frozen=True)
class OutbindReceived:
    """Client role: the server invites a bind; answer with a bind_receiver request."""

    pdu: Pdu


@dataclass(slots=True, frozen=True)
class Bound:
    state: SessionState
    request: Pdu  # the bind request that was accepted
    response: Pdu | None  # client role: the bind response; server role: None


@dataclass(slots=True, frozen=True)
class Unbound:
    """The unbind handshake is done: send `data_to_send()`, then close the connection."""

    by_peer: bool


@dataclass(slots=True, frozen=True)
class RequestRefused:
    """The peer sent something this session answered with an error status."""

    command_id: int
    sequence_number: int
    status: int


@dataclass(slots=True, frozen=True)
class UnexpectedResponse:
    """A response whose sequence number matches no outstanding request."""

    pdu: Pdu


@dataclass(slots=True, frozen=True)
class ShouldClose:
    """The session cannot continue: send `data_to_send()`, then close the connection."""

    reason: str


Event = (
    RequestReceived
    | ResponseReceived
    | RequestTimedOut
    | BindRequested
    | OutbindReceived
    | Bound
    | Unbound
    | RequestRefused
    | UnexpectedResponse
    | ShouldClose
)


class SessionError(Exception):
    """A local misuse of the session: the request was not sent."""


class StateForbidsError(SessionError):
    pass


class WindowFullError(SessionError):
    pass


class _Request(Protocol):
    def response(self, **fields: Any) -> Pdu: ...


def response_to(request: Pdu, **fields: Any) -> Pdu:
    """The response to `request` (same sequence number); every request with one has `.response`."""
    return cast(_Request, request).response(**fields)


# An outstanding request: (deadline, serial, sequence_number, request). The same tuple sits in
# the dict (by sequence_number) and in the heap, so a heap entry is current exactly when the dict
# holds that very tuple. The serial never repeats, so ties on the deadline never compare PDUs.
_Pending = tuple[float, int, int, Pdu]


class Session:
    """One SMPP connection seen from one end. Feed it bytes and time; it returns events."""

    def __init__(self, role: Role, config: SessionConfig | None = None, now: float = 0.0) -> None:
        self.role = role
        self.config = config if config is not None else SessionConfig()
        self.state = OPEN
        self.bind_request: Pdu | None = None  # pending, then accepted, bind
        self._decoder = PduDecoder(self.config.max_pdu_length)
        self._sendable = _SENDABLE[role]
        self._receivable = _RECEIVABLE[role]
        self._receivable_now = self._receivable[OPEN]
        self._sendable_now = self._sendable[OPEN]
        self._window = self.config.window
        self._response_timeout = self.config.response_timeout
        self._next_sequence = 1
        self._serial = 0
        self._outstanding: dict[int, _Pending] = {}
        self._deadlines: list[_Pending] = []
        self._window_used = 0
        self._outgoing: list[bytes] = []
        self._started_at = now
        self._last_received = now  # any PDU from the peer: proves the link is alive
        self._last_traffic = now  # any request but enquire_link, either way: proves use
        self._keepalive: Pdu | None = None
        self._unbind: Pdu | None = None
        self._bind_accepted = False

    # -- state -------------------------------------------------------------------------------

    def _set_state(self, state: SessionState) -> None:
        self.state = state
        self._receivable_now = self._receivable[state]
        self._sendable_now = self._sendable[state]

    @property
    def window_used(self) -> int:
        return self._window_used

    @property
    def window_free(self) -> int:
        return self._window - self._window_used

    @property
    def outstanding(self) -> int:
        """Requests sent and not yet answered, housekeeping ones included."""
        return len(self._outstanding)

    # -- sending -----------------------------------------------------------------------------

    def send_request(self, pdu: Pdu, now: float, timeout: float | None = None) -> int:
        """Assign the next sequence number, queue the bytes and start the response deadline.

        Raises StateForbidsError if this role may not send that request now, WindowFullError
        when the window of outstanding application requests is full.
        """
        cid = pdu.command_id
        if cid not in self._sendable_now:
            raise StateForbidsError(
                f"{self.role.value} may not send {CommandId(cid).name} in state {self.state.name}"
            )
        counted = cid not in OUTSIDE_WINDOW
        if counted:
            if self._window_used >= self._window:
                raise WindowFullError(f"window of {self._window} outstanding requests is full")
            self._last_traffic = now
        else:
            self._start_housekeeping(pdu, cid)
        seq = self._next_sequence
        outstanding = self._outstanding
        while seq in outstanding:  # only after a wrap with a request still unanswered
            seq = 1 if seq >= MAX_SEQUENCE_NUMBER else seq + 1
        self._next_sequence = 1 if seq >= MAX_SEQUENCE_NUMBER else seq + 1
        pdu.sequence_number = seq
        self._outgoing.append(encode(pdu))
        if cid in WITHOUT_RESPONSE:
            return seq
        self._serial += 1
        deadline = now + (self._response_timeout if timeout is None else timeout)
        pending = (deadline, self._serial, seq, pdu)
        outstanding[seq] = pending
        heap = self._deadlines
        heappush(heap, pending)
        if len(heap) > 2 * len(outstanding) + 64:  # drop answered entries, keep amortised O(1)
            self._deadlines = heap = list(outstanding.values())
            heapify(heap)
        if counted:
            self._window_used += 1
        return seq

    def _start_housekeeping(self, pdu: Pdu, cid: int) -> None:
        if cid in BIND_RESULT:
            if self.bind_request is not None:
                raise StateForbidsError("a bind is already in progress")
            self.bind_request = pdu
        elif cid == _UNBIND:
            if self._unbind is not None:
                raise StateForbidsError("an unbind is already in progress")
            self._unbind = pdu
            self._set_state(UNBOUND)

    def send_response(self, pdu: Pdu) -> bool:
        """Queue the answer to a request received earlier (its sequence number is kept).

        Returns False, sending nothing, once the session is CLOSED: a request read just before
        a fatal error may still be answered by the application, and nobody will read it.
        """
        if self.state is CLOSED:
            return False
        self._outgoing.append(encode(pdu))
        return True

    def unbind(self, now: float) -> int:
        """Start the graceful unbind handshake; `Unbound` follows the peer's unbind_resp."""
        return self.send_request(Unbind(), now)

    def accept_bind(self, **response_fields: Any) -> bool:
        """Server role: accept the pending bind (fields such as system_id go into the resp).

        Returns False, sending nothing, when the session closed while the bind was decided.
        """
        request = self._pending_bind()
        if request is None:
            return False
        self._outgoing.append(encode(response_to(request, **response_fields)))
        self._bind_accepted = True
        self._set_state(BIND_RESULT[request.command_id])
        return True

    def reject_bind(self, status: int, **response_fields: Any) -> bool:
        """Server role: refuse the pending bind with `status`; the session stays OPEN.

        Returns False, sending nothing, when the session closed while the bind was decided.
        """
        request = self._pending_bind()
        if request is None:
            return False
        self._outgoing.append(
            encode(response_to(request, command_status=status, **response_fields))
        )
        self.bind_request = None
        return True

    def _pending_bind(self) -> Pdu | None:
        if self.role is not _SERVER or self.bind_request is None or self._bind_accepted:
            raise StateForbidsError("no bind is waiting for a decision")
        return None if self.state is CLOSED else self.bind_request

    def data_to_send(self) -> bytes:
        """Everything queued for the wire since the last call."""
        out = self._outgoing
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def close(self) -> list[Pdu]:
        """The connection is gone: enter CLOSED and hand back the requests left unanswered."""
        self._set_state(CLOSED)
        unanswered = [pending[3] for pending in self._outstanding.values()]
        self._outstanding.clear()
        self._deadlines.clear()
        self._window_used = 0
        return unanswered

    # -- receiving ---------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes read from the connection; returns what happened, in order."""
        if self.state is CLOSED:
            return []
        events: list[Event] = []
        items = self._decoder.feed(data)
        if not items:
            return events
        self._last_received = now
        outstanding = self._outstanding
        append = events.append
        for item in items:
            if isinstance(item, PduError):
                self._refuse_undecodable(item, events)
                if self.state is CLOSED:
                    break
                continue
            cid = item.command_id
            if cid & RESPONSE_BIT:
                pending = outstanding.pop(item.sequence_number, None)
                if pending is None:
                    append(UnexpectedResponse(item))
                    continue
                request = pending[3]
                if request.command_id in OUTSIDE_WINDOW:
                    self._housekeeping_response(item, request, events)
                else:
                    self._window_used -= 1
                    append(ResponseReceived(item, request))
            elif cid in self._receivable_now:
                if cid in OUTSIDE_WINDOW:
                    self._housekeeping_request(item, cid, now, events)
                else:
                    self._last_traffic = now
                    append(RequestReceived(item))
            else:
                self._refuse_out_of_state(item, events)
        return events

    def _housekeeping_request(
        self, request: Pdu, cid: int, now: float, events: list[Event]
    ) -> None:
        if cid == _ENQUIRE_LINK:  # answered here; not traffic for the inactivity timer
            self._outgoing.append(encode(response_to(request)))
            return
        self._last_traffic = now
        if cid == _UNBIND:
            self._outgoing.append(encode(response_to(request)))
            self._set_state(UNBOUND)
            events.append(Unbound(by_peer=True))
        elif cid in BIND_RESULT:
            if self.bind_request is not None:  # a second bind before the decision
                self._refuse(request, CommandStatus.ESME_RALYBND, events)
            else:
                self.bind_request = request
                events.append(BindRequested(request))
        elif cid == _OUTBIND:
            events.append(OutbindReceived(request))
        else:  # alert_notification: an ordinary request that just has no response
            events.append(RequestReceived(request))

    def _housekeeping_response(self, response: Pdu, request: Pdu, events: list[Event]) -> None:
        rcid = request.command_id
        if request is self._keepalive:
            self._keepalive = None
        elif rcid == _UNBIND:
            events.append(Unbound(by_peer=False))
        elif rcid in BIND_RESULT:
            events.append(ResponseReceived(response, request))
            if response.command_status == CommandStatus.ESME_ROK and self.state is OPEN:
                self._bind_accepted = True
                state = BIND_RESULT[rcid]
                self._set_state(state)
                events.append(Bound(state, request, response))
            else:
                self.bind_request = None
        else:  # an enquire_link the application sent itself
            events.append(ResponseReceived(response, request))

    def _refuse_out_of_state(self, pdu: Pdu, events: list[Event]) -> None:
        cid = pdu.command_id
        if cid not in _EVER_RECEIVABLE[self.role]:
            status = CommandStatus.ESME_RINVCMDID  # e.g. a deliver_sm sent to the SMSC
        elif cid in BIND_RESULT and self.state is not OPEN:
            status = CommandStatus.ESME_RALYBND
        else:
            status = CommandStatus.ESME_RINVBNDSTS
        self._refuse(pdu, status, events)

    def _refuse(self, pdu: Pdu, status: int, events: list[Event]) -> None:
        cid = pdu.command_id
        seq = pdu.sequence_number
        if cid in WITHOUT_RESPONSE:
            self._outgoing.append(encode(GenericNack(sequence_number=seq, command_status=status)))
        else:
            self._outgoing.append(encode(response_to(pdu, command_status=status)))
        events.append(RequestRefused(cid, seq, status))

    def _refuse_undecodable(self, error: PduError, events: list[Event]) -> None:
        # error.reply() is generic_nack for a lost header, unknown command or broken framing, and
        # the request's own response for a bad body (as SMPP 3.4 answers e.g. ESME_RINVSRCADR).
        # A response we cannot read is not answered: its request stays outstanding and times out.
        if not error.command_id & RESPONSE_BIT or error.fatal:
            self._outgoing.append(encode(error.reply()))
            events.append(RequestRefused(error.command_id, error.sequence_number, error.status))
        if error.fatal:
            self._set_state(CLOSED)
            events.append(ShouldClose(f"unrecoverable framing error (status {error.status:#x})"))

    # -- time --------------------------------------------------------------------------------

    def _earliest_pending(self) -> _Pending | None:
        heap = self._deadlines
        outstanding = self._outstanding
        while heap:
            top = heap[0]
            if outstanding.get(top[2]) is top:
                return top
            heappop(heap)
        return None

    def _timers(self) -> Iterable[float]:
        config = self.config
        state = self.state
        if state is OPEN and config.bind_timeout is not None:
            yield self._started_at + config.bind_timeout
        if state in BOUND_STATES:
            if config.enquire_link_interval is not None and self._keepalive is None:
                yield self._last_received + config.enquire_link_interval
            if config.inactivity_timeout is not None:
                yield self._last_traffic + config.inactivity_timeout

    def next_deadline(self) -> float | None:
        """When `handle_timeout` must next be called; None when no timer runs."""
        if self.state is CLOSED:
            return None
        earliest = self._earliest_pending()
        best = earliest[0] if earliest is not None else None
        for when in self._timers():
            if best is None or when < best:
                best = when
        return best

    def handle_timeout(self, now: float) -> list[Event]:
        """Expire what is due at `now`: response deadlines, keep-alive, inactivity, bind."""
        events: list[Event] = []
        if self.state is CLOSED:
            return events
        while (pending := self._earliest_pending()) is not None and pending[0] <= now:
            heappop(self._deadlines)
            del self._outstanding[pending[2]]
            request = pending[3]
            if request is self._keepalive:
                return self._fail(events, "enquire_link was not answered in time")
            if request is self._unbind:
                return self._fail(events, "unbind was not answered in time")
            if request.command_id not in OUTSIDE_WINDOW:
                self._window_used -= 1
            elif request.command_id in BIND_RESULT:
                self.bind_request = None
            events.append(RequestTimedOut(request))
        config = self.config
        state = self.state
        if state is OPEN:
            if config.bind_timeout is not None and now >= self._started_at + config.bind_timeout:
                return self._fail(events, "not bound in time")
        elif state in BOUND_STATES:
            inactivity = config.inactivity_timeout
            if inactivity is not None and now >= self._last_traffic + inactivity:
                self.unbind(now)
                return events
            interval = config.enquire_link_interval
            if (
                interval is not None
                and self._keepalive is None
                and now >= self._last_received + interval
            ):
                keepalive = EnquireLink()
                self.send_request(keepalive, now)
                self._keepalive = keepalive
        return events

    def _fail(self, events: list[Event], reason: str) -> list[Event]:
        self._set_state(CLOSED)
        events.append(ShouldClose(reason))
        return events
