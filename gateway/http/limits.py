"""Per-key rate limits of the HTTP API: requests per second and messages per second.

Owns `TokenBucket` and `KeyLimits` (one pair of buckets per API key). Sans-IO: callers pass
`now` (monotonic seconds) and get back how long to wait, which becomes `Retry-After`.

Never does: sleep or queue requests. Over the limit, a request is refused (429) at once.

Several nodes on one PostgreSQL (docs/scale-out.md) share each key's limits: a request that
passes its node's buckets is also counted in the key's fixed window in the database
(`SharedWindows`), so N nodes behind a load balancer let a key through at its rate, not N times
it. A window lasts one second (or 1/rate for rates under one per second) by the database's clock
and admits `rate x length` (at least one); a batch larger than that is let through into an
empty window only. A node takes its part of a window in chunks of a twentieth of it
(`SharedAllowances`), so a busy key costs one round trip per chunk, not one per request (every
request updating the key's one row was what held a PostgreSQL node to 0.41 of SQLite's rate).
What a node holds unused when the window ends is lost to the others: together the nodes admit
at most the rate, and at least the rate less one chunk per node.

A bucket holds up to one second of its rate (at least one token). A request that needs more
tokens than the bucket can ever hold (a batch of 1,000 recipients on a 50 messages/s key) is let
through when the bucket is full and leaves it in debt, so batches pay for themselves by making
the next requests wait instead of being impossible.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(slots=True)
class TokenBucket:
    rate: float  # tokens per second
    capacity: float
    tokens: float = -1.0  # -1: full on first use
    updated_at: float = 0.0

    @classmethod
    def per_second(cls, rate: float) -> TokenBucket:
        return cls(rate=rate, capacity=max(1.0, rate))

    def take(self, amount: float, now: float) -> float:
        """Take `amount` tokens: 0.0 when taken, else the seconds until it would succeed."""
        if self.tokens < 0 and self.updated_at == 0.0:
            self.tokens = self.capacity
        else:
            elapsed = max(0.0, now - self.updated_at)
            self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated_at = now
        needed = min(amount, self.capacity)
        if self.tokens + 1e-9 >= needed:
            self.tokens -= amount
            return 0.0
        return (needed - self.tokens) / self.rate


@dataclass(slots=True)
class KeyLimits:
    """The buckets of every key, created on first use with the key's rates."""

    _buckets: dict[str, tuple[TokenBucket, TokenBucket]] = field(default_factory=dict)

    def _pair(
        self, key_id: str, requests_per_second: float, messages_per_second: float
    ) -> tuple[TokenBucket, TokenBucket]:
        pair = self._buckets.get(key_id)
        if (
            pair is None
            or pair[0].rate != requests_per_second
            or pair[1].rate != messages_per_second
        ):
            pair = (
                TokenBucket.per_second(requests_per_second),
                TokenBucket.per_second(messages_per_second),
            )
            self._buckets[key_id] = pair
        return pair

    def request(self, key_id: str, rps: float, mps: float, now: float) -> float:
        """One request: 0.0 or the seconds to wait."""
        return self._pair(key_id, rps, mps)[0].take(1, now)

    def messages(self, key_id: str, rps: float, mps: float, count: int, now: float) -> float:
        """`count` messages about to be sent: 0.0 or the seconds to wait."""
        return self._pair(key_id, rps, mps)[1].take(count, now)


class SharedWindows(Protocol):
    """The database side (`gateway.store.postgres.PostgresMessageStore.count_in_window`)."""

    async def count_in_window(
        self, key_id: str, kind: str, amount: float, seconds: float
    ) -> tuple[float, float]:
        """Add `amount` to the key's current window of `kind`; (the window's total with it,
        seconds until the window ends)."""
        ...


def window_of(rate: float) -> tuple[float, float]:
    """(length in seconds, amount admitted) of the fixed window for `rate` per second."""
    seconds = max(1.0, 1.0 / rate)
    return seconds, rate * seconds


@dataclass(slots=True)
class _Share:
    left: float  # of what this node took from the window, not used yet
    until: float  # monotonic seconds: when the window ends
    full: bool  # the window had no more to give


class SharedAllowances:
    """This node's shares of the keys' shared windows, taken `CHUNK` of a window at a time."""

    CHUNK = 1 / 20

    def __init__(self, windows: SharedWindows, clock: Callable[[], float] = time.monotonic) -> None:
        self._windows = windows
        self._clock = clock
        self._shares: dict[tuple[str, str], _Share] = {}
        # One round trip at a time per key and kind: the requests that arrive meanwhile are
        # served from the chunk it brings.
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def wait(self, key_id: str, kind: str, rate: float, amount: float) -> float:
        """Take `amount` from the key's shared window of `kind`: 0.0 when within `rate`, else
        the seconds until the window ends."""
        slot = (key_id, kind)
        if (wait := self._from_share(slot, amount)) is not None:
            return wait
        lock = self._locks.get(slot)
        if lock is None:
            lock = self._locks[slot] = asyncio.Lock()
        async with lock:
            if (wait := self._from_share(slot, amount)) is not None:
                return wait
            seconds, allowed = window_of(rate)
            chunk = max(float(amount), float(math.ceil(allowed * self.CHUNK)))
            used, left = await self._windows.count_in_window(key_id, kind, chunk, seconds)
            # The window's first takes the chunk whole (a batch larger than the window goes
            # into an empty one); a later one, what of it fits under `allowed`.
            granted = chunk if used == chunk else max(0.0, min(chunk, allowed - (used - chunk)))
            share = _Share(granted, self._clock() + max(left, 0.0), granted < chunk)
            self._shares[slot] = share
            if granted + 1e-9 >= amount:
                share.left = max(0.0, granted - amount)
                return 0.0
            return max(left, 0.001)

    def _from_share(self, slot: tuple[str, str], amount: float) -> float | None:
        """0.0 when what this node holds of the window covers `amount`; the wait when the
        window is spent; None when the database must be asked."""
        share = self._shares.get(slot)
        if share is None:
            return None
        now = self._clock()
        if now >= share.until:
            del self._shares[slot]
            return None
        if share.left + 1e-9 >= amount:
            share.left -= amount
            return 0.0
        if share.full:
            return max(share.until - now, 0.001)
        return None
