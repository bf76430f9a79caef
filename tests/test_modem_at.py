"""The AT channel: one command at a time, final result codes, the +CMGS prompt, URCs anywhere,
timeouts as data, and the +CMS ERROR table."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modems.at import (
    AtChannel,
    AtCommand,
    AtEvent,
    CommandCompleted,
    CommandTimedOut,
    FinalResult,
    MalformedUnsolicited,
    MessageArrived,
    MessageStored,
    RegistrationChanged,
    ResultKind,
    Ring,
    SignalChanged,
    StatusReportArrived,
    StatusReportStored,
    StrayResult,
    Unsolicited,
    parse_final_result,
)
from modems.errors import (
    CMS_ERROR_NAMES,
    FailureKind,
    cms_error_name,
    cms_failure_kind,
)

NOW = 100.0


def started(*commands: AtCommand) -> AtChannel:
    channel = AtChannel()
    for command in commands:
        channel.send(command, NOW)
    return channel


def test_commands_go_one_at_a_time() -> None:
    channel = started(AtCommand("ATE0"), AtCommand("AT+CMEE=1"))
    assert channel.outgoing() == b"ATE0\r"
    events = channel.feed(b"ATE0\r\r\nOK\r\n", NOW)
    assert events == [CommandCompleted(AtCommand("ATE0"), FinalResult(ResultKind.OK), ())]
    assert channel.outgoing() == b"AT+CMEE=1\r"
    assert channel.feed(b"\r\nOK\r\n", NOW)[0].result.ok  # type: ignore[union-attr]
    assert not channel.busy


def test_information_lines_belong_to_their_command() -> None:
    channel = started(AtCommand("AT+CSQ"))
    (event,) = channel.feed(b"\r\n+CSQ: 17,99\r\n\r\nOK\r\n", NOW)
    assert isinstance(event, CommandCompleted)
    assert event.lines == ("+CSQ: 17,99",)


@pytest.mark.parametrize(
    ("line", "result"),
    [
        ("OK", FinalResult(ResultKind.OK)),
        ("ERROR", FinalResult(ResultKind.ERROR)),
        ("+CME ERROR: 16", FinalResult(ResultKind.CME_ERROR, 16)),
        (
            "+CME ERROR: incorrect password",
            FinalResult(ResultKind.CME_ERROR, 16, "incorrect password"),
        ),
        ("+CMS ERROR: 38", FinalResult(ResultKind.CMS_ERROR, 38)),
        ("+CMS ERROR: 500", FinalResult(ResultKind.CMS_ERROR, 500)),
        ("+CMS ERROR: vendor text", FinalResult(ResultKind.CMS_ERROR, None, "vendor text")),
        ("NO CARRIER", FinalResult(ResultKind.NO_CARRIER)),
        ("+CSQ: 1,2", None),
        ("OKAY", None),
    ],
)
def test_final_result_codes(line: str, result: FinalResult | None) -> None:
    assert parse_final_result(line) == result


def test_error_results_have_names() -> None:
    assert FinalResult(ResultKind.CMS_ERROR, 38).name == "+CMS ERROR 38 (network out of order)"
    assert FinalResult(ResultKind.CME_ERROR, 16).name == "+CME ERROR 16 (incorrect password)"
    assert FinalResult(ResultKind.CMS_ERROR, 9999).name == "+CMS ERROR 9999 (error 9999)"


def test_cmgs_prompt_gets_the_pdu_and_ctrl_z() -> None:
    command = AtCommand("AT+CMGS=23", pdu="0011000B916407281553F80000AA0AE8329BFD4697D9EC37")
    channel = started(command)
    assert channel.outgoing() == b"AT+CMGS=23\r"
    assert channel.feed(b"\r\n> ", NOW) == []
    assert channel.outgoing() == command.pdu.encode() + b"\x1a"  # type: ignore[union-attr]
    (event,) = channel.feed(b"\r\n+CMGS: 7\r\n\r\nOK\r\n", NOW)
    assert isinstance(event, CommandCompleted) and event.lines == ("+CMGS: 7",)


def test_cmgs_echoes_of_command_and_pdu_are_skipped() -> None:
    command = AtCommand("AT+CMGS=5", pdu="0001000000")
    channel = started(command)
    channel.outgoing()
    channel.feed(b"AT+CMGS=5\r\r\n> ", NOW)
    assert channel.outgoing() == b"0001000000\x1a"
    (event,) = channel.feed(b"0001000000\x1a\r\n+CMGS: 8\r\n\r\nOK\r\n", NOW)
    assert isinstance(event, CommandCompleted) and event.lines == ("+CMGS: 8",)


def test_cmgs_error_after_the_pdu() -> None:
    channel = started(AtCommand("AT+CMGS=5", pdu="0001000000"))
    channel.feed(b"> ", NOW)
    (event,) = channel.feed(b"\r\n+CMS ERROR: 38\r\n", NOW)
    assert isinstance(event, CommandCompleted)
    assert event.result == FinalResult(ResultKind.CMS_ERROR, 38)


def test_unsolicited_codes_in_the_middle_of_a_response_are_dispatched() -> None:
    channel = started(AtCommand("AT+CMGL=4"), AtCommand("AT"))
    stream = (
        b"\r\n+CMGL: 1,1,,5\r\n"
        b'+CMTI: "SM",3\r\n'
        b"0001000000\r\n"
        b"RING\r\n"
        b"+CMT: ,24\r\n"
        b"07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07\r\n"
        b"+CDS: 25\r\n07914306073011F006270B913426565711F7012081111345400120811174054043\r\n"
        b"^RSSI: 14\r\n"
        b'+CREG: 5,"00C3","0D2B"\r\n'
        b'+CDSI: "SR",9\r\n'
        b"^BOOT:20952066,0,0,0,72\r\n"
        b"\r\nOK\r\n"
    )
    events = channel.feed(stream, NOW)
    assert events == [
        MessageStored("SM", 3),
        Ring(),
        MessageArrived(
            bytes.fromhex(
                "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07"
            ),
            24,
        ),
        StatusReportArrived(
            bytes.fromhex("07914306073011F006270B913426565711F7012081111345400120811174054043"),
            25,
        ),
        SignalChanged(14),
        RegistrationChanged("+CREG", 5, "00C3", "0D2B"),
        StatusReportStored("SR", 9),
        Unsolicited("^BOOT:20952066,0,0,0,72"),
        CommandCompleted(
            AtCommand("AT+CMGL=4"),
            FinalResult(ResultKind.OK),
            (
                "+CMGL: 1,1,,5",
                "0001000000",
            ),
        ),
    ]


def test_the_same_stream_byte_by_byte_gives_the_same_events() -> None:
    stream = b'\r\n+CMTI: "SM",3\r\n+CSQ: 20,99\r\n+CEREG: 1\r\nOK\r\nhello\r\n'
    whole = started(AtCommand("AT+CSQ")).feed(stream, NOW)
    channel = started(AtCommand("AT+CSQ"))
    pieces: list[AtEvent] = []
    for byte in stream:
        pieces.extend(channel.feed(bytes((byte,)), NOW))
    assert pieces == whole
    assert whole[-1] == Unsolicited("hello")


def test_a_command_answering_with_a_urc_prefix_keeps_its_line() -> None:
    channel = started(AtCommand("AT+CREG?"))
    (event,) = channel.feed(b"\r\n+CREG: 0,1\r\n\r\nOK\r\n", NOW)
    assert isinstance(event, CommandCompleted) and event.lines == ("+CREG: 0,1",)


def test_timeout_is_a_deadline_returned_as_data() -> None:
    channel = started(AtCommand("AT+COPS?", timeout=5.0), AtCommand("AT"))
    assert channel.deadline() == NOW + 5.0
    assert channel.check_timeout(NOW + 4.9) == []
    channel.feed(b'+COPS: 0,0,"Op', NOW)
    (event,) = channel.check_timeout(NOW + 5.0)
    assert event == CommandTimedOut(AtCommand("AT+COPS?", timeout=5.0), (), False)
    channel.outgoing()
    assert channel.current is None  # a pause before the next command
    assert channel.deadline() == NOW + 5.0 + 1.0
    assert channel.check_timeout(NOW + 6.0) == []
    assert channel.current == AtCommand("AT")
    assert channel.outgoing() == b"AT\r"
    assert channel.deadline() == NOW + 6.0 + 10.0


def test_a_late_answer_in_the_pause_after_a_timeout_does_not_answer_the_next_command() -> None:
    channel = started(AtCommand("AT+CSQ", timeout=1.0), AtCommand("AT+CMGD=3"))
    channel.check_timeout(NOW + 1.0)
    late = channel.feed(b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n", NOW + 1.5)
    assert late == [Unsolicited("+CSQ: 20,99"), StrayResult(FinalResult(ResultKind.OK))]
    channel.check_timeout(NOW + 2.0)
    assert channel.current == AtCommand("AT+CMGD=3")
    (event,) = channel.feed(b"\r\n+CMS ERROR: 321\r\n", NOW + 2.1)
    assert isinstance(event, CommandCompleted) and not event.result.ok


def test_cmgs_timeout_before_the_prompt_sends_escape() -> None:
    channel = started(AtCommand("AT+CMGS=5", timeout=1.0, pdu="0001000000"))
    channel.outgoing()
    (event,) = channel.check_timeout(NOW + 1.0)
    assert isinstance(event, CommandTimedOut) and not event.prompted
    assert channel.outgoing() == b"\x1b"


def test_a_late_result_after_a_timeout_is_stray() -> None:
    channel = started(AtCommand("AT", timeout=1.0))
    channel.check_timeout(NOW + 2)
    assert channel.feed(b"OK\r\n", NOW + 3) == [StrayResult(FinalResult(ResultKind.OK))]


def test_a_cmt_without_a_hex_line_is_reported_and_the_line_still_counts() -> None:
    channel = started(AtCommand("AT"))
    events = channel.feed(b"+CMT: ,24\r\nOK\r\n", NOW)
    assert isinstance(events[0], MalformedUnsolicited)
    assert isinstance(events[1], CommandCompleted)


def test_an_overlong_line_is_dropped_and_the_stream_recovers() -> None:
    channel = started(AtCommand("AT"))
    assert channel.feed(b"x" * 5000, NOW) == []
    assert channel.feed(b"y" * 10 + b"\r\nOK\r\n", NOW)[0].result.ok  # type: ignore[union-attr]


def test_clear_returns_what_was_waiting() -> None:
    channel = started(AtCommand("A1"), AtCommand("A2"))
    assert [c.line for c in channel.clear()] == ["A1", "A2"]
    assert not channel.busy and channel.deadline() is None


@settings(deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20), st.booleans())
def test_random_bytes_never_crash_the_channel(chunks: list[bytes], with_command: bool) -> None:
    channel = AtChannel()
    if with_command:
        channel.send(AtCommand("AT+CMGS=5", timeout=1.0, pdu="0001000000"), NOW)
        channel.send(AtCommand("AT+CMGL=4"), NOW)
    now = NOW
    for chunk in chunks:
        channel.feed(chunk, now)
        now += 0.5
        channel.check_timeout(now)
        channel.outgoing()


@settings(deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"OK\r\n",
                b"ERROR\r\n",
                b"> ",
                b'+CMTI: "SM",1\r\n',
                b"+CMT: ,5\r\n",
                b"+CDS: 5\r\n",
                b"0001000000\r\n",
                b"RING\r\n",
                b"+CMS ERROR: 500\r\n",
                b"\r\n",
                b"\x00\xff",
            ]
        ),
        max_size=30,
    )
)
def test_random_sequences_of_real_lines_never_crash_the_channel(pieces: list[bytes]) -> None:
    channel = AtChannel()
    for _ in range(3):
        channel.send(AtCommand("AT+CMGS=5", pdu="0001000000"), NOW)
    for piece in pieces:
        channel.feed(piece, NOW)
    assert channel.queued <= 2


# --- +CMS ERROR: temporary or permanent ---------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (38, FailureKind.TEMPORARY),  # network out of order
        (41, FailureKind.TEMPORARY),  # temporary failure
        (42, FailureKind.TEMPORARY),  # congestion
        (192, FailureKind.TEMPORARY),  # SC busy
        (314, FailureKind.TEMPORARY),  # SIM busy
        (331, FailureKind.TEMPORARY),  # no network service
        (332, FailureKind.TEMPORARY),  # network timeout
        (500, FailureKind.TEMPORARY),  # unknown error
        (530, FailureKind.TEMPORARY),  # manufacturer specific
        (1, FailureKind.PERMANENT),  # unassigned number
        (8, FailureKind.PERMANENT),  # operator determined barring
        (21, FailureKind.PERMANENT),  # short message transfer rejected
        (96, FailureKind.PERMANENT),  # invalid mandatory information
        (195, FailureKind.PERMANENT),  # invalid SME address
        (196, FailureKind.PERMANENT),  # destination SME barred
        (304, FailureKind.PERMANENT),  # invalid PDU mode parameter
        (60, FailureKind.PERMANENT),  # an RP cause we do not name
    ],
)
def test_cms_error_failure_kinds(code: int, kind: FailureKind) -> None:
    assert cms_failure_kind(code) is kind


def test_every_named_cms_code_has_a_kind_and_a_name() -> None:
    for code, name in CMS_ERROR_NAMES.items():
        assert cms_error_name(code) == name
        assert isinstance(cms_failure_kind(code), FailureKind)
