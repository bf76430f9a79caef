"""A GSM modem emulator: the AT commands a modem link uses, in PDU mode, over a real pty.

Owns `EmulatedModem`, a sans-IO modem (bytes in, bytes out, `now` passed in, `deadline()` for its
own timers: delayed status reports). `modems.emulator_io` holds its asyncio adapters: `PtyModem`
gives it a pseudo-terminal whose slave side is the device path a link opens, exactly as it would
open /dev/ttyUSB0; `serve_tcp_modem` a TCP port; `run_pty_modem` runs one standalone
(`tandem sim modem`).

What it does: echo (ATE0/ATE1), AT+CMEE, +CPIN (PIN entry, wrong PINs counted, PUK after three),
+CFUN (AT+CFUN=1,1 reboots it, and revives it when it went silent),
+CREG/+CEREG (with URCs), +COPS, +CSQ, +CMGF (PDU mode only), +CNMI (+CMTI stored or +CMT direct
MO, +CDS direct or +CDSI stored reports), +CSMS and +CNMA (below), +CSCA, +CPMS,
+CMGL/+CMGR/+CMGD, +CMGS (decodes the SMS-SUBMIT, answers its TP-MR, and sends an
SMS-STATUS-REPORT after a delay when asked), MO injection (multipart too), and faults: +CMS ERROR
on the next sends, a dropped response line, a silent modem, and (adapter) an unplug that closes
the pty and removes the device link.

Acknowledgement of routed messages (TS 27.005 3.4.4): with +CSMS service 1, each +CMT/+CDS waits
for the host's +CNMA and the next one is held back until then. An RP-ACK (AT+CNMA, =0, =1) ends
it; an RP-ERROR (AT+CNMA=2, with or without an SMS-DELIVER-REPORT PDU) makes the "network" offer
it again after `redelivery_delay`; no answer within `ack_timeout` is an RP-ERROR too, and the
modem turns routing off (+CNMI <mt> and <ds> to 0), so the next offer is stored unannounced, as
the standard says. Every answer is kept in `acknowledgements`, every timeout counted; the queue
of routed messages and its clocks is `modems.emulator_routing.RoutedQueue`.

Must never be a phone network: every report it sends is invented. Must never import gateway.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from modems.emulator_routing import Acknowledgement, Routed, RoutedQueue
from modems.tpdu import (
    Address,
    SmsDeliver,
    SmsStatusReport,
    SmsSubmit,
    TpduError,
    decode_submit,
    deliver_report_failure_cause,
    parse_hex,
    split_service_centre,
    split_text_user_data,
    with_service_centre,
)

CTRL_Z = 0x1A
ESC = 0x1B
MAX_PIN_ATTEMPTS = 3
MAX_INPUT_LINE = 1024

CME_OPERATION_NOT_ALLOWED = 3
CME_SIM_PIN_REQUIRED = 11
CME_SIM_PUK_REQUIRED = 12
CME_INCORRECT_PASSWORD = 16
CMS_INVALID_PDU_PARAMETER = 304
CMS_SIM_PIN_REQUIRED = 311
CMS_INVALID_MEMORY_INDEX = 321
CMS_NO_NETWORK = 331
CMS_NO_ACKNOWLEDGEMENT_EXPECTED = 340

STAT_UNREAD, STAT_READ = 0, 1


@dataclass(slots=True)
class StoredMessage:
    pdu: bytes  # with the service centre prefix, as +CMGL prints it
    tpdu_length: int
    stat: int = STAT_UNREAD


@dataclass(slots=True)
class SentMessage:
    """What the emulator took from one AT+CMGS, for tests to look at."""

    message_reference: int
    submit: SmsSubmit
    at: float


@dataclass(slots=True)
class ModemSettings:
    pin: str | None = None  # None: the SIM asks for no PIN
    operator: str = "Tandem Sim"
    service_centre: str = "+447785016005"
    signal: int = 20  # +CSQ rssi, 0-31
    registration: int = 1  # 1 home, 5 roaming, 0 not registered, 2 searching, 3 denied
    report_delay: float = 1.0  # seconds from +CMGS to the status report
    report_status: int = 0  # TP-Status of the reports (0: delivered)
    storage_size: int = 30
    echo: bool = True  # as a modem comes out of reset
    reset_command: str = "AT+CFUN=1,1"  # full functionality with a reset (TS 27.007 8.2)
    pdu_mode_supported: bool = True  # False: a text-mode-only modem (AT+CMGF=0 is an ERROR)
    ack_timeout: float = 10.0  # +CSMS service 1: how long a +CMT/+CDS waits for its +CNMA
    redelivery_delay: float = 1.0  # the network's next offer after an RP-ERROR
    cnma_report_supported: bool = True  # False: AT+CNMA=2,<length> is refused (bare =2 works)


@dataclass(slots=True)
class _Timer:
    at: float
    report: SmsStatusReport


@dataclass(slots=True)
class _Faults:
    send_errors: deque[int] = field(default_factory=deque)  # +CMS ERROR for the next +CMGS
    drop_lines: int = 0  # response lines to swallow
    silent: bool = False  # read everything, answer nothing
    reset_revives: bool = True  # the reset command brings a silent modem back
    sim_busy: int = 0  # the next SMS commands answer +CMS ERROR: 314 (SIM busy), as after a PIN


class EmulatedModem:
    """The modem's side of the serial line. Feed it what the host writes (`feed`), write
    `outgoing()` back; call `tick(now)` at `deadline()`."""

    def __init__(self, settings: ModemSettings | None = None) -> None:
        self.settings = settings or ModemSettings()
        self.echo = self.settings.echo
        self.cmee = 0
        self.sim_state = "SIM PIN" if self.settings.pin else "READY"
        self.pin_attempts: list[str] = []  # every PIN the host tried, in order
        self.creg_mode = 0
        self.cereg_mode = 0
        self.pdu_mode = True
        self.cnmi = (0, 0, 0, 0, 0)
        self.service_centre = self.settings.service_centre
        self.storage: dict[int, StoredMessage] = {}
        self.sent: list[SentMessage] = []
        self.commands: list[str] = []  # every command line received, for tests
        self.resets = 0
        self.faults = _Faults()
        self._out = bytearray()
        self._line = bytearray()
        self._pdu_expected: int | None = None  # octets announced by AT+CMGS=<n>
        self._next_reference = 0
        self._mo_reference = 0
        self._timers: list[_Timer] = []
        self.service = 0  # +CSMS: 1 routes +CMT/+CDS only after the host's +CNMA
        self.routing = RoutedQueue()  # +CMT/+CDS waiting for +CNMA (service 1), and offers again
        self._pdu_command = "+CMGS"  # what the PDU after "> " is for
        self._cnma_accepted = False

    # --- the byte stream -------------------------------------------------------------------

    def outgoing(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    def feed(self, data: bytes, now: float) -> None:
        self._start_clocks(now)
        if self.faults.silent:
            self._listen_for_reset(data)
            return
        if self.echo:
            self._out += data
        for byte in data:
            if self._pdu_expected is not None:
                self._pdu_byte(byte, now)
            elif byte == 0x0D:
                line = self._line.decode("latin-1").strip()
                self._line.clear()
                if line:
                    self._command(line, now)
            elif byte != 0x0A and len(self._line) < MAX_INPUT_LINE:
                self._line.append(byte)

    def deadline(self) -> float | None:
        if self.routing.clocks_to_start():
            return 0.0  # something was shown or refused between calls: tick now to time it
        times = [timer.at for timer in self._timers] + self.routing.deadlines()
        return min(times, default=None)

    def tick(self, now: float) -> None:
        self._start_clocks(now)
        due = [timer for timer in self._timers if timer.at <= now]
        self._timers = [timer for timer in self._timers if timer.at > now]
        for timer in due:
            self._deliver_report(timer.report)
        if self.routing.time_out(now, self.settings.redelivery_delay):
            # TS 27.005 3.4.4: RP-ERROR to the network, and routing to the host turned off.
            self.cnmi = (self.cnmi[0], 0, self.cnmi[2], 0, self.cnmi[4])
            self._show_next()
        for routed in self.routing.due_offers(now):
            if routed.kind == "+CMT":
                self._receive(routed.tpdu, direct=True)
            else:
                self._deliver_tpdu_report(routed.tpdu)

    def _start_clocks(self, now: float) -> None:
        settings = self.settings
        self.routing.start_clocks(now, settings.ack_timeout, settings.redelivery_delay)

    @property
    def acknowledgements(self) -> list[Acknowledgement]:
        """Every +CNMA the host sent, in order."""
        return self.routing.acknowledgements

    @property
    def ack_timeouts(self) -> int:
        return self.routing.ack_timeouts

    @property
    def redelivered(self) -> int:
        return self.routing.redelivered

    # --- what tests and the CLI do to it ---------------------------------------------------

    def inject_mo(
        self,
        text: str,
        originator: str = "+447700900123",
        *,
        direct: bool = False,
        when: datetime | None = None,
    ) -> int:
        """A mobile-originated message arrives (split into parts as a phone would). Stored and
        announced by +CMTI, or (direct) given by +CMT, whatever +CNMI says; returns the parts."""
        self._mo_reference = (self._mo_reference + 1) % 256
        moment = when or datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
        parts = split_text_user_data(text, reference=self._mo_reference)
        for user_data in parts:
            deliver = SmsDeliver(Address.parse(originator), moment, user_data)
            self._receive(deliver.encode(), direct=direct)
        return len(parts)

    def inject_pdu(self, tpdu: bytes, *, direct: bool = False) -> None:
        """A received TPDU (SMS-DELIVER or SMS-STATUS-REPORT) arrives as it is."""
        self._receive(tpdu, direct=direct)

    def fail_next_sends(self, *cms_codes: int) -> None:
        """The next AT+CMGS commands answer +CMS ERROR with these codes, in order."""
        self.faults.send_errors.extend(cms_codes)

    def drop_next_lines(self, count: int = 1) -> None:
        """Swallow the next `count` response lines (a final OK, say), as a flaky line does."""
        self.faults.drop_lines += count

    def go_silent(self, silent: bool = True, *, reset_revives: bool = True) -> None:
        """Stop answering anything, as a hung modem does; False to recover. While silent it
        only notices the reset command (`ModemSettings.reset_command`), which revives it
        unless `reset_revives` is False (a modem only a power cut brings back)."""
        self.faults.silent = silent
        self.faults.reset_revives = reset_revives
        self._line.clear()
        self._pdu_expected = None

    def _listen_for_reset(self, data: bytes) -> None:
        for byte in data:
            if byte != 0x0D:
                if byte != 0x0A and len(self._line) < MAX_INPUT_LINE:
                    self._line.append(byte)
                continue
            line = self._line.decode("latin-1").strip()
            self._line.clear()
            if line.upper() == self.settings.reset_command.upper():
                self.commands.append(line)
                if self.faults.reset_revives:
                    self.reset()

    def reset(self) -> None:
        """What a power cycle does: volatile settings back to their defaults."""
        self.faults.silent = False
        self.echo = self.settings.echo
        self.cmee = 0
        self.sim_state = "SIM PIN" if self.settings.pin else "READY"
        self.creg_mode = self.cereg_mode = 0
        self.cnmi = (0, 0, 0, 0, 0)
        self.service = 0
        self.routing.offer_all_again()  # never answered: the network tries again
        self._line.clear()
        self._pdu_expected = None
        self.resets += 1

    def set_registration(self, status: int) -> None:
        self.settings.registration = status
        self._registration_urcs()

    # --- output ----------------------------------------------------------------------------

    def _emit(self, line: str) -> None:
        if self.faults.drop_lines:
            self.faults.drop_lines -= 1
            return
        self._out += b"\r\n" + line.encode("latin-1", "replace") + b"\r\n"

    def _emit_pdu(self, header: str, pdu: bytes) -> None:
        """A header line and its PDU line, with no blank line between, as modems write them."""
        self._emit(header + "\r\n" + pdu.hex().upper())

    def _ok(self) -> None:
        self._emit("OK")

    def _error(self) -> None:
        self._emit("ERROR")

    def _cme(self, code: int, text: str) -> None:
        if self.cmee == 1:
            self._emit(f"+CME ERROR: {code}")
        elif self.cmee == 2:
            self._emit(f"+CME ERROR: {text}")
        else:
            self._error()

    def _cms(self, code: int) -> None:
        self._emit(f"+CMS ERROR: {code}")

    # --- commands --------------------------------------------------------------------------

    def _command(self, line: str, now: float) -> None:
        if line[:2].upper() != "AT":
            return  # a modem ignores what does not start with AT
        self.commands.append(line)
        body = line[2:].strip()
        upper = body.upper()
        if upper in ("", "Z", "&F"):
            if upper:
                self.reset()
            self._ok()
            return
        if upper in ("E0", "E1"):
            self.echo = upper == "E1"
            self._ok()
            return
        if upper in ("I", "+CGMI", "+CGMM", "+CGMR", "+CGSN", "+CIMI"):
            self._emit(_IDENTITY[upper])
            self._ok()
            return
        name, _, argument = _split_command(upper, body)
        handler = _HANDLERS.get(name)
        if handler is None:
            self._error()
            return
        handler(self, argument, now)

    def _sim_ready(self, sms: bool = False) -> bool:
        if self.sim_state == "READY":
            return True
        if sms:
            self._cms(CMS_SIM_PIN_REQUIRED)
        elif self.sim_state == "SIM PUK":
            self._cme(CME_SIM_PUK_REQUIRED, "SIM PUK required")
        else:
            self._cme(CME_SIM_PIN_REQUIRED, "SIM PIN required")
        return False

    def _cmee(self, argument: str, now: float) -> None:
        if argument in ("0", "1", "2"):
            self.cmee = int(argument)
            self._ok()
        elif argument == "?":
            self._emit(f"+CMEE: {self.cmee}")
            self._ok()
        else:
            self._error()

    def _cpin(self, argument: str, now: float) -> None:
        if argument == "?":
            self._emit(f"+CPIN: {self.sim_state}")
            self._ok()
            return
        pin = argument.split(",")[0].strip().strip('"')
        if self.sim_state == "READY":
            self._cme(CME_OPERATION_NOT_ALLOWED, "operation not allowed")
            return
        if self.sim_state == "SIM PUK":
            self._cme(CME_SIM_PUK_REQUIRED, "SIM PUK required")
            return
        self.pin_attempts.append(pin)
        if pin == self.settings.pin:
            self.sim_state = "READY"
            self._ok()
            self._registration_urcs()
            return
        wrong = sum(1 for tried in self.pin_attempts if tried != self.settings.pin)
        if wrong >= MAX_PIN_ATTEMPTS:
            self.sim_state = "SIM PUK"
        self._cme(CME_INCORRECT_PASSWORD, "incorrect password")

    def _registration_status(self) -> int:
        return self.settings.registration if self.sim_state == "READY" else 0

    def _registration_line(self, prefix: str, mode: int, solicited: bool) -> str:
        fields = [str(self._registration_status())]
        if mode == 2:
            fields += ['"00C3"', '"0D2B"']
        if solicited:
            fields.insert(0, str(mode))
        return f"{prefix}: {','.join(fields)}"

    def _registration_urcs(self) -> None:
        if self.creg_mode:
            self._emit(self._registration_line("+CREG", self.creg_mode, False))
        if self.cereg_mode:
            self._emit(self._registration_line("+CEREG", self.cereg_mode, False))

    def _creg(self, argument: str, now: float) -> None:
        self._registration_command("+CREG", argument)

    def _cereg(self, argument: str, now: float) -> None:
        self._registration_command("+CEREG", argument)

    def _registration_command(self, prefix: str, argument: str) -> None:
        mode = self.creg_mode if prefix == "+CREG" else self.cereg_mode
        if argument == "?":
            self._emit(self._registration_line(prefix, mode, True))
            self._ok()
            return
        if argument not in ("0", "1", "2"):
            self._error()
            return
        if prefix == "+CREG":
            self.creg_mode = int(argument)
        else:
            self.cereg_mode = int(argument)
        self._ok()

    def _cops(self, argument: str, now: float) -> None:
        if argument == "?":
            if self._registration_status() in (1, 5):
                self._emit(f'+COPS: 0,0,"{self.settings.operator}",7')
            else:
                self._emit("+COPS: 0")
            self._ok()
            return
        self._ok()

    def _cfun(self, argument: str, now: float) -> None:
        if argument == "?":
            self._emit("+CFUN: 1")
            self._ok()
            return
        self._ok()
        if argument.replace(" ", "") == "1,1":
            self.reset()  # answered first, then rebooted, as modems do

    def _csq(self, argument: str, now: float) -> None:
        self._emit(f"+CSQ: {self.settings.signal},99")
        self._ok()

    def _cmgf(self, argument: str, now: float) -> None:
        if self.faults.sim_busy:
            self.faults.sim_busy -= 1
            self._cms(314)
            return
        if argument == "?":
            self._emit(f"+CMGF: {0 if self.pdu_mode else 1}")
            self._ok()
        elif argument == "0" and self.settings.pdu_mode_supported:
            self.pdu_mode = True
            self._ok()
        elif argument == "0":
            self._error()
        else:
            self._cms(303)  # text mode: not supported here

    def _cnmi(self, argument: str, now: float) -> None:
        if argument == "?":
            self._emit("+CNMI: " + ",".join(str(v) for v in self.cnmi))
            self._ok()
            return
        values = [part.strip() for part in argument.split(",")]
        if not all(value.isdigit() for value in values if value) or len(values) > 5:
            self._cms(CMS_INVALID_PDU_PARAMETER)
            return
        numbers = [int(value) if value else 0 for value in values] + [0] * (5 - len(values))
        self.cnmi = (numbers[0], numbers[1], numbers[2], numbers[3], numbers[4])
        self._ok()

    def _csms(self, argument: str, now: float) -> None:
        if argument == "?":
            self._emit(f"+CSMS: {self.service},1,1,1")
            self._ok()
        elif argument in ("0", "1"):
            self.service = int(argument)
            self._emit("+CSMS: 1,1,1")
            self._ok()
        else:
            self._cms(CMS_INVALID_PDU_PARAMETER)

    def _cnma(self, argument: str, now: float) -> None:
        if argument == "?":
            self._emit("+CNMA: (0-2)")
            self._ok()
            return
        values = [value.strip() for value in argument.split(",")] if argument else []
        kind = values[0] if values else "0"
        if kind not in ("0", "1", "2") or len(values) > 2:
            self._cms(CMS_INVALID_PDU_PARAMETER)
            return
        if self.routing.awaiting is None or self.service != 1:
            self._cms(CMS_NO_ACKNOWLEDGEMENT_EXPECTED)
            return
        if len(values) == 2:
            if not values[1].isdigit() or (kind == "2" and not self.settings.cnma_report_supported):
                self._cms(CMS_INVALID_PDU_PARAMETER)
                return
            self._pdu_command = "+CNMA"
            self._cnma_accepted = kind != "2"
            self._pdu_expected = int(values[1])
            self._out += b"\r\n> "
            return
        self._answer_routed(kind != "2", None, now)

    def _answer_routed(self, accepted: bool, failure_cause: int | None, now: float) -> None:
        if self.routing.awaiting is None:
            self._cms(CMS_NO_ACKNOWLEDGEMENT_EXPECTED)
            return
        self.routing.answer(accepted, failure_cause, now, self.settings.redelivery_delay)
        self._ok()
        self._show_next()

    def _csca(self, argument: str, now: float) -> None:
        if argument == "?":
            self._emit(f'+CSCA: "{self.service_centre}",145')
            self._ok()
            return
        self.service_centre = argument.split(",")[0].strip().strip('"')
        self._ok()

    def _cpms(self, argument: str, now: float) -> None:
        used, total = len(self.storage), self.settings.storage_size
        if argument == "?":
            self._emit(f'+CPMS: "SM",{used},{total},"SM",{used},{total},"SM",{used},{total}')
        else:
            self._emit(f"+CPMS: {used},{total},{used},{total},{used},{total}")
        self._ok()

    def _cmgl(self, argument: str, now: float) -> None:
        if not self._sim_ready(sms=True):
            return
        wanted = int(argument) if argument.isdigit() else 4
        for index in sorted(self.storage):
            message = self.storage[index]
            if wanted != 4 and message.stat != wanted:
                continue
            self._emit_pdu(f"+CMGL: {index},{message.stat},,{message.tpdu_length}", message.pdu)
            message.stat = STAT_READ
        self._ok()

    def _cmgr(self, argument: str, now: float) -> None:
        if not self._sim_ready(sms=True):
            return
        message = self.storage.get(int(argument)) if argument.isdigit() else None
        if message is None:
            self._cms(CMS_INVALID_MEMORY_INDEX)
            return
        self._emit_pdu(f"+CMGR: {message.stat},,{message.tpdu_length}", message.pdu)
        message.stat = STAT_READ
        self._ok()

    def _cmgd(self, argument: str, now: float) -> None:
        if not self._sim_ready(sms=True):
            return
        parts = [part.strip() for part in argument.split(",")]
        flag = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if flag == 4:
            self.storage.clear()
        elif flag in (1, 2, 3):  # read / read+sent / read+sent+unsent: all read ones here
            self.storage = {i: m for i, m in self.storage.items() if m.stat == STAT_UNREAD}
        elif parts[0].isdigit() and int(parts[0]) in self.storage:
            del self.storage[int(parts[0])]
        elif parts[0].isdigit():
            self._cms(CMS_INVALID_MEMORY_INDEX)
            return
        else:
            self._error()
            return
        self._ok()

    def _cmgs(self, argument: str, now: float) -> None:
        if not argument.isdigit() or not 7 <= int(argument) <= 164:
            self._cms(CMS_INVALID_PDU_PARAMETER)
            return
        if not self._sim_ready(sms=True):
            return
        self._pdu_expected = int(argument)
        self._out += b"\r\n> "

    def _pdu_byte(self, byte: int, now: float) -> None:
        if byte == ESC:
            self._pdu_expected = None
            self._pdu_command = "+CMGS"
            self._line.clear()
            self._ok()  # cancelled, as 27.005 says
            return
        if byte != CTRL_Z:
            if byte not in (0x0D, 0x0A) and len(self._line) < MAX_INPUT_LINE:
                self._line.append(byte)
            return
        expected, self._pdu_expected = self._pdu_expected, None
        text = self._line.decode("latin-1")
        self._line.clear()
        if self._pdu_command == "+CNMA":
            self._pdu_command = "+CMGS"
            self._report_pdu(text, expected or 0, now)
            return
        self._send_pdu(text, expected or 0, now)

    def _report_pdu(self, text: str, expected: int, now: float) -> None:
        """The SMS-DELIVER-REPORT after AT+CNMA=<n>,<length>: the TPDU alone, no SC address."""
        try:
            report = parse_hex(text)
        except TpduError:
            self._cms(CMS_INVALID_PDU_PARAMETER)
            return
        if len(report) != expected:
            self._cms(CMS_INVALID_PDU_PARAMETER)
            return
        cause = None
        if not self._cnma_accepted:
            try:
                cause = deliver_report_failure_cause(report)
            except TpduError:
                self._cms(CMS_INVALID_PDU_PARAMETER)
                return
        self._answer_routed(self._cnma_accepted, cause, now)

    def _send_pdu(self, text: str, expected: int, now: float) -> None:
        try:
            _, tpdu = split_service_centre(parse_hex(text))
            submit = decode_submit(tpdu)
        except TpduError:
            self._cms(CMS_INVALID_PDU_PARAMETER)
            return
        if len(tpdu) != expected:
            self._cms(CMS_INVALID_PDU_PARAMETER)
            return
        if self.faults.send_errors:
            self._cms(self.faults.send_errors.popleft())
            return
        if self._registration_status() not in (1, 5):
            self._cms(CMS_NO_NETWORK)
            return
        reference = self._next_reference
        self._next_reference = (self._next_reference + 1) % 256
        self.sent.append(SentMessage(reference, submit, now))
        self._emit(f"+CMGS: {reference}")
        self._ok()
        if submit.status_report_request:
            moment = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
            report = SmsStatusReport(
                reference,
                submit.destination,
                moment,
                moment,
                self.settings.report_status,
            )
            self._timers.append(_Timer(now + self.settings.report_delay, report))

    # --- arrivals --------------------------------------------------------------------------

    def _store(self, tpdu: bytes) -> int | None:
        if len(self.storage) >= self.settings.storage_size:
            return None
        index = next(i for i in range(self.settings.storage_size) if i not in self.storage)
        pdu = with_service_centre(tpdu, Address.parse(self.service_centre))
        self.storage[index] = StoredMessage(pdu, len(tpdu))
        return index

    def _receive(self, tpdu: bytes, *, direct: bool) -> None:
        mode = self.cnmi[1]
        if direct and mode in (2, 3):
            self._route(Routed("+CMT", tpdu))
            return
        index = self._store(tpdu)
        if index is not None and mode in (1, 2, 3):
            self._emit(f'+CMTI: "SM",{index}')

    def _deliver_report(self, report: SmsStatusReport) -> None:
        self._deliver_tpdu_report(report.encode())

    def _deliver_tpdu_report(self, tpdu: bytes) -> None:
        mode = self.cnmi[3]
        if mode == 1:
            self._route(Routed("+CDS", tpdu))
            return
        index = self._store(tpdu)
        if index is not None and mode == 2:
            self._emit(f'+CDSI: "SM",{index}')

    def _route(self, routed: Routed) -> None:
        """Show a +CMT/+CDS; with service 1, one at a time, each waiting for its +CNMA."""
        if self.service != 1:
            self._show(routed)
            return
        if self.routing.await_or_hold(routed):
            self._show(routed)

    def _show_next(self) -> None:
        while (routed := self.routing.next_held()) is not None:
            if routed.kind == "+CMT" and self.cnmi[1] not in (2, 3):
                self._receive(routed.tpdu, direct=False)  # routing went off meanwhile
            elif routed.kind == "+CDS" and self.cnmi[3] != 1:
                self._deliver_tpdu_report(routed.tpdu)
            else:
                self._route(routed)

    def _show(self, routed: Routed) -> None:
        pdu = with_service_centre(routed.tpdu, Address.parse(self.service_centre))
        if routed.kind == "+CMT":
            self._emit_pdu(f"+CMT: ,{len(routed.tpdu)}", pdu)
        else:
            self._emit_pdu(f"+CDS: {len(routed.tpdu)}", pdu)


_IDENTITY = {
    "I": "Tandem emulated GSM modem",
    "+CGMI": "Tandem",
    "+CGMM": "Emulated modem",
    "+CGMR": "1.0",
    "+CGSN": "356938035643809",
    "+CIMI": "234150000000001",
}


def _split_command(upper: str, body: str) -> tuple[str, str, str]:
    """("+CPIN", "=", '"1234"') / ("+CPIN", "?", "?"): name, operator, argument (case kept)."""
    for position, char in enumerate(upper):
        if char in "=?":
            name = upper[:position]
            rest = body[position + 1 :].strip()
            if char == "?" or rest == "?":
                return name, "?", "?"
            return name, "=", rest
    return upper, "", ""


_HANDLERS = {
    "+CMEE": EmulatedModem._cmee,
    "+CPIN": EmulatedModem._cpin,
    "+CREG": EmulatedModem._creg,
    "+CEREG": EmulatedModem._cereg,
    "+COPS": EmulatedModem._cops,
    "+CSQ": EmulatedModem._csq,
    "+CFUN": EmulatedModem._cfun,
    "+CMGF": EmulatedModem._cmgf,
    "+CNMI": EmulatedModem._cnmi,
    "+CSMS": EmulatedModem._csms,
    "+CNMA": EmulatedModem._cnma,
    "+CSCA": EmulatedModem._csca,
    "+CPMS": EmulatedModem._cpms,
    "+CMGL": EmulatedModem._cmgl,
    "+CMGR": EmulatedModem._cmgr,
    "+CMGD": EmulatedModem._cmgd,
    "+CMGS": EmulatedModem._cmgs,
}
