"""A message's status from its segments, per-segment reporting, and the DLR timeout verdict.

Owns `SegmentState`, `aggregate_status`, `apply_segment_status` (the one function that applies a
segment's reported status and derives the message's), `reports` and the DLR timeout rules
(`dlr_deadline`, `dlr_timeout_verdict`). Must never read a clock or touch storage.

Aggregation rules
-----------------
- delivered only when every segment is delivered;
- otherwise the first failure wins: the failed segment whose failure is earliest (by
  `changed_at`, then by index) gives the message its final status, even while other segments
  are still pending; later segment outcomes are recorded on the segments only;
- otherwise (no failure, something pending) the least advanced segment decides: queued while
  any segment is unacknowledged, then submitted, then enroute / smsc_accepted.

DLR timeout
-----------
A submitted segment with no final receipt is due at `submitted_at + dlr_timeout`, or earlier at
`validity_until + validity_grace` when the message has a validity period (after it, the SMSC
should have reported EXPIRED). A due segment becomes `expired` when its validity has passed and
`unknown` otherwise; `unknown` is still replaced by a later definitive receipt (see dlr.status).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from dlr.status import (
    Advance,
    MessageStatus,
    SegmentStatus,
    StatusSource,
    advance,
    is_failure,
    is_final,
    is_intermediate,
    segment_to_message_status,
)


@dataclass(slots=True)
class SegmentState:
    """A segment as the store holds it. Times are on the caller's clock."""

    status: SegmentStatus
    changed_at: float
    submitted_at: float | None = None


def aggregate_status(segments: Sequence[SegmentState]) -> MessageStatus:
    """The message status the segments imply (see the module docstring)."""
    if not segments:
        raise ValueError("a message has at least one segment")
    first_failure: SegmentState | None = None
    all_delivered = True
    any_pending = any_submitted = any_enroute = False
    for segment in segments:
        status = segment.status
        if status is SegmentStatus.DELIVERED:
            continue
        all_delivered = False
        if is_failure(status):
            if first_failure is None or segment.changed_at < first_failure.changed_at:
                first_failure = segment
        elif status is SegmentStatus.PENDING:
            any_pending = True
        elif status is SegmentStatus.SUBMITTED:
            any_submitted = True
        elif status is SegmentStatus.ENROUTE:
            any_enroute = True
    if first_failure is not None:
        return segment_to_message_status(first_failure.status)
    if all_delivered:
        return MessageStatus.DELIVERED
    if any_pending:
        return MessageStatus.QUEUED
    if any_submitted:
        return MessageStatus.SUBMITTED
    return MessageStatus.ENROUTE if any_enroute else MessageStatus.SMSC_ACCEPTED


@dataclass(slots=True)
class SegmentUpdate:
    """Result of `apply_segment_status`.

    `segment` always carries a history event (duplicates and late receipts have
    `changed=False`); `message` is set only when the message status changes.
    """

    segment_index: int
    segment: Advance
    message: Advance | None
    segments: tuple[SegmentState, ...]

    @property
    def message_status(self) -> MessageStatus | None:
        if self.message is None:
            return None
        status = self.message.status
        assert isinstance(status, MessageStatus)
        return status


def apply_segment_status(
    message_status: MessageStatus,
    segments: Sequence[SegmentState],
    index: int,
    reported: SegmentStatus,
    *,
    at: float,
    source: StatusSource,
    detail: str = "",
    submitted_at: float | None = None,
) -> SegmentUpdate:
    """Apply a status reported for segment `index` and derive the message's new status.

    `submitted_at` records the submit time when `reported` is the submit result.
    """
    current = segments[index]
    segment_advance = advance(current.status, reported, at=at, source=source, detail=detail)
    if not segment_advance.changed:
        return SegmentUpdate(index, segment_advance, None, tuple(segments))
    new_status = segment_advance.status
    assert isinstance(new_status, SegmentStatus)
    updated = list(segments)
    updated[index] = SegmentState(
        new_status,
        at,
        submitted_at if submitted_at is not None else current.submitted_at,
    )
    implied = aggregate_status(updated)
    message_advance: Advance | None = None
    if implied is not message_status:
        candidate = advance(
            message_status, implied, at=at, source=StatusSource.AGGREGATE, detail=detail
        )
        if candidate.changed:
            message_advance = candidate
    return SegmentUpdate(index, segment_advance, message_advance, tuple(updated))


class ReportMode(enum.StrEnum):
    """What customers are told about a multipart message."""

    MESSAGE = "message"  # one report per message status change (aggregated)
    SEGMENT = "segment"  # one report per segment status change


@dataclass(slots=True, frozen=True)
class Report:
    """A status change to tell the customer about. `segment_index` is None for a message."""

    status: MessageStatus
    segment_index: int | None
    intermediate: bool


def reports(update: SegmentUpdate, mode: ReportMode) -> list[Report]:
    """The customer reports an update calls for under `mode` (filter with wants_receipt)."""
    if mode is ReportMode.MESSAGE:
        status = update.message_status
        if status is None:
            return []
        return [Report(status, None, is_intermediate(status))]
    if not update.segment.changed:
        return []
    reported = update.segment.status
    assert isinstance(reported, SegmentStatus)
    segment_status = segment_to_message_status(reported)
    if not (is_final(segment_status) or is_intermediate(segment_status)):
        return []
    return [Report(segment_status, update.segment_index, is_intermediate(segment_status))]


_AWAITING_RECEIPT = frozenset(
    {SegmentStatus.SUBMITTED, SegmentStatus.ENROUTE, SegmentStatus.SMSC_ACCEPTED}
)


def _segment_deadline(
    segment: SegmentState,
    dlr_timeout: float,
    validity_until: float | None,
    validity_grace: float,
) -> float | None:
    if segment.status not in _AWAITING_RECEIPT or segment.submitted_at is None:
        return None
    deadline = segment.submitted_at + dlr_timeout
    if validity_until is not None:
        deadline = min(deadline, validity_until + validity_grace)
    return deadline


def dlr_deadline(
    segments: Sequence[SegmentState],
    *,
    dlr_timeout: float,
    validity_until: float | None = None,
    validity_grace: float = 600.0,
) -> float | None:
    """When the earliest segment still awaiting a receipt times out (None: nothing awaits)."""
    deadlines = [
        deadline
        for segment in segments
        if (deadline := _segment_deadline(segment, dlr_timeout, validity_until, validity_grace))
        is not None
    ]
    return min(deadlines) if deadlines else None


@dataclass(slots=True, frozen=True)
class TimeoutVerdict:
    """Segments to move to `status` (unknown or expired) because no receipt came in time."""

    status: SegmentStatus
    segment_indexes: tuple[int, ...]
    detail: str


def dlr_timeout_verdict(
    segments: Sequence[SegmentState],
    *,
    dlr_timeout: float,
    now: float,
    validity_until: float | None = None,
    validity_grace: float = 600.0,
) -> TimeoutVerdict | None:
    """Which awaiting segments are due at `now`, and whether they become expired or unknown.

    Apply each with `apply_segment_status(..., source=StatusSource.TIMEOUT, detail=...)`.
    """
    due = tuple(
        index
        for index, segment in enumerate(segments)
        if (deadline := _segment_deadline(segment, dlr_timeout, validity_until, validity_grace))
        is not None
        and deadline <= now
    )
    if not due:
        return None
    if validity_until is not None and now >= validity_until:
        return TimeoutVerdict(SegmentStatus.EXPIRED, due, "validity passed without a receipt")
    return TimeoutVerdict(SegmentStatus.UNKNOWN, due, f"no receipt within {dlr_timeout:g}s")
