"""The status model: finality, the transition rule, history, and SMPP's vocabulary."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlr.status import (
    MessageStatus,
    SegmentStatus,
    StatusSource,
    advance,
    can_transition,
    is_final,
    message_state,
    segment_to_message_status,
    stat_word,
    status_from_message_state,
    status_from_stat_word,
    status_from_tp_status,
    submit_error_detail,
)

M = MessageStatus
FINALS = [M.DELIVERED, M.UNDELIVERABLE, M.EXPIRED, M.REJECTED, M.DELETED, M.UNKNOWN, M.FAILED]


def test_final_states_are_exactly_the_outcomes() -> None:
    assert {status for status in M if is_final(status)} == set(FINALS)
    assert {status for status in SegmentStatus if is_final(status)} == {
        SegmentStatus(status.value) for status in FINALS
    }


def test_happy_path_moves_forward() -> None:
    path = [M.ACCEPTED, M.QUEUED, M.SUBMITTED, M.SMSC_ACCEPTED, M.ENROUTE, M.DELIVERED]
    for old, new in itertools.pairwise(path):
        assert can_transition(old, new), (old, new)


@pytest.mark.parametrize("final", [status for status in FINALS if status is not M.UNKNOWN])
def test_a_final_state_is_never_reopened(final: MessageStatus) -> None:
    for new in M:
        assert not can_transition(final, new), (final, new)


def test_unknown_gives_way_only_to_a_definitive_carrier_verdict() -> None:
    allowed = {new for new in M if can_transition(M.UNKNOWN, new)}
    assert allowed == {M.DELIVERED, M.UNDELIVERABLE, M.EXPIRED, M.REJECTED, M.DELETED}


def test_intermediates_alternate_but_never_go_back_to_submitted() -> None:
    assert can_transition(M.ENROUTE, M.SMSC_ACCEPTED)
    assert can_transition(M.SMSC_ACCEPTED, M.ENROUTE)
    assert not can_transition(M.ENROUTE, M.SUBMITTED)
    assert not can_transition(M.SUBMITTED, M.QUEUED)
    assert not can_transition(M.QUEUED, M.ACCEPTED)


def test_any_pending_state_may_end_in_any_final_state() -> None:
    for old in (M.ACCEPTED, M.QUEUED, M.SUBMITTED, M.ENROUTE, M.SMSC_ACCEPTED):
        for new in FINALS:
            assert can_transition(old, new)


def test_duplicate_receipt_is_recorded_but_changes_nothing() -> None:
    first = advance(M.SUBMITTED, M.DELIVERED, at=10.0, source=StatusSource.RECEIPT, detail="a")
    again = advance(first.status, M.DELIVERED, at=11.0, source=StatusSource.RECEIPT, detail="b")
    assert first.changed and first.status is M.DELIVERED
    assert not again.changed and again.status is M.DELIVERED
    assert (again.event.at, again.event.detail, again.event.status) == (11.0, "b", M.DELIVERED)


def test_late_failure_after_delivery_is_history_only() -> None:
    late = advance(M.DELIVERED, M.UNDELIVERABLE, at=5.0, source=StatusSource.RECEIPT)
    assert late.status is M.DELIVERED
    assert late.event.status is M.UNDELIVERABLE and not late.event.changed


def test_late_intermediate_after_final_is_history_only() -> None:
    late = advance(M.EXPIRED, M.ENROUTE, at=5.0, source=StatusSource.RECEIPT)
    assert late.status is M.EXPIRED and not late.changed


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (1, SegmentStatus.ENROUTE),
        (2, SegmentStatus.DELIVERED),
        (3, SegmentStatus.EXPIRED),
        (4, SegmentStatus.DELETED),
        (5, SegmentStatus.UNDELIVERABLE),
        (6, SegmentStatus.SMSC_ACCEPTED),
        (7, SegmentStatus.UNKNOWN),
        (8, SegmentStatus.REJECTED),
        (0, None),
        (9, None),
    ],
)
def test_message_state_numbers_map_to_segment_status(
    state: int, expected: SegmentStatus | None
) -> None:
    assert status_from_message_state(state) is expected


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("DELIVRD", SegmentStatus.DELIVERED),
        ("delivrd", SegmentStatus.DELIVERED),
        ("Delivered", SegmentStatus.DELIVERED),
        ("EXPIRED", SegmentStatus.EXPIRED),
        ("DELETED", SegmentStatus.DELETED),
        ("UNDELIV", SegmentStatus.UNDELIVERABLE),
        ("undeliv", SegmentStatus.UNDELIVERABLE),
        ("ACCEPTD", SegmentStatus.SMSC_ACCEPTED),
        ("UNKNOWN", SegmentStatus.UNKNOWN),
        ("REJECTD", SegmentStatus.REJECTED),
        ("ENROUTE", SegmentStatus.ENROUTE),
        (" DELIVRD ", SegmentStatus.DELIVERED),
        ("2", SegmentStatus.DELIVERED),
        ("SENT", None),
        ("", None),
        ("٢", None),
    ],
)
def test_stat_words_map_to_segment_status(word: str, expected: SegmentStatus | None) -> None:
    assert status_from_stat_word(word) is expected


def test_our_stat_words_and_states_read_back_as_the_same_status() -> None:
    for status in [*FINALS, M.ENROUTE, M.SMSC_ACCEPTED]:
        from_word = status_from_stat_word(stat_word(status))
        from_state = status_from_message_state(message_state(status))
        expected = SegmentStatus.REJECTED if status is M.FAILED else SegmentStatus(status.value)
        assert from_word is from_state is expected


def test_segment_pending_is_a_queued_message() -> None:
    assert segment_to_message_status(SegmentStatus.PENDING) is M.QUEUED
    assert segment_to_message_status(SegmentStatus.EXPIRED) is M.EXPIRED


def test_permanent_submit_error_keeps_the_smpp_status_in_history() -> None:
    failed = advance(
        M.QUEUED,
        M.FAILED,
        at=1.0,
        source=StatusSource.SUBMIT_RESP,
        detail=submit_error_detail(0x0B),
    )
    assert failed.status is M.FAILED
    assert failed.event.detail == "ESME_RINVDSTADR (0x0000000B)"
    assert submit_error_detail(0x401) == "0x00000401 (0x00000401)"


@given(st.integers(min_value=0, max_value=255))
def test_every_tp_status_has_a_status_and_only_still_trying_is_not_final(tp_status: int) -> None:
    status = status_from_tp_status(tp_status)
    assert is_final(status) == (not 0x20 <= tp_status <= 0x3F)


def test_tp_status_examples_from_ts_23_040() -> None:
    assert status_from_tp_status(0x00) is SegmentStatus.DELIVERED  # received by the SME
    assert status_from_tp_status(0x01) is SegmentStatus.DELIVERED  # forwarded, unconfirmed
    assert status_from_tp_status(0x21) is SegmentStatus.ENROUTE  # SME busy: still trying
    assert status_from_tp_status(0x41) is SegmentStatus.UNDELIVERABLE  # incompatible dest.
    assert status_from_tp_status(0x46) is SegmentStatus.EXPIRED
    assert status_from_tp_status(0x65) is SegmentStatus.EXPIRED  # gave up: validity over
    assert status_from_tp_status(0x48) is SegmentStatus.DELETED
    assert status_from_tp_status(0x62) is SegmentStatus.UNDELIVERABLE  # gave up: no response
