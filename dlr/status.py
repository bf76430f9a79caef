"""Delivery status model: the project's only status enums and the rule for moving between them.

Owns `MessageStatus` (a message as the customer sees it), `SegmentStatus` (one submitted part),
the transition rule (`can_transition`, `is_final`, `advance`), the history entry type
(`StatusEvent`) and the mappings between SMPP's `message_state` numbers / receipt `stat:` words
and these enums. Must never read a clock, touch storage or know about links: callers pass `now`.

Theory of operation
-------------------
A message goes accepted -> queued -> submitted -> (enroute | smsc_accepted)* -> a final state.
Final states are delivered, undeliverable, expired, rejected, deleted, unknown and failed
(a permanent submit error). A final state is never reopened by a late or duplicate receipt;
such a receipt still produces a `StatusEvent` for the history, with `changed=False`.

One deliberate exception: `unknown` means "we could not learn the outcome" (the carrier said
UNKNOWN, or no receipt came before the DLR timeout). It claims nothing about the handset, so a
later definitive carrier verdict (delivered, undeliverable, expired, rejected, deleted) replaces
it. `unknown` is still final for everything else: no timer runs for it, and intermediate states
and submit results never follow it.

Intermediate notifications (ENROUTE, ACCEPTD) may arrive in any order and alternate; an
intermediate never follows a final state and never moves a message backwards to submitted.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from smpp.constants import MessageState, status_name


class MessageStatus(enum.StrEnum):
    """Status of a whole message (all its segments) as reported to the customer."""

    ACCEPTED = "accepted"  # taken in by an intake link, not yet queued for a route
    QUEUED = "queued"  # waiting for an outbound link
    SUBMITTED = "submitted"  # submit_sm_resp OK for every segment, carrier ids recorded
    ENROUTE = "enroute"  # intermediate: the SMSC says it is on its way (ENROUTE)
    SMSC_ACCEPTED = "smsc_accepted"  # intermediate: the SMSC says ACCEPTD
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    EXPIRED = "expired"
    REJECTED = "rejected"
    DELETED = "deleted"
    UNKNOWN = "unknown"  # carrier said UNKNOWN, or no receipt before the DLR timeout
    FAILED = "failed"  # permanent submit error; the SMPP command_status is kept in history


class SegmentStatus(enum.StrEnum):
    """Status of one segment (one submit_sm) of a message."""

    PENDING = "pending"  # not yet acknowledged by the SMSC
    SUBMITTED = "submitted"
    ENROUTE = "enroute"
    SMSC_ACCEPTED = "smsc_accepted"
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    EXPIRED = "expired"
    REJECTED = "rejected"
    DELETED = "deleted"
    UNKNOWN = "unknown"
    FAILED = "failed"


class StatusSource(enum.StrEnum):
    """Who caused a status event (kept in history)."""

    INTAKE = "intake"
    QUEUE = "queue"
    SUBMIT_RESP = "submit_resp"
    RECEIPT = "receipt"
    TIMEOUT = "timeout"
    AGGREGATE = "aggregate"  # a message status derived from its segments
    OPERATOR = "operator"
    CALLBACK = "callback"  # an HTTP receipt callback was delivered, retried or given up
    SMPP_RECEIPT = "smpp_receipt"  # an SMPP customer's receipt was refused for good or not sent


AnyStatus = MessageStatus | SegmentStatus

# Both enums share their value strings, so the rule is written once, over the values.
_FINAL_VALUES = frozenset(
    {"delivered", "undeliverable", "expired", "rejected", "deleted", "unknown", "failed"}
)
_INTERMEDIATE_VALUES = frozenset({"enroute", "smsc_accepted"})
# Carrier verdicts that may replace `unknown` (see the module docstring).
_DEFINITIVE_VALUES = frozenset({"delivered", "undeliverable", "expired", "rejected", "deleted"})
# Progress rank of the non-final states; a non-final status only moves to a higher rank,
# except between the two intermediates, which share a rank and may alternate.
_RANK = {
    "accepted": 0,
    "pending": 1,
    "queued": 1,
    "submitted": 2,
    "enroute": 3,
    "smsc_accepted": 3,
}


def is_final(status: AnyStatus) -> bool:
    """True when no further receipt or timer is expected for this status."""
    return status in _FINAL_VALUES


def is_intermediate(status: AnyStatus) -> bool:
    """True for the SMSC's intermediate notifications (enroute, smsc_accepted)."""
    return status in _INTERMEDIATE_VALUES


def is_success(status: AnyStatus) -> bool:
    return status == "delivered"


def is_failure(status: AnyStatus) -> bool:
    """A final state other than delivered."""
    return status in _FINAL_VALUES and status != "delivered"


def can_transition(old: AnyStatus, new: AnyStatus) -> bool:
    """Whether `old` may be replaced by `new` (same status is never a transition)."""
    # Members are str subclasses: comparing them to the plain value strings skips the
    # (slow) `.value` descriptor.
    old_value: str = old
    new_value: str = new
    if old_value == new_value:
        return False
    if old_value in _FINAL_VALUES:
        return old_value == "unknown" and new_value in _DEFINITIVE_VALUES
    if new_value in _FINAL_VALUES:
        return True
    old_rank, new_rank = _RANK[old_value], _RANK[new_value]
    return new_rank > old_rank or (new_rank == old_rank == 3)


@dataclass(slots=True)
class StatusEvent:
    """One history entry: what was reported, when, by whom, and whether it changed the state.

    A value: never mutate one (not frozen only because frozen init is slow on the hot path).
    `at` is the caller's clock (persisted history should use Unix time). `detail` carries the
    evidence: raw stat/err words, an SMPP command_status name, a timeout reason.
    """

    at: float
    status: AnyStatus
    source: StatusSource
    detail: str = ""
    changed: bool = True


@dataclass(slots=True)
class Advance:
    """Result of `advance`: the status to keep and the history entry to record."""

    status: AnyStatus
    event: StatusEvent

    @property
    def changed(self) -> bool:
        return self.event.changed


def advance(
    current: AnyStatus, reported: AnyStatus, *, at: float, source: StatusSource, detail: str = ""
) -> Advance:
    """Apply a reported status: the new status if the rule allows it, else keep `current`.

    Always returns an event, so duplicates and late receipts are recorded in history.
    """
    allowed = can_transition(current, reported)
    event = StatusEvent(at=at, status=reported, source=source, detail=detail, changed=allowed)
    return Advance(status=reported if allowed else current, event=event)


# --- SMPP vocabulary ---------------------------------------------------------------------------

MESSAGE_STATE_TO_STATUS: dict[int, SegmentStatus] = {
    MessageState.ENROUTE: SegmentStatus.ENROUTE,
    MessageState.DELIVERED: SegmentStatus.DELIVERED,
    MessageState.EXPIRED: SegmentStatus.EXPIRED,
    MessageState.DELETED: SegmentStatus.DELETED,
    MessageState.UNDELIVERABLE: SegmentStatus.UNDELIVERABLE,
    # Treated as intermediate: SMSCs send ACCEPTD for "accepted by the SMSC", not for the
    # customer-service meaning SMPP 3.4 gives it.
    MessageState.ACCEPTED: SegmentStatus.SMSC_ACCEPTED,
    MessageState.UNKNOWN: SegmentStatus.UNKNOWN,
    MessageState.REJECTED: SegmentStatus.REJECTED,
}

# Receipt `stat:` words, upper-cased. The 7-letter SMPP appendix B words first, then the
# spellings seen from real SMSCs. Anything else is not guessed at.
STAT_WORD_TO_STATUS: dict[str, SegmentStatus] = {
    "DELIVRD": SegmentStatus.DELIVERED,
    "DELIVERED": SegmentStatus.DELIVERED,
    "DELIVERD": SegmentStatus.DELIVERED,
    "DELIVR": SegmentStatus.DELIVERED,
    "EXPIRED": SegmentStatus.EXPIRED,
    "EXPIRD": SegmentStatus.EXPIRED,
    "DELETED": SegmentStatus.DELETED,
    "DELETD": SegmentStatus.DELETED,
    "UNDELIV": SegmentStatus.UNDELIVERABLE,
    "UNDELIVERABLE": SegmentStatus.UNDELIVERABLE,
    "UNDELIVRD": SegmentStatus.UNDELIVERABLE,
    "UNDELIVERED": SegmentStatus.UNDELIVERABLE,
    "UNDELIVR": SegmentStatus.UNDELIVERABLE,
    "FAILED": SegmentStatus.UNDELIVERABLE,
    "ACCEPTD": SegmentStatus.SMSC_ACCEPTED,
    "ACCEPTED": SegmentStatus.SMSC_ACCEPTED,
    "UNKNOWN": SegmentStatus.UNKNOWN,
    "UNKNOWNS": SegmentStatus.UNKNOWN,
    "UNKNWN": SegmentStatus.UNKNOWN,
    "REJECTD": SegmentStatus.REJECTED,
    "REJECTED": SegmentStatus.REJECTED,
    "ENROUTE": SegmentStatus.ENROUTE,
    "EN_ROUTE": SegmentStatus.ENROUTE,
    "BUFFRED": SegmentStatus.ENROUTE,
    "BUFFERED": SegmentStatus.ENROUTE,
}


def status_from_message_state(state: int) -> SegmentStatus | None:
    """SMPP message_state (1..8) to a segment status; None for values outside the spec."""
    return MESSAGE_STATE_TO_STATUS.get(state)


def status_from_stat_word(word: str) -> SegmentStatus | None:
    """A receipt `stat:` word (any case; a bare message_state digit also works) or None."""
    key = word.strip().upper()
    found = STAT_WORD_TO_STATUS.get(key)
    if found is None and key.isascii() and key.isdigit():
        return MESSAGE_STATE_TO_STATUS.get(int(key))
    return found


# TP-Status of an SMS-STATUS-REPORT (3GPP TS 23.040 9.2.3.15) in the same model: completed is
# delivered; "still trying" stays intermediate (enroute), never final; permanent errors and
# temporary errors the service centre gave up on are final.
TP_STATUS_VALIDITY_EXPIRED = (0x46, 0x65)  # permanent / temporary-gave-up "validity expired"
TP_STATUS_DELETED = (0x47, 0x48)  # deleted by the originating SME / by the SC administration
TP_STATUS_REJECTED = (0x45,)  # error in the destination SME: refused by it


def status_from_tp_status(tp_status: int) -> SegmentStatus:
    """A modem's status report (TP-ST, 0-255) as a segment status. Reserved and SC-specific
    values count with their range; values with bit 7 set (all reserved) as undeliverable."""
    if tp_status < 0x20:
        return SegmentStatus.DELIVERED
    if tp_status < 0x40:
        return SegmentStatus.ENROUTE
    if tp_status in TP_STATUS_VALIDITY_EXPIRED:
        return SegmentStatus.EXPIRED
    if tp_status in TP_STATUS_DELETED:
        return SegmentStatus.DELETED
    if tp_status in TP_STATUS_REJECTED:
        return SegmentStatus.REJECTED
    return SegmentStatus.UNDELIVERABLE


_STATUS_TO_STAT_WORD: dict[str, tuple[str, int]] = {
    "accepted": ("ENROUTE", MessageState.ENROUTE),
    "queued": ("ENROUTE", MessageState.ENROUTE),
    "pending": ("ENROUTE", MessageState.ENROUTE),
    "submitted": ("ENROUTE", MessageState.ENROUTE),
    "enroute": ("ENROUTE", MessageState.ENROUTE),
    "smsc_accepted": ("ACCEPTD", MessageState.ACCEPTED),
    "delivered": ("DELIVRD", MessageState.DELIVERED),
    "undeliverable": ("UNDELIV", MessageState.UNDELIVERABLE),
    "expired": ("EXPIRED", MessageState.EXPIRED),
    "rejected": ("REJECTD", MessageState.REJECTED),
    "deleted": ("DELETED", MessageState.DELETED),
    "unknown": ("UNKNOWN", MessageState.UNKNOWN),
    # A permanent submit error is, to the customer, a message the network refused.
    "failed": ("REJECTD", MessageState.REJECTED),
}


def stat_word(status: AnyStatus) -> str:
    """The receipt `stat:` word we send for a status (DELIVRD, UNDELIV, ...)."""
    return _STATUS_TO_STAT_WORD[status][0]


def message_state(status: AnyStatus) -> int:
    """The SMPP message_state number we send for a status."""
    return int(_STATUS_TO_STAT_WORD[status][1])


# A dict, not MessageStatus(value): enum lookup by value is slow on the receipt hot path.
_SEGMENT_TO_MESSAGE: dict[SegmentStatus, MessageStatus] = {
    segment: MessageStatus.QUEUED
    if segment is SegmentStatus.PENDING
    else MessageStatus(segment.value)
    for segment in SegmentStatus
}


def segment_to_message_status(status: SegmentStatus) -> MessageStatus:
    """The message status a single segment status corresponds to (pending -> queued)."""
    return _SEGMENT_TO_MESSAGE[status]


def submit_error_detail(command_status: int) -> str:
    """History detail for a failed submit: the SMPP status by name and number, so it is kept.

    E.g. "ESME_RINVDSTADR (0x0000000B)", or "0x00000401 (0x00000401)" for a vendor code.
    """
    return f"{status_name(command_status)} (0x{command_status & 0xFFFFFFFF:08X})"
