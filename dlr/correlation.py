"""Matching receipts to the segments they report on, including receipts that arrive early.

Owns `Correlator`: a bounded, time-limited hold for receipts whose carrier id is not known yet
(the SMSC sent the receipt before, or on another bind faster than, the submit_sm_resp), and a
short memory of recent submit results that closes the race between a store miss and the hold.
Must never read a clock, await, or talk to the store: the persistent mapping
(key -> message id, segment index) lives in the store, and the caller looks it up.

How a link adapter uses it
--------------------------
On a receipt::

    key = smpp_receipt_key(link, receipt.message_id, link_dlr_id_format)
    target = await store.find_segment(key)              # the persistent mapping
    outcome = correlator.on_receipt(key, receipt, now, found=target)
    if isinstance(outcome, ApplyReceipt): apply it      # else it is held (count it)

On a submit_sm_resp OK::

    key = smpp_receipt_key(link, resp.message_id, link_resp_id_format)
    await store.record_carrier_id(key, target)
    for early in correlator.on_submit_resp(key, target, now): apply it

On a timer (`next_deadline()`): `correlator.expire(now)` returns the receipts dropped unmatched.

The key type is generic: SMPP links use `SmppReceiptKey(link, canonical id)`; a GSM modem's
status reports can use their own hashable key (modem, TP-MR, destination, ...).
"""

from __future__ import annotations

import enum
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

KeyT = TypeVar("KeyT", bound=Hashable)
ReceiptT = TypeVar("ReceiptT")


@dataclass(slots=True, frozen=True)
class SegmentRef:
    """What a carrier id points at: our message id and the segment's index (0-based)."""

    message_id: str
    segment_index: int


@dataclass(slots=True, frozen=True)
class ApplyReceipt(Generic[KeyT, ReceiptT]):
    """Apply `receipt` to `target` now. `received_at` is when the receipt arrived."""

    key: KeyT
    receipt: ReceiptT
    target: SegmentRef
    received_at: float
    was_held: bool = False


class DropReason(enum.StrEnum):
    EXPIRED = "expired"  # no submit result within hold_seconds
    OVERFLOW = "overflow"  # the hold was full; the oldest receipt made room


@dataclass(slots=True, frozen=True)
class DroppedReceipt(Generic[KeyT, ReceiptT]):
    key: KeyT
    receipt: ReceiptT
    received_at: float
    reason: DropReason


@dataclass(slots=True, frozen=True)
class HeldReceipt(Generic[KeyT, ReceiptT]):
    """The receipt waits for its submit result until `deadline`; `evicted` made room for it."""

    key: KeyT
    receipt: ReceiptT
    deadline: float
    evicted: DroppedReceipt[KeyT, ReceiptT] | None = None


@dataclass(slots=True)
class _Entry(Generic[KeyT, ReceiptT]):
    key: KeyT
    receipt: ReceiptT
    received_at: float
    deadline: float
    live: bool = True


@dataclass(slots=True)
class CorrelatorStats:
    held: int = 0  # receipts currently waiting
    applied_after_hold: int = 0
    applied_from_memory: int = 0
    dropped_expired: int = 0
    dropped_overflow: int = 0


@dataclass(slots=True)
class Correlator(Generic[KeyT, ReceiptT]):
    """Hold for early receipts, bounded by `max_held` receipts and `hold_seconds` each.

    `remember_seconds` / `max_remembered` bound the memory of recent submit results, which only
    needs to cover the time between a store miss and the call to `on_receipt`.
    """

    max_held: int = 10_000
    hold_seconds: float = 120.0
    remember_seconds: float = 30.0
    max_remembered: int = 100_000
    stats: CorrelatorStats = field(default_factory=CorrelatorStats)
    # Arrival order equals deadline order (one hold_seconds for all), so a deque suffices;
    # released entries are marked dead and skipped when they reach the front.
    _order: deque[_Entry[KeyT, ReceiptT]] = field(init=False, repr=False, default_factory=deque)
    _by_key: dict[KeyT, list[_Entry[KeyT, ReceiptT]]] = field(
        init=False, repr=False, default_factory=dict
    )
    _recent: OrderedDict[KeyT, tuple[SegmentRef, float]] = field(
        init=False, repr=False, default_factory=OrderedDict
    )

    def __post_init__(self) -> None:
        if self.max_held < 1 or self.hold_seconds <= 0:
            raise ValueError("max_held must be >= 1 and hold_seconds > 0")

    def on_receipt(
        self, key: KeyT, receipt: ReceiptT, now: float, *, found: SegmentRef | None = None
    ) -> ApplyReceipt[KeyT, ReceiptT] | HeldReceipt[KeyT, ReceiptT]:
        """Apply if the caller `found` the target or a recent submit result names it; else hold."""
        if found is not None:
            return ApplyReceipt(key, receipt, found, now)
        remembered = self._recent.get(key)
        if remembered is not None and remembered[1] > now:
            self.stats.applied_from_memory += 1
            return ApplyReceipt(key, receipt, remembered[0], now)
        evicted = self._evict_oldest() if self.stats.held >= self.max_held else None
        entry = _Entry(key, receipt, now, now + self.hold_seconds)
        self._order.append(entry)
        self._by_key.setdefault(key, []).append(entry)
        self.stats.held += 1
        return HeldReceipt(key, receipt, entry.deadline, evicted)

    def on_submit_resp(
        self, key: KeyT, target: SegmentRef, now: float
    ) -> list[ApplyReceipt[KeyT, ReceiptT]]:
        """Record a carrier id's target; return the receipts held for it, in arrival order."""
        if self.remember_seconds > 0:
            self._recent[key] = (target, now + self.remember_seconds)
            self._recent.move_to_end(key)
            while len(self._recent) > self.max_remembered:
                self._recent.popitem(last=False)
        entries = self._by_key.pop(key, None)
        if not entries:
            return []
        released = []
        for entry in entries:
            entry.live = False
            released.append(ApplyReceipt(key, entry.receipt, target, entry.received_at, True))
        self.stats.held -= len(entries)
        self.stats.applied_after_hold += len(entries)
        return released

    def expire(self, now: float) -> list[DroppedReceipt[KeyT, ReceiptT]]:
        """Drop held receipts whose time is up, and forget stale submit results."""
        dropped: list[DroppedReceipt[KeyT, ReceiptT]] = []
        order = self._order
        while order and (not order[0].live or order[0].deadline <= now):
            entry = order.popleft()
            if entry.live:
                self._forget(entry)
                self.stats.dropped_expired += 1
                dropped.append(
                    DroppedReceipt(entry.key, entry.receipt, entry.received_at, DropReason.EXPIRED)
                )
        recent = self._recent
        while recent:
            _, (_, until) = next(iter(recent.items()))
            if until > now:
                break
            recent.popitem(last=False)
        return dropped

    def next_deadline(self) -> float | None:
        """When `expire` next has work for held receipts (None when nothing is held)."""
        order = self._order
        while order and not order[0].live:
            order.popleft()
        return order[0].deadline if order else None

    def held_keys(self, limit: int | None = None) -> list[KeyT]:
        """The keys receipts are held for, oldest first (at most `limit`): where another
        process records submit results, the caller asks the store for these again."""
        keys: list[KeyT] = []
        for key in self._by_key:
            if limit is not None and len(keys) >= limit:
                break
            keys.append(key)
        return keys

    def held_for(self, key: KeyT) -> list[ReceiptT]:
        return [entry.receipt for entry in self._by_key.get(key, ())]

    def _evict_oldest(self) -> DroppedReceipt[KeyT, ReceiptT] | None:
        order = self._order
        while order:
            entry = order.popleft()
            if entry.live:
                self._forget(entry)
                self.stats.dropped_overflow += 1
                return DroppedReceipt(
                    entry.key, entry.receipt, entry.received_at, DropReason.OVERFLOW
                )
        return None

    def _forget(self, entry: _Entry[KeyT, ReceiptT]) -> None:
        entry.live = False
        self.stats.held -= 1
        siblings = self._by_key.get(entry.key)
        if siblings is not None:
            siblings.remove(entry)
            if not siblings:
                del self._by_key[entry.key]
