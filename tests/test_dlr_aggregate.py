"""Multipart aggregation, duplicate and out-of-order receipts, per-segment reports, DLR timeout."""

from __future__ import annotations

import pytest

from dlr.aggregate import (
    Report,
    ReportMode,
    SegmentState,
    SegmentUpdate,
    aggregate_status,
    apply_segment_status,
    dlr_deadline,
    dlr_timeout_verdict,
    reports,
)
from dlr.status import MessageStatus, SegmentStatus, StatusSource

M, S = MessageStatus, SegmentStatus


def _submitted(count: int, at: float = 0.0) -> list[SegmentState]:
    return [SegmentState(S.SUBMITTED, at, submitted_at=at) for _ in range(count)]


class _Message:
    """A message as the store would keep it, driven only through apply_segment_status."""

    def __init__(self, segments: list[SegmentState], status: MessageStatus = M.SUBMITTED) -> None:
        self.status = status
        self.segments = segments
        self.segment_history: list[list[tuple[SegmentStatus, bool]]] = [[] for _ in segments]
        self.message_history: list[MessageStatus] = []

    def receipt(self, index: int, status: SegmentStatus, at: float) -> SegmentUpdate:
        update = apply_segment_status(
            self.status, self.segments, index, status, at=at, source=StatusSource.RECEIPT
        )
        self.segments = list(update.segments)
        event = update.segment.event
        assert isinstance(event.status, SegmentStatus)
        self.segment_history[index].append((event.status, event.changed))
        if update.message_status is not None:
            self.status = update.message_status
            self.message_history.append(update.message_status)
        return update


def test_three_parts_are_delivered_only_when_all_are() -> None:
    message = _Message(_submitted(3))
    message.receipt(0, S.DELIVERED, 1.0)
    assert message.status is M.SUBMITTED
    message.receipt(2, S.DELIVERED, 2.0)
    assert message.status is M.SUBMITTED
    message.receipt(1, S.DELIVERED, 3.0)
    assert message.status is M.DELIVERED
    assert message.message_history == [M.DELIVERED]


def test_three_parts_with_mixed_outcomes_take_the_first_failure() -> None:
    message = _Message(_submitted(3))
    message.receipt(0, S.DELIVERED, 1.0)
    message.receipt(2, S.EXPIRED, 2.0)
    assert message.status is M.EXPIRED  # final at the first failure, part 1 still pending
    message.receipt(1, S.UNDELIVERABLE, 3.0)
    assert message.status is M.EXPIRED
    assert [segment.status for segment in message.segments] == [
        S.DELIVERED,
        S.UNDELIVERABLE,
        S.EXPIRED,
    ]
    assert message.message_history == [M.EXPIRED]


def test_first_failure_is_by_time_not_by_part_number() -> None:
    segments = [
        SegmentState(S.REJECTED, 9.0),
        SegmentState(S.DELIVERED, 1.0),
        SegmentState(S.UNDELIVERABLE, 4.0),
    ]
    assert aggregate_status(segments) is M.UNDELIVERABLE


def test_multipart_is_not_reported_by_its_last_part_only() -> None:
    message = _Message(_submitted(3))
    message.receipt(0, S.UNDELIVERABLE, 1.0)
    message.receipt(1, S.DELIVERED, 2.0)
    message.receipt(2, S.DELIVERED, 3.0)
    assert message.status is M.UNDELIVERABLE


def test_pending_parts_hold_the_message_at_its_least_advanced_state() -> None:
    assert aggregate_status([SegmentState(S.PENDING, 0), SegmentState(S.DELIVERED, 0)]) is M.QUEUED
    assert (
        aggregate_status([SegmentState(S.SUBMITTED, 0), SegmentState(S.ENROUTE, 0)]) is M.SUBMITTED
    )
    assert (
        aggregate_status([SegmentState(S.SMSC_ACCEPTED, 0), SegmentState(S.ENROUTE, 0)])
        is M.ENROUTE
    )
    assert aggregate_status([SegmentState(S.SMSC_ACCEPTED, 0)]) is M.SMSC_ACCEPTED
    with pytest.raises(ValueError):
        aggregate_status([])


def test_duplicate_receipt_is_recorded_and_changes_nothing() -> None:
    message = _Message(_submitted(1))
    first = message.receipt(0, S.DELIVERED, 1.0)
    duplicate = message.receipt(0, S.DELIVERED, 2.0)
    assert first.segment.changed and not duplicate.segment.changed
    assert duplicate.message is None
    assert message.segment_history[0] == [(S.DELIVERED, True), (S.DELIVERED, False)]
    assert message.segments[0].changed_at == 1.0


def test_out_of_order_receipts_final_stays_final() -> None:
    message = _Message(_submitted(1))
    message.receipt(0, S.DELIVERED, 3.0)
    late_intermediate = message.receipt(0, S.ENROUTE, 4.0)
    late_failure = message.receipt(0, S.UNDELIVERABLE, 5.0)
    assert message.status is M.DELIVERED and message.segments[0].status is S.DELIVERED
    assert not late_intermediate.segment.changed and not late_failure.segment.changed
    assert message.segment_history[0] == [
        (S.DELIVERED, True),
        (S.ENROUTE, False),
        (S.UNDELIVERABLE, False),
    ]


def test_intermediate_then_final_moves_message_through_enroute() -> None:
    message = _Message(_submitted(1))
    message.receipt(0, S.SMSC_ACCEPTED, 1.0)
    message.receipt(0, S.DELIVERED, 2.0)
    assert message.message_history == [M.SMSC_ACCEPTED, M.DELIVERED]


def test_submit_results_record_submit_time() -> None:
    segments = [SegmentState(S.PENDING, 0.0), SegmentState(S.PENDING, 0.0)]
    update = apply_segment_status(
        M.QUEUED,
        segments,
        0,
        S.SUBMITTED,
        at=5.0,
        source=StatusSource.SUBMIT_RESP,
        submitted_at=5.0,
    )
    assert update.segments[0] == SegmentState(S.SUBMITTED, 5.0, 5.0)
    assert update.message is None  # part 2 still pending: the message stays queued
    update = apply_segment_status(
        M.QUEUED,
        list(update.segments),
        1,
        S.SUBMITTED,
        at=6.0,
        source=StatusSource.SUBMIT_RESP,
        submitted_at=6.0,
    )
    assert update.message_status is M.SUBMITTED


def test_message_mode_reports_once_per_message_change() -> None:
    message = _Message(_submitted(2))
    first = message.receipt(0, S.DELIVERED, 1.0)
    second = message.receipt(1, S.DELIVERED, 2.0)
    assert reports(first, ReportMode.MESSAGE) == []
    assert reports(second, ReportMode.MESSAGE) == [Report(M.DELIVERED, None, False)]


def test_segment_mode_reports_every_part() -> None:
    message = _Message(_submitted(2))
    first = message.receipt(0, S.ENROUTE, 1.0)
    second = message.receipt(0, S.DELIVERED, 2.0)
    third = message.receipt(1, S.UNDELIVERABLE, 3.0)
    duplicate = message.receipt(1, S.UNDELIVERABLE, 4.0)
    assert reports(first, ReportMode.SEGMENT) == [Report(M.ENROUTE, 0, True)]
    assert reports(second, ReportMode.SEGMENT) == [Report(M.DELIVERED, 0, False)]
    assert reports(third, ReportMode.SEGMENT) == [Report(M.UNDELIVERABLE, 1, False)]
    assert reports(duplicate, ReportMode.SEGMENT) == []


def test_no_receipt_before_dlr_timeout_makes_segments_unknown() -> None:
    segments = [
        SegmentState(S.DELIVERED, 50.0, submitted_at=0.0),
        SegmentState(S.ENROUTE, 20.0, submitted_at=10.0),
        SegmentState(S.SUBMITTED, 30.0, submitted_at=30.0),
    ]
    assert dlr_deadline(segments, dlr_timeout=100.0) == 110.0
    assert dlr_timeout_verdict(segments, dlr_timeout=100.0, now=109.0) is None
    verdict = dlr_timeout_verdict(segments, dlr_timeout=100.0, now=110.0)
    assert verdict is not None
    assert (verdict.status, verdict.segment_indexes) == (S.UNKNOWN, (1,))
    message = _Message(segments)
    for index in verdict.segment_indexes:
        message.receipt(index, verdict.status, 110.0)
    assert message.status is M.UNKNOWN


def test_message_whose_validity_passed_without_receipt_becomes_expired() -> None:
    segments = _submitted(2)
    deadline = dlr_deadline(segments, dlr_timeout=86_400, validity_until=3_600, validity_grace=60)
    assert deadline == 3_660
    verdict = dlr_timeout_verdict(
        segments, dlr_timeout=86_400, now=3_660, validity_until=3_600, validity_grace=60
    )
    assert verdict is not None
    assert (verdict.status, verdict.segment_indexes) == (S.EXPIRED, (0, 1))


def test_unknown_after_timeout_is_replaced_by_a_late_definitive_receipt() -> None:
    message = _Message(_submitted(1))
    message.receipt(0, S.UNKNOWN, 100.0)
    message.receipt(0, S.DELIVERED, 200.0)
    assert message.status is M.DELIVERED
    assert message.message_history == [M.UNKNOWN, M.DELIVERED]


def test_nothing_awaits_when_every_segment_is_final_or_unsubmitted() -> None:
    segments = [SegmentState(S.PENDING, 0.0), SegmentState(S.DELIVERED, 1.0, submitted_at=0.0)]
    assert dlr_deadline(segments, dlr_timeout=10.0) is None
    assert dlr_timeout_verdict(segments, dlr_timeout=10.0, now=1e9) is None
