"""A sans-IO AT command channel (ITU-T V.250, TS 27.007, TS 27.005) to one GSM modem.

Owns the byte stream in both directions: queued commands go out one at a time, each with its own
deadline; the modem's lines are sorted into the running command's response (its information
lines and final result code: OK, ERROR, +CME ERROR, +CMS ERROR, NO CARRIER...), the echo of
what we sent (skipped), the "> " prompt of +CMGS (answered with the PDU and Ctrl-Z), and
unsolicited result codes (+CMTI, +CMT, +CDS, +CDSI, +CREG/+CEREG/+CGREG, RING, ^RSSI, ^BOOT and
any other), which are reported as events whenever they come, also in the middle of a response.

Must never open a port, sleep or read a clock: `now` is passed in, `deadline()` says when to
call `check_timeout`, and the bytes to write wait in `outgoing()`. Must never interpret what a
command means (that is the modem session). Whatever bytes arrive, nothing here raises.

Theory of operation: the input is cut into lines at CR or LF. A line is, in this order: the
second line of a two-line URC (+CMT, +CDS: the PDU), the echo of the running command or PDU, a
final result code, a line with a URC prefix that is not the running command's own response
prefix, else a response line of the running command, else (no command running) an unknown
unsolicited line. The "> " prompt has no line end, so the unterminated tail is looked at too.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from modems.errors import cme_code_of, cme_error_name, cms_code_of, cms_error_name

CR = b"\r"
CTRL_Z = b"\x1a"
ESC = b"\x1b"
MAX_LINE = 4096  # a +CMGL line of PDU hex is under 400 characters; garbage is cut here


@dataclass(frozen=True, slots=True)
class AtCommand:
    """One command line (without "AT"'s terminating CR) and, for +CMGS, the PDU (hex text) that
    goes after the "> " prompt."""

    line: str
    timeout: float = 10.0
    pdu: str | None = None

    @property
    def response_prefix(self) -> str:
        """ "+CMGL" for "AT+CMGL=4": the prefix of this command's information lines."""
        body = self.line[2:] if self.line[:2].upper() == "AT" else self.line
        for stop in "=?":
            body = body.split(stop, 1)[0]
        return body.strip().upper()


class ResultKind(enum.Enum):
    OK = "OK"
    ERROR = "ERROR"
    CME_ERROR = "+CME ERROR"
    CMS_ERROR = "+CMS ERROR"
    NO_CARRIER = "NO CARRIER"
    BUSY = "BUSY"
    NO_ANSWER = "NO ANSWER"
    NO_DIALTONE = "NO DIALTONE"


@dataclass(frozen=True, slots=True)
class FinalResult:
    kind: ResultKind
    code: int | None = None  # +CME / +CMS error number (looked up when the modem sent text)
    text: str = ""  # the error text when the modem sent one (AT+CMEE=2)

    @property
    def ok(self) -> bool:
        return self.kind is ResultKind.OK

    @property
    def name(self) -> str:
        """What went wrong, in words: "+CMS ERROR 38 (network out of order)"."""
        if self.kind is ResultKind.CMS_ERROR and self.code is not None:
            return f"+CMS ERROR {self.code} ({cms_error_name(self.code)})"
        if self.kind is ResultKind.CME_ERROR and self.code is not None:
            return f"+CME ERROR {self.code} ({cme_error_name(self.code)})"
        if self.text:
            return f"{self.kind.value}: {self.text}"
        return self.kind.value


_PLAIN_RESULTS = {kind.value: kind for kind in ResultKind if not kind.value.startswith("+")}


def parse_final_result(line: str) -> FinalResult | None:
    """The final result code `line` is, or None when it is not one."""
    plain = _PLAIN_RESULTS.get(line)
    if plain is not None:
        return FinalResult(plain)
    for kind, lookup in ((ResultKind.CME_ERROR, cme_code_of), (ResultKind.CMS_ERROR, cms_code_of)):
        prefix = kind.value + ":"
        if line.startswith(prefix):
            argument = line[len(prefix) :].strip()
            if argument.isdigit():
                return FinalResult(kind, int(argument))
            return FinalResult(kind, lookup(argument), argument)
    return None


# --- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandCompleted:
    command: AtCommand
    result: FinalResult
    lines: tuple[str, ...]  # information lines, in order (for +CMGL: headers and PDUs)


@dataclass(frozen=True, slots=True)
class CommandTimedOut:
    command: AtCommand
    lines: tuple[str, ...]  # what had come before the deadline
    prompted: bool  # +CMGS: the prompt came and the PDU went (the modem may have sent it)


@dataclass(frozen=True, slots=True)
class MessageStored:
    """+CMTI: a message arrived and was stored at `index` of `storage`."""

    storage: str
    index: int


@dataclass(frozen=True, slots=True)
class StatusReportStored:
    """+CDSI: a status report arrived and was stored."""

    storage: str
    index: int


@dataclass(frozen=True, slots=True)
class MessageArrived:
    """+CMT: a message routed straight to us (PDU with the service centre prefix)."""

    pdu: bytes
    length: int | None  # TPDU octets, as the header said


@dataclass(frozen=True, slots=True)
class StatusReportArrived:
    """+CDS: a status report routed straight to us."""

    pdu: bytes
    length: int | None


@dataclass(frozen=True, slots=True)
class RegistrationChanged:
    """+CREG (circuit), +CGREG (GPRS) or +CEREG (LTE): registration status and, when given,
    location area / tracking area and cell."""

    prefix: str
    status: int
    area: str | None = None
    cell: str | None = None


@dataclass(frozen=True, slots=True)
class Ring:
    pass


@dataclass(frozen=True, slots=True)
class SignalChanged:
    """^RSSI: n (Huawei): the same 0-31 scale as +CSQ, 99 unknown."""

    rssi: int


@dataclass(frozen=True, slots=True)
class Unsolicited:
    """Any other unsolicited line (^BOOT, ^MODE, +CUSD, a stray echo...), kept as it came."""

    line: str


@dataclass(frozen=True, slots=True)
class MalformedUnsolicited:
    """A URC that did not read right (e.g. +CMT whose second line is not hex)."""

    line: str
    reason: str


@dataclass(frozen=True, slots=True)
class StrayResult:
    """A final result code while no command was running (e.g. one that came after its
    command timed out)."""

    result: FinalResult


AtEvent = (
    CommandCompleted
    | CommandTimedOut
    | MessageStored
    | StatusReportStored
    | MessageArrived
    | StatusReportArrived
    | RegistrationChanged
    | Ring
    | SignalChanged
    | Unsolicited
    | MalformedUnsolicited
    | StrayResult
)

# Prefixes that are unsolicited unless they answer the running command (AT+CREG? answers
# "+CREG: ..."). Any "^" line is a vendor URC by the same rule.
URC_PREFIXES = frozenset(
    {"+CMTI", "+CMT", "+CDS", "+CDSI", "+CREG", "+CGREG", "+CEREG", "+CBM", "+CUSD", "+CLIP"}
)
_TWO_LINE_URCS = frozenset({"+CMT", "+CDS", "+CBM"})
_HEX_DIGITS = frozenset("0123456789ABCDEFabcdef")


def _prefix_of(line: str) -> str:
    head, colon, _ = line.partition(":")
    return head.strip().upper() if colon else line.strip().upper()


def _arguments(line: str) -> list[str]:
    return [part.strip().strip('"') for part in line.partition(":")[2].split(",")]


def _int_or_none(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _is_hex(text: str) -> bool:
    return bool(text) and len(text) % 2 == 0 and _HEX_DIGITS.issuperset(text)


class AtChannel:
    """One modem's AT stream. `send` queues, `feed` takes what the modem wrote, `outgoing`
    gives what to write, `deadline`/`check_timeout` run the running command's timer."""

    def __init__(self, settle_after_timeout: float = 1.0) -> None:
        # After a timeout the next command waits this long, so a late answer to the timed-out
        # one arrives while nothing runs (a StrayResult) instead of answering the next command.
        self.settle_after_timeout = settle_after_timeout
        self._settle_until: float | None = None
        self._queue: deque[AtCommand] = deque()
        self._urgent: deque[AtCommand] = deque()
        self._current: AtCommand | None = None
        self._deadline: float | None = None
        self._lines: list[str] = []
        self._prompted = False
        self._buffer = bytearray()
        self._out = bytearray()
        self._pending_urc: str | None = None  # header of a two-line URC awaiting its PDU
        self._discarding = False  # inside an over-long line: drop until its end

    # --- commands --------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._current is not None

    @property
    def current(self) -> AtCommand | None:
        return self._current

    @property
    def urgent_queued(self) -> int:
        return len(self._urgent)

    @property
    def queued(self) -> int:
        return len(self._urgent) + len(self._queue)

    def send(self, command: AtCommand, now: float, *, urgent: bool = False) -> None:
        """Queue a command; it is written when every earlier one has completed or timed out.
        `urgent` commands (+CNMA, which the network waits for) go before every non-urgent
        queued one, in the order they were sent, once the running command is done."""
        (self._urgent if urgent else self._queue).append(command)
        self._start_next(now)

    def clear(self) -> list[AtCommand]:
        """Forget the running and queued commands (the port closed); returns them, running
        first, so the caller can fail what waited on them."""
        dropped = ([self._current] if self._current is not None else []) + list(self._urgent)
        dropped += list(self._queue)
        self._urgent.clear()
        self._queue.clear()
        self._finish()
        self._settle_until = None
        self._buffer.clear()
        self._out.clear()
        self._pending_urc = None
        self._discarding = False
        return dropped

    def outgoing(self) -> bytes:
        """Bytes to write to the modem now (and forget)."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def deadline(self) -> float | None:
        """When to call `check_timeout`: the running command's deadline, or the end of the
        pause after a timeout when commands wait; None when there is nothing to time."""
        waiting = bool(self._urgent or self._queue)
        if self._current is None and waiting and self._settle_until is not None:
            return self._settle_until
        return self._deadline

    def check_timeout(self, now: float) -> list[AtEvent]:
        """The running command's CommandTimedOut when its deadline has passed; the next
        queued command starts once the pause after a timeout is over."""
        if self._current is None:
            self._start_next(now)
            return []
        if self._deadline is None or now < self._deadline:
            return []
        command, prompted = self._current, self._prompted
        event = CommandTimedOut(command, tuple(self._lines), prompted)
        if command.pdu is not None and not prompted:
            self._out += ESC  # leave the prompt state, in case the prompt is still to come
        self._finish()
        self._settle_until = now + self.settle_after_timeout
        self._start_next(now)
        return [event]

    def _start_next(self, now: float) -> None:
        if self._current is not None or not (self._urgent or self._queue):
            return
        if self._settle_until is not None:
            if now < self._settle_until:
                return
            self._settle_until = None
        command = (self._urgent or self._queue).popleft()
        self._current = command
        self._deadline = now + command.timeout
        self._lines = []
        self._prompted = False
        self._out += command.line.encode("latin-1", "replace") + CR

    def _finish(self) -> None:
        self._current = None
        self._deadline = None
        self._lines = []
        self._prompted = False

    # --- input -----------------------------------------------------------------------------

    def feed(self, data: bytes, now: float) -> list[AtEvent]:
        """Take bytes the modem wrote; return the events they complete, in order."""
        events: list[AtEvent] = []
        self._buffer += data
        while True:
            end = self._line_end()
            if end < 0:
                break
            raw = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if self._discarding:
                self._discarding = False
                continue
            line = raw.decode("latin-1").replace("\x1a", "").strip()
            if line:
                self._take_line(line, events, now)
        if len(self._buffer) > MAX_LINE:
            self._buffer.clear()
            self._discarding = True
        self._check_prompt()
        return events

    def _line_end(self) -> int:
        cr = self._buffer.find(b"\r")
        lf = self._buffer.find(b"\n")
        if cr < 0:
            return lf
        if lf < 0:
            return cr
        return min(cr, lf)

    def _check_prompt(self) -> None:
        command = self._current
        if command is None or command.pdu is None or self._prompted:
            return
        tail = bytes(self._buffer).strip()
        if tail.startswith(b">"):
            self._buffer.clear()
            self._prompted = True
            self._out += command.pdu.encode("ascii", "replace") + CTRL_Z

    def _take_line(self, line: str, events: list[AtEvent], now: float) -> None:
        if self._pending_urc is not None:
            header, self._pending_urc = self._pending_urc, None
            if _is_hex(line):
                events.append(self._two_line_urc(header, bytes.fromhex(line)))
                return
            events.append(
                MalformedUnsolicited(header, f"the PDU line is not hexadecimal: {line[:400]!r}")
            )
        command = self._current
        if command is not None and self._is_echo(command, line):
            return
        result = parse_final_result(line)
        if result is not None:
            if command is None:
                events.append(StrayResult(result))
                return
            events.append(CommandCompleted(command, result, tuple(self._lines)))
            self._finish()
            self._start_next(now)
            return
        prefix = _prefix_of(line)
        own = command is not None and prefix == command.response_prefix
        if not own and (prefix in URC_PREFIXES or prefix.startswith("^") or line == "RING"):
            self._unsolicited(prefix, line, events)
            return
        if command is not None:
            self._lines.append(line)
            return
        events.append(Unsolicited(line))

    def _is_echo(self, command: AtCommand, line: str) -> bool:
        if line == command.line.strip():
            return True
        return command.pdu is not None and self._prompted and line == command.pdu

    def _two_line_urc(self, header: str, pdu: bytes) -> AtEvent:
        prefix = _prefix_of(header)
        arguments = _arguments(header)
        length = _int_or_none(arguments[-1]) if arguments else None
        if prefix == "+CMT":
            return MessageArrived(pdu, length)
        if prefix == "+CDS":
            return StatusReportArrived(pdu, length)
        return Unsolicited(header)

    def _unsolicited(self, prefix: str, line: str, events: list[AtEvent]) -> None:
        if prefix in _TWO_LINE_URCS:
            self._pending_urc = line
            return
        if line == "RING":
            events.append(Ring())
            return
        arguments = _arguments(line)
        if prefix in ("+CMTI", "+CDSI"):
            index = _int_or_none(arguments[1]) if len(arguments) >= 2 else None
            if index is None:
                events.append(MalformedUnsolicited(line, "no message index"))
                return
            kind = MessageStored if prefix == "+CMTI" else StatusReportStored
            events.append(kind(arguments[0], index))
            return
        if prefix in ("+CREG", "+CGREG", "+CEREG"):
            status = _int_or_none(arguments[0])
            if status is None:
                events.append(MalformedUnsolicited(line, "no registration status"))
                return
            area = arguments[1] if len(arguments) > 1 else None
            cell = arguments[2] if len(arguments) > 2 else None
            events.append(RegistrationChanged(prefix, status, area, cell))
            return
        if prefix == "^RSSI":
            rssi = _int_or_none(arguments[0])
            if rssi is None:
                events.append(MalformedUnsolicited(line, "no signal value"))
                return
            events.append(SignalChanged(rssi))
            return
        events.append(Unsolicited(line))
