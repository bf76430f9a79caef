"""The message data model: what one MT is, what its segments and history entries are, and our ids.

Owns: `Message` (one customer MT as accepted by an intake link), `Segment` (one submit_sm of it on
one link, with the carrier's id for receipt correlation), `HistoryEntry` (one recorded event),
the message id format, and the priority each kind of traffic gets.

Never does: I/O, persistence, status decisions. Statuses are the enums of `dlr.status`; the store
and the links decide transitions, this module only carries the data.

Conventions every room relies on:
- `destination` holds E.164 digits without the leading '+', e.g. "447700900123": that is how SMPP
  carries an international number (TON 1, NPI 1) and how routing prefix tables match it.
- Times (`send_at`, `validity_at`, `next_attempt_at`, `created_at`, ...) are unix seconds (float):
  they are absolute instants that must survive a restart, so a monotonic clock cannot express them.
- `priority`: lower is sooner, 0..9. Left at `PRIORITY_FROM_KIND` it follows `kind` (OTP first).
- `Segment.index` is 0-based; `Segment.total` is the number of parts of the message.
"""

from __future__ import annotations

import array
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from enum import StrEnum

from dlr.status import MessageStatus, SegmentStatus, StatusEvent
from routing.config import MessageKind as MessageKind  # one enum: routes match on it too


class Channel(StrEnum):
    """The intake link a message came in through."""

    HTTP = "http"
    SMPP = "smpp"
    INTERNAL = "internal"  # the gateway's own messages: keyword replies (gateway.inbound)


@dataclass(slots=True, frozen=True)
class Tenant:
    """Whose a message is: the channel and the principal within it (an API key's name for HTTP,
    an account's system_id for SMPP). Key and account names are separate namespaces, so an
    HTTP key and an SMPP account that share a name are two tenants: every read, cancel and
    receipt compares the whole tenant, never the name alone."""

    channel: Channel
    principal: str


KIND_PRIORITY: dict[MessageKind, int] = {
    MessageKind.OTP: 0,
    MessageKind.TRANSACTIONAL: 5,
    MessageKind.BULK: 9,
}
PRIORITY_FROM_KIND = -1  # sentinel default: replaced by KIND_PRIORITY[kind] on construction


class MessageIdGenerator:
    """Our message ids: 20 lowercase hex chars, unique, time-ordered, URL-safe, unpredictable.

    The id is an 80-bit number: 48 bits of unix milliseconds then 32 bits. The first id of a
    millisecond takes 32 random bits; a later one in the same millisecond (or after the wall
    clock stepped back) is the previous id plus 1 + 24 random bits. Ids from one generator
    therefore sort in creation order (even if the wall clock steps back, the value only grows):
    the store relies on that (`load_pending` resumes in id order, and ids are the key of the
    message tables, so inserts append). Knowing one id does not tell the next: the random bits
    come from the operating system's CSPRNG (`os.urandom`), never from `random`'s Mersenne
    Twister, whose output can be reconstructed from what it produced. Two processes collide only
    if they draw the same bits in the same millisecond.
    """

    __slots__ = ("__weakref__", "_last", "_lock", "_pool")

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()  # ids may be minted from executor threads too
        self._pool = array.array("I")  # random 32-bit numbers, drawn from the end
        _GENERATORS.add(self)

    def next_id(self, now_ms: int) -> str:
        with self._lock:
            pool = self._pool
            if not pool:
                # One syscall per 1024 ids: a syscall per id cost more than the rest of the id.
                pool.frombytes(os.urandom(4096))
            noise = pool.pop()
            candidate = (now_ms << 32) | noise
            # Within one millisecond (or after a clock step back) step up from the last id.
            if candidate >> 32 <= self._last >> 32:
                candidate = self._last + 1 + (noise >> 8)
            self._last = candidate
        return f"{candidate:020x}"

    def _forget_pool(self) -> None:
        self._pool = array.array("I")


# A forked child must not mint ids from its parent's pool: it would repeat the parent's.
_GENERATORS: weakref.WeakSet[MessageIdGenerator] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for generator in list(_GENERATORS):
        generator._forget_pool()


os.register_at_fork(after_in_child=_after_fork_in_child)

_default_ids = MessageIdGenerator()


def new_message_id() -> str:
    """A fresh message id from the process-wide generator (reads the wall clock)."""
    return _default_ids.next_id(time.time_ns() // 1_000_000)


@dataclass(slots=True)
class Message:
    """One MT as accepted from a customer, with its routing and delivery state."""

    account: str
    channel: Channel
    source_addr: str
    destination: str  # E.164 digits without '+'
    body: bytes  # the full message, encoded per data_coding; links segment it
    id: str = field(default_factory=new_message_id)
    source_ton: int = 0
    source_npi: int = 0
    kind: MessageKind = MessageKind.TRANSACTIONAL
    priority: int = PRIORITY_FROM_KIND
    data_coding: int = 0
    text: str | None = None  # the text as the customer sent it, when it was text
    esm_class: int = 0
    registered_delivery: int = 1  # receipts on final outcome: the gateway tracks delivery
    validity_at: float | None = None  # not delivered by then: EXPIRED, never sent late
    send_at: float | None = None  # scheduled delivery: held in the queue until then
    route: str | None = None  # name of the route rule that matched
    targets: list[str] = field(default_factory=list)  # candidate links, in route order
    strategy: str | None = None  # how the route spreads over targets (routing's vocabulary)
    link: str | None = None  # the link it was (last) given to
    status: MessageStatus = MessageStatus.ACCEPTED
    attempts: int = 0  # send attempts that reached an outcome (submitted, retried, failed)
    next_attempt_at: float | None = None  # backoff: not before this
    last_error: str | None = None
    callback_url: str | None = None
    reference: str | None = None  # the customer's own reference, echoed back
    created_at: float = field(default_factory=time.time)
    updated_at: float = 0.0  # 0.0: same as created_at

    def __post_init__(self) -> None:
        if self.priority == PRIORITY_FROM_KIND:
            self.priority = KIND_PRIORITY[self.kind]
        if not self.updated_at:
            self.updated_at = self.created_at

    @property
    def tenant(self) -> Tenant:
        return Tenant(self.channel, self.account)

    @property
    def due_at(self) -> float:
        """The earliest instant it may be sent: its schedule and its backoff both respected."""
        return max(self.send_at or 0.0, self.next_attempt_at or 0.0)

    def is_expired(self, now: float) -> bool:
        return self.validity_at is not None and self.validity_at <= now


@dataclass(slots=True)
class Segment:
    """One submitted part of a message on one link; `carrier_id` is canonical (dlr.ids)."""

    message_id: str
    index: int  # 0-based
    total: int
    status: SegmentStatus = SegmentStatus.SUBMITTED
    link: str | None = None
    carrier_id: str | None = None
    submitted_at: float | None = None
    changed_at: float | None = None  # last status change (first failure wins, by this time)
    done_at: float | None = None  # when it reached a final status
    error: str | None = None  # SMPP error / receipt err field
    network_error: str | None = None  # network_error_code TLV, as text


@dataclass(slots=True, frozen=True)
class HistoryEntry:
    """One recorded event of a message: `dlr.status.StatusEvent` (what was reported, when, by
    whom, whether it changed anything) placed on the message, or on one segment of it."""

    message_id: str
    event: StatusEvent
    segment_index: int | None = None  # None: the message as a whole
