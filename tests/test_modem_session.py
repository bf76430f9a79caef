"""The modem session against the emulator, both sans-IO, wired back to back in memory with a
clock the test moves: start-up, PIN handling, sending with TP-MR, status reports, MO (stored
and routed, multipart), faults."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from modems.emulator import EmulatedModem, ModemSettings
from modems.errors import FailureKind
from modems.session import (
    MessageReceived,
    MessageSent,
    ModemSession,
    NotReady,
    Ready,
    RegistrationUpdate,
    SendFailed,
    SessionEvent,
    SessionSettings,
    SessionState,
    SignalUpdate,
    StatusReportReceived,
    Stopped,
    UnreadableMessage,
    Unresponsive,
)
from modems.tpdu import (
    Address,
    SmsDeliver,
    SmsSubmit,
    StatusGroup,
    split_text_user_data,
)


class BackToBack:
    def __init__(
        self,
        modem: ModemSettings | None = None,
        session: SessionSettings | None = None,
    ) -> None:
        self.modem = EmulatedModem(modem)
        self.session = ModemSession(session)
        self.now = 1000.0
        self.events: list[SessionEvent] = []

    def start(self) -> BackToBack:
        self.events += self.session.start(self.now)
        self.pump()
        return self

    def pump(self) -> None:
        for _ in range(10_000):
            out = self.session.outgoing()
            if out:
                self.modem.feed(out, self.now)
            back = self.modem.outgoing()
            if back:
                self.events += self.session.feed(back, self.now)
            if not out and not back:
                return
        raise AssertionError("the two sides never went quiet")

    def advance(self, seconds: float) -> None:
        target = self.now + seconds
        for _ in range(10_000):
            due = [
                d
                for d in (self.session.deadline(), self.modem.deadline())
                if d is not None and d <= target
            ]
            if not due:
                break
            self.now = max(self.now, min(due))
            self.modem.tick(self.now)
            self.events += self.session.check_timers(self.now)
            self.pump()
        self.now = target

    def of(self, kind: type) -> list:  # type: ignore[type-arg]
        return [event for event in self.events if isinstance(event, kind)]

    def send_text(self, key: str, text: str, to: str = "+447700900456") -> None:
        tpdus = [
            SmsSubmit(Address.parse(to), part, status_report_request=True).encode()
            for part in split_text_user_data(text, reference=key.__hash__() & 0xFF)
        ]
        self.session.send(key, tpdus, self.now)
        self.pump()


def test_start_up_reaches_ready_with_echo_on() -> None:
    bench = BackToBack().start()
    (ready,) = bench.of(Ready)
    assert ready == Ready("Tandem Sim", 1, 20)
    assert bench.session.state is SessionState.READY
    assert bench.modem.commands[:3] == ["ATE0", "AT+CMEE=1", "AT+CPIN?"]
    assert "AT+CMGF=0" in bench.modem.commands
    assert "AT+CNMI=2,1,0,2,0" in bench.modem.commands
    assert bench.of(SignalUpdate)[0].dbm == -73
    assert not bench.modem.echo


def test_pin_is_entered_once() -> None:
    bench = BackToBack(ModemSettings(pin="1234"), SessionSettings(pin="1234")).start()
    assert bench.of(Ready)
    assert bench.modem.pin_attempts == ["1234"]


def test_wrong_pin_stops_for_good_without_a_second_try() -> None:
    bench = BackToBack(ModemSettings(pin="1234"), SessionSettings(pin="0000")).start()
    (stopped,) = bench.of(Stopped)
    assert stopped.fatal and "PIN" in stopped.reason
    bench.advance(3600)
    assert bench.modem.pin_attempts == ["0000"]
    assert bench.modem.sim_state == "SIM PIN"  # two tries left on the SIM
    assert bench.session.deadline() is None


def test_missing_pin_and_puk_stop_without_any_try() -> None:
    bench = BackToBack(ModemSettings(pin="1234")).start()
    assert bench.of(Stopped)[0].fatal
    puk = EmulatedModem(ModemSettings(pin="1234"))
    puk.sim_state = "SIM PUK"
    bench = BackToBack(ModemSettings(pin="1234"), SessionSettings(pin="1234"))
    bench.modem = puk
    bench.start()
    assert bench.of(Stopped)[0].fatal and "PUK" in bench.of(Stopped)[0].reason
    assert puk.pin_attempts == []


def test_a_sim_busy_after_its_pin_is_not_a_fatal_stop() -> None:
    bench = BackToBack(ModemSettings(pin="1234"), SessionSettings(pin="1234"))
    bench.modem.faults.sim_busy = 1
    bench.start()
    (stopped,) = bench.of(Stopped)
    assert not stopped.fatal and "314" in stopped.reason
    again = BackToBack(session=SessionSettings(pin="1234"))
    again.modem = bench.modem  # the next start, the SIM ready now: no PIN entered again
    again.start()
    assert again.of(Ready)
    assert bench.modem.pin_attempts == ["1234"]


def test_a_modem_without_pdu_mode_stops_for_good() -> None:
    bench = BackToBack(ModemSettings(pdu_mode_supported=False)).start()
    (stopped,) = bench.of(Stopped)
    assert stopped.fatal and "has no PDU mode" in stopped.reason


def test_waits_for_the_network_then_becomes_ready() -> None:
    bench = BackToBack(ModemSettings(registration=2)).start()
    assert bench.session.state is SessionState.WAITING_FOR_NETWORK
    assert not bench.of(Ready)
    bench.modem.set_registration(1)  # +CREG: 1 arrives as a URC
    bench.pump()
    assert bench.of(RegistrationUpdate)[-1].status == 1
    assert bench.of(Ready)


def test_send_returns_the_tp_mr_and_the_report_correlates() -> None:
    bench = BackToBack().start()
    bench.send_text("m1", "hello")
    assert bench.of(MessageSent) == [MessageSent("m1", (0,))]
    bench.advance(2.0)
    (report,) = bench.of(StatusReportReceived)
    assert report.report.message_reference == 0
    assert report.report.group is StatusGroup.COMPLETED
    assert str(report.report.recipient) == "+447700900456"
    assert report.storage_index is not None  # +CDSI: stored, read with +CMGR
    bench.session.delete([report.storage_index], bench.now)
    bench.pump()
    assert bench.modem.storage == {}


def test_multipart_send_gets_one_tp_mr_per_part_and_a_report_for_each() -> None:
    bench = BackToBack().start()
    bench.send_text("first", "one part")
    bench.send_text("long", "x" * 400)
    assert bench.of(MessageSent) == [MessageSent("first", (0,)), MessageSent("long", (1, 2, 3))]
    sent = bench.modem.sent
    assert [s.submit.user_data.concat.seqnum for s in sent[1:]] == [1, 2, 3]  # type: ignore[union-attr]
    bench.advance(2.0)
    references = sorted(r.report.message_reference for r in bench.of(StatusReportReceived))
    assert references == [0, 1, 2, 3]


def test_cms_errors_are_temporary_or_permanent() -> None:
    bench = BackToBack().start()
    bench.modem.fail_next_sends(38, 500, 21)
    for key in ("a", "b", "c"):
        bench.send_text(key, "hi")
    failures = bench.of(SendFailed)
    assert [(f.key, f.cms_error, f.kind) for f in failures] == [
        ("a", 38, FailureKind.TEMPORARY),
        ("b", 500, FailureKind.TEMPORARY),
        ("c", 21, FailureKind.PERMANENT),
    ]
    assert "network out of order" in failures[0].reason


def test_a_failed_part_stops_the_rest_of_its_message() -> None:
    bench = BackToBack().start()
    bench.send_text("ok", "fine")
    bench.modem.fail_next_sends(38)
    bench.send_text("long", "y" * 400)
    (failed,) = bench.of(SendFailed)
    assert failed.references == ()  # part 1 failed; parts 2 and 3 never went
    assert len(bench.modem.sent) == 1


def test_mo_stored_multipart_is_joined_and_deleted_when_kept() -> None:
    bench = BackToBack().start()
    text = "Lieber Kunde, " * 20 + "€ {ok}"
    parts = bench.modem.inject_mo(text, "+491701234567")
    bench.pump()
    assert parts == 2
    (message,) = bench.of(MessageReceived)
    assert message.text == text and message.originator == "+491701234567"
    assert message.complete and len(message.storage_indexes) == 2
    assert message.service_centre_time == datetime(2026, 1, 1, 12, tzinfo=UTC)
    bench.session.delete(message.storage_indexes, bench.now)
    bench.pump()
    assert bench.modem.storage == {}


def test_mo_parts_come_one_by_one_when_the_caller_joins_them() -> None:
    bench = BackToBack(session=SessionSettings(join_parts=False)).start()
    text = "Lieber Kunde, " * 20 + "€ {ok}"
    assert bench.modem.inject_mo(text, "+491701234567") == 2
    bench.pump()
    first, second = bench.of(MessageReceived)
    assert first.user_data[0].concat is not None and second.user_data[0].concat is not None
    assert [first.user_data[0].concat.seqnum, second.user_data[0].concat.seqnum] == [1, 2]
    assert first.user_data[0].concat.total == 2
    assert first.text + second.text == text
    assert len(first.storage_indexes) == len(second.storage_indexes) == 1
    bench.session.delete(first.storage_indexes + second.storage_indexes, bench.now)
    bench.pump()
    assert bench.modem.storage == {}


def test_mo_routed_with_cmt_and_reports_with_cds() -> None:
    bench = BackToBack(session=SessionSettings(new_message_indications="2,2,0,1,0")).start()
    bench.modem.inject_mo("Γειά 😀 " * 12, "Tandem", direct=True)
    bench.pump()
    (message,) = bench.of(MessageReceived)
    assert message.text == "Γειά 😀 " * 12
    assert message.originator == "Tandem"
    assert message.storage_indexes == ()
    assert bench.session.acknowledging and bench.modem.service == 1
    bench.send_text("m", "hi")
    bench.advance(2.0)
    assert not bench.of(StatusReportReceived)  # held back: the MO is not answered yet
    bench.session.acknowledge(message.acknowledgement, True, bench.now)
    bench.pump()
    (report,) = bench.of(StatusReportReceived)
    assert report.storage_index is None
    bench.session.acknowledge(report.acknowledgement, True, bench.now)
    bench.pump()
    answered = [(a.routed.kind, a.accepted) for a in bench.modem.acknowledgements]
    # Two parts: the first, held for its sibling, was answered at once (the modem routes no
    # next part before); the second, which completed the message, when the caller said so.
    assert answered == [("+CMT", True), ("+CMT", True), ("+CDS", True)]
    assert bench.modem.ack_timeouts == 0


def test_a_send_whose_answer_is_lost_may_have_gone() -> None:
    bench = BackToBack(session=SessionSettings(send_timeout=30.0)).start()
    bench.modem.drop_next_lines(2)  # +CMGS: 0 and OK
    bench.send_text("lost", "hi")
    bench.advance(31)
    (failed,) = bench.of(SendFailed)
    assert failed.maybe_sent and failed.kind is FailureKind.TEMPORARY
    assert len(bench.modem.sent) == 1
    bench.modem.drop_next_lines(1)  # +CMGS: 1 only: OK without a reference
    bench.send_text("no-mr", "hi")
    assert bench.of(SendFailed)[1].maybe_sent


def test_messages_stored_before_start_are_read_at_start_up() -> None:
    bench = BackToBack()
    bench.modem.inject_mo("waiting on the SIM")
    bench.start()
    (message,) = bench.of(MessageReceived)
    assert message.text == "waiting on the SIM"
    assert message.storage_indexes == (0,)


def test_a_garbage_stored_pdu_is_reported_not_lost() -> None:
    bench = BackToBack()
    bench.modem.inject_pdu(b"\x00\x01")
    bench.start()
    (unreadable,) = bench.of(UnreadableMessage)
    assert unreadable.storage_index == 0
    assert 0 in bench.modem.storage


def test_a_silent_modem_is_found_by_its_polls() -> None:
    settings = SessionSettings(signal_interval=5.0, command_timeout=2.0)
    bench = BackToBack(session=settings).start()
    bench.modem.go_silent()
    bench.advance(30)
    assert bench.of(Unresponsive) == [Unresponsive(2)]


def test_one_dropped_line_is_a_timeout_but_not_a_silent_modem() -> None:
    settings = SessionSettings(signal_interval=5.0, command_timeout=2.0)
    bench = BackToBack(session=settings).start()
    bench.modem.drop_next_lines(2)  # +CSQ and its OK
    bench.advance(30)
    assert not bench.of(Unresponsive)
    assert bench.session.state is SessionState.READY


def test_send_before_ready_is_refused() -> None:
    bench = BackToBack(ModemSettings(registration=0))
    bench.start()
    try:
        bench.session.send("k", [b"\x01"], bench.now)
    except NotReady:
        pass
    else:
        raise AssertionError("send before ready was accepted")


def test_incomplete_multipart_is_delivered_after_the_reassembly_timeout() -> None:
    settings = SessionSettings(reassembly_timeout=60.0, new_message_indications="2,2,0,2,0")
    bench = BackToBack(session=settings).start()
    part_one = split_text_user_data("z" * 200, reference=9)[0]
    deliver = SmsDeliver(Address.parse("+15551234"), datetime(2026, 1, 1, tzinfo=UTC), part_one)
    bench.modem.inject_pdu(deliver.encode(), direct=True)
    bench.pump()
    assert not bench.of(MessageReceived)
    bench.advance(61)
    (message,) = bench.of(MessageReceived)
    assert not message.complete and message.text == "z" * 153


@settings(deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=15), st.integers(0, 3))
def test_random_bytes_never_crash_the_session(chunks: list[bytes], ready_after: int) -> None:
    bench = BackToBack()
    if ready_after:
        bench.start()
    session = bench.session
    now = bench.now
    for chunk in chunks:
        session.feed(chunk, now)
        now += 3.0
        session.check_timers(now)
        session.outgoing()


LIKELY_LINES = [
    b"OK\r\n",
    b"ERROR\r\n",
    b"+CPIN: READY\r\n",
    b"+CPIN: SIM PIN\r\n",
    b"+CREG: 0,1\r\n",
    b"+CREG: x\r\n",
    b"+CSQ: 99,99\r\n",
    b"+CSQ: ,\r\n",
    b"+COPS: 0,0\r\n",
    b"+CMGS: 300\r\n",
    b"+CMGS: \r\n",
    b"+CMGL: 1,1,,5\r\n0001000000\r\n",
    b"+CMGL: x\r\nzz\r\n",
    b"+CMGR: 1,,5\r\n0004\r\n",
    b'+CMTI: "SM",5\r\n',
    b"+CDS: 5\r\n00060000\r\n",
    b"> ",
    b"+CMS ERROR: 38\r\n",
]


@settings(deadline=None)
@given(st.lists(st.sampled_from(LIKELY_LINES), max_size=40))
def test_plausible_but_wrong_answers_never_crash_the_session(lines: list[bytes]) -> None:
    session = ModemSession()
    now = 0.0
    session.start(now)
    for line in lines:
        session.feed(line, now)
        now += 1.0
        session.check_timers(now)
        session.outgoing()
    if session.state is SessionState.READY:
        session.send("k", [b"\x01\x00\x01\x91\x00\x00\x00"], now)


@settings(deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=15))
def test_random_bytes_never_crash_the_emulator(chunks: list[bytes]) -> None:
    modem = EmulatedModem()
    for chunk in chunks:
        modem.feed(chunk + b"\r", 0.0)
        modem.outgoing()
    modem.feed(b"AT+CMGS=10\r" + chunks[0] + b"\x1a" if chunks else b"AT\r", 0.0)
    modem.tick(100.0)


# --- routed messages and +CNMA (TS 27.005 3.4.4) ----------------------------------------------

DIRECT = SessionSettings(new_message_indications="2,2,0,1,0", join_parts=False)


def direct_bench(**modem: object) -> BackToBack:
    return BackToBack(ModemSettings(**modem), DIRECT).start()  # type: ignore[arg-type]


def test_a_routed_mo_waits_for_the_callers_answer_and_holds_back_the_next() -> None:
    bench = direct_bench()
    assert "AT+CSMS=1" in bench.modem.commands and bench.session.acknowledging
    bench.modem.inject_mo("first", direct=True)
    bench.modem.inject_mo("second", direct=True)
    bench.pump()
    (first,) = bench.of(MessageReceived)
    assert first.text == "first" and first.acknowledgement is not None
    assert bench.modem.acknowledgements == []  # nothing is answered before the caller says so
    bench.session.acknowledge(first.acknowledgement, True, bench.now)
    bench.pump()
    first_again, second = bench.of(MessageReceived)
    assert first_again is first and second.text == "second"
    assert "AT+CNMA" in bench.modem.commands
    bench.session.acknowledge(second.acknowledgement, True, bench.now)
    bench.pump()
    assert [a.accepted for a in bench.modem.acknowledgements] == [True, True]
    bench.advance(60)
    assert bench.modem.ack_timeouts == 0 and bench.modem.redelivered == 0


def test_a_routed_mo_not_kept_is_refused_with_rp_error_and_offered_again() -> None:
    bench = direct_bench(redelivery_delay=5.0)
    bench.modem.inject_mo("keep me", direct=True)
    bench.pump()
    (offered,) = bench.of(MessageReceived)
    bench.session.acknowledge(offered.acknowledgement, False, bench.now)
    bench.pump()
    (refusal,) = bench.modem.acknowledgements
    assert not refusal.accepted and refusal.failure_cause == 0xFF  # TP-FCS unspecified
    assert any(line.startswith("AT+CNMA=2,3") for line in bench.modem.commands)
    bench.advance(6)
    offered, again = bench.of(MessageReceived)
    assert again.text == "keep me" and again.acknowledgement != offered.acknowledgement
    bench.session.acknowledge(again.acknowledgement, True, bench.now)
    bench.pump()
    assert [a.accepted for a in bench.modem.acknowledgements] == [False, True]
    assert bench.modem.redelivered == 1


def test_a_modem_that_takes_no_report_gets_a_bare_rp_error() -> None:
    bench = direct_bench(cnma_report_supported=False)
    bench.modem.inject_mo("no report", direct=True)
    bench.pump()
    (offered,) = bench.of(MessageReceived)
    bench.session.acknowledge(offered.acknowledgement, False, bench.now)
    bench.pump()
    (refusal,) = bench.modem.acknowledgements
    assert not refusal.accepted and refusal.failure_cause is None
    assert "AT+CNMA=2" in bench.modem.commands


def test_answers_go_out_in_arrival_order_whatever_order_the_caller_answers_in() -> None:
    bench = direct_bench()
    session = bench.session
    deliver = SmsDeliver(
        Address.parse("+15551234"),
        datetime(2026, 1, 1, tzinfo=UTC),
        split_text_user_data("x")[0],
    )
    routed = f"\r\n+CMT: ,{len(deliver.encode())}\r\n00{deliver.encode().hex().upper()}\r\n"
    bench.events += session.feed(routed.encode() * 2, bench.now)
    first, second = bench.of(MessageReceived)
    session.acknowledge(second.acknowledgement, False, bench.now)
    assert b"CNMA" not in session.outgoing()  # the first is still unanswered
    session.acknowledge(first.acknowledgement, True, bench.now)
    assert session.outgoing() == b"AT+CNMA\r"


def test_an_unanswered_routed_mo_times_out_and_the_modem_turns_routing_off() -> None:
    bench = direct_bench(ack_timeout=5.0, redelivery_delay=2.0)
    bench.modem.inject_mo("nobody answers", direct=True)
    bench.pump()
    bench.advance(6)
    assert bench.modem.ack_timeouts == 1
    assert bench.modem.cnmi[1] == 0 and bench.modem.cnmi[3] == 0  # TS 27.005: routing off
    bench.advance(3)
    assert bench.modem.redelivered == 1 and len(bench.modem.storage) == 1  # stored, unannounced


def test_a_late_answer_sets_routing_again_and_reads_what_was_stored_meanwhile() -> None:
    from modems.session import AcknowledgementRefused

    bench = direct_bench(ack_timeout=5.0, redelivery_delay=2.0)
    bench.modem.inject_mo("slow to keep", direct=True)
    bench.pump()
    (offered,) = bench.of(MessageReceived)
    bench.advance(8)  # the modem gave up; the network's next offer is on the SIM
    bench.session.acknowledge(offered.acknowledgement, True, bench.now)
    bench.pump()
    (late,) = bench.of(AcknowledgementRefused)
    assert late.routing_lost and "340" in late.reason
    assert bench.modem.cnmi == (2, 2, 0, 1, 0)
    offered, stored = bench.of(MessageReceived)
    assert stored.text == "slow to keep" and stored.storage_indexes == (0,)


def test_a_routed_pdu_that_does_not_decode_is_reported_with_its_answer_token() -> None:
    bench = direct_bench()
    bench.modem.inject_pdu(b"\x00\x01", direct=True)
    bench.pump()
    (unreadable,) = bench.of(UnreadableMessage)
    assert unreadable.storage_index is None and unreadable.acknowledgement is not None
    assert unreadable.pdu.endswith(b"\x00\x01")


def test_an_answer_goes_before_queued_commands_and_gets_its_own_result() -> None:
    from modems.session import AcknowledgementRefused

    bench = direct_bench()
    session = bench.session
    deliver = SmsDeliver(
        Address.parse("+15551234"),
        datetime(2026, 1, 1, tzinfo=UTC),
        split_text_user_data("x")[0],
    ).encode()
    session.delete([1, 2], bench.now)  # AT+CMGD=1 runs, AT+CMGD=2 waits
    assert session.outgoing() == b"AT+CMGD=1\r"
    routed = f"\r\n+CMT: ,{len(deliver)}\r\n00{deliver.hex().upper()}\r\n"
    bench.events += session.feed(routed.encode(), bench.now)
    (message,) = bench.of(MessageReceived)
    session.acknowledge(message.acknowledgement, True, bench.now)
    assert session.outgoing() == b""  # AT+CMGD=1 still runs
    bench.events += session.feed(b"\r\nOK\r\n", bench.now)
    assert session.outgoing() == b"AT+CNMA\r"
    bench.events += session.feed(b"\r\nOK\r\n", bench.now)
    assert session.outgoing() == b"AT+CMGD=2\r"
    bench.events += session.feed(b"\r\n+CMS ERROR: 321\r\n", bench.now)
    assert not bench.of(AcknowledgementRefused)  # the error was the delete's, not the answer's


def test_a_routed_mo_the_caller_never_answers_is_given_up_and_routing_set_again() -> None:
    from modems.session import AcknowledgementRefused

    settings = SessionSettings(
        new_message_indications="2,2,0,1,0", join_parts=False, acknowledgement_wait=30.0
    )
    bench = BackToBack(ModemSettings(ack_timeout=20.0, redelivery_delay=2.0), settings).start()
    bench.modem.inject_mo("forgotten", direct=True)
    bench.pump()
    bench.advance(31)
    (given_up,) = bench.of(AcknowledgementRefused)
    assert given_up.routing_lost and "30" in given_up.reason
    assert bench.modem.cnmi == (2, 2, 0, 1, 0)  # set again after the modem turned it off
    _, stored = bench.of(MessageReceived)
    assert stored.text == "forgotten" and stored.storage_indexes == (0,)
    # A later routed MO is not held behind the forgotten one.
    bench.modem.inject_mo("next", direct=True)
    bench.pump()
    latest = bench.of(MessageReceived)[-1]
    bench.session.acknowledge(latest.acknowledgement, True, bench.now)
    bench.pump()
    assert bench.modem.acknowledgements[-1].accepted


@settings(deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(
                [
                    *LIKELY_LINES,
                    b"+CMT: ,5\r\n00040000\r\n",
                    b"+CMT: ,5\r\nnot hex\r\n",
                    b"+CMS ERROR: 340\r\n",
                    b"+CSMS: 1,1,1\r\n",
                ]
            ),
            st.tuples(st.integers(0, 12), st.booleans()),
        ),
        max_size=40,
    )
)
def test_answers_in_any_order_never_crash_an_acknowledging_session(
    steps: list[bytes | tuple[int, bool]],
) -> None:
    session = ModemSession(DIRECT)
    session.acknowledging = True
    now = 0.0
    session.start(now)
    for step in steps:
        if isinstance(step, tuple):
            session.acknowledge(step[0], step[1], now)
        else:
            session.feed(step, now)
        now += 7.0
        session.check_timers(now)
        session.outgoing()
