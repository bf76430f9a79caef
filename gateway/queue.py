"""The in-memory send queue: which message each outbound link sends next, and when.

Owns `SendQueue` (sans-IO: per-link priority queues, scheduled and backed-off messages held until
due, expired ones handed back instead of sent), `RetryPolicy` (the backoff for temporary
failures) and `AsyncSendQueue` (the thin awaitable face senders use: `await queue.get(link)`).

Never does: persistence or status decisions. The store is the truth; this queue is rebuilt from
`MessageStore.load_pending()` on start and fed by intake and requeues. Expired messages are given
back to the caller, which marks them EXPIRED in the store; they are never sent late.

Order within a link: priority first (lower = sooner; OTP before bulk), then the instant the
message became sendable (its creation, schedule or backoff time), then arrival order.
Times are unix seconds, like the message fields they come from.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.messages import Message


@dataclass(slots=True, frozen=True)
class RetryPolicy:
    """Exponential backoff for temporary failures: base * factor**(attempts - 1), capped."""

    base: float = 5.0
    factor: float = 2.0
    cap: float = 600.0
    max_attempts: int = 10

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed attempt (1 = the first failure)."""
        exponent = max(attempts - 1, 0)
        # Guard the power against overflow for absurd attempt counts; the cap wins anyway.
        if exponent > 64:
            return self.cap
        return float(min(self.cap, self.base * self.factor**exponent))

    def next_attempt_at(self, now: float, attempts: int) -> float:
        return now + self.delay(attempts)

    def exhausted(self, attempts: int) -> bool:
        """True once `attempts` attempts were made and no more are allowed."""
        return attempts >= self.max_attempts


@dataclass(slots=True)
class _Entry:
    message: Message
    link: str
    sequence: int
    removed: bool = False

    @property
    def ready_key(self) -> tuple[int, float, int]:
        m = self.message
        return (m.priority, max(m.due_at, m.created_at), self.sequence)


@dataclass(slots=True)
class _LinkQueue:
    # (priority, sendable since, sequence, entry): what may go now.
    ready: list[tuple[int, float, int, _Entry]] = field(default_factory=list)
    # (wake at, sequence, entry): not due yet; wake at due time or at validity end if sooner.
    waiting: list[tuple[float, int, _Entry]] = field(default_factory=list)


class SendQueue:
    """Per-link priority queues with scheduled delivery and expiry (sans-IO: pass `now`)."""

    def __init__(self) -> None:
        self._links: dict[str, _LinkQueue] = {}
        self._entries: dict[str, _Entry] = {}  # by message id: for remove() and duplicates
        self._depth: Counter[tuple[str, int]] = Counter()  # (link, priority) -> messages
        self._link_depth: Counter[str] = Counter()  # what back-pressure reads, per message
        self._route_depth: Counter[str | None] = Counter()
        self._sequence = itertools.count()
        self._expired: list[Message] = []

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._entries

    def put(self, message: Message, link: str, now: float) -> None:
        """Queue `message` for `link`; if it was queued already, its old place is dropped."""
        self._push(message, link, next(self._sequence), now)

    def pop(self, link: str, now: float) -> Message | None:
        """The next message `link` should send now, or None. Expired ones met on the way are
        set aside for `take_expired()` instead of being returned."""
        queue = self._links.get(link)
        if queue is None:
            return None
        self._promote(queue, now)
        while queue.ready:
            entry = heapq.heappop(queue.ready)[3]
            if entry.removed:
                continue
            self._forget(entry)
            if entry.message.is_expired(now):
                self._expired.append(entry.message)
                continue
            return entry.message
        return None

    def take_expired(self) -> list[Message]:
        """Messages found expired since the last call; the caller marks them EXPIRED."""
        expired, self._expired = self._expired, []
        return expired

    def next_wake(self, link: str) -> float | None:
        """When `pop(link)` may next have something that is not there now (None: nothing held)."""
        queue = self._links.get(link)
        if queue is None:
            return None
        while queue.waiting and queue.waiting[0][2].removed:
            heapq.heappop(queue.waiting)
        return queue.waiting[0][0] if queue.waiting else None

    def remove(self, message_id: str) -> Message | None:
        """Take a message out (e.g. to cancel it); None if no sender can be stopped from
        taking it because it is not queued (already handed out, or never here)."""
        entry = self._entries.get(message_id)
        if entry is None:
            return None
        self._forget(entry)
        return entry.message

    def move(
        self,
        from_link: str,
        to_link: str,
        now: float,
        *,
        only: Callable[[Message], bool] | None = None,
    ) -> int:
        """Failover: hand `from_link`'s messages (those `only` accepts) to `to_link`, keeping
        their order. Returns how many moved."""
        queue = self._links.get(from_link)
        if queue is None or from_link == to_link:
            return 0
        entries = [item[3] for item in queue.ready] + [item[2] for item in queue.waiting]
        entries = [e for e in entries if not e.removed and (only is None or only(e.message))]
        entries.sort(key=lambda e: e.sequence)
        for entry in entries:
            self._forget(entry)
            self._push(entry.message, to_link, entry.sequence, now)
        return len(entries)

    def size(self, link: str) -> int:
        return self._link_depth[link]

    def route_size(self, route: str) -> int:
        return self._route_depth[route]

    def depth(self) -> dict[str, dict[int, int]]:
        """Queued messages per link and priority (scheduled ones included), for metrics."""
        result: dict[str, dict[int, int]] = {}
        for (link, priority), count in self._depth.items():
            if count:
                result.setdefault(link, {})[priority] = count
        return result

    def _push(self, message: Message, link: str, sequence: int, now: float) -> None:
        old = self._entries.get(message.id)
        if old is not None:
            self._forget(old)
        entry = _Entry(message, link, sequence)
        self._entries[message.id] = entry
        self._depth[(link, message.priority)] += 1
        self._link_depth[link] += 1
        self._route_depth[message.route] += 1
        queue = self._links.get(link)
        if queue is None:
            queue = self._links[link] = _LinkQueue()
        due = message.due_at
        if due <= now:
            heapq.heappush(queue.ready, (*entry.ready_key, entry))
        else:
            wake = due if message.validity_at is None else min(due, message.validity_at)
            heapq.heappush(queue.waiting, (wake, sequence, entry))

    def _promote(self, queue: _LinkQueue, now: float) -> None:
        """Move what became due into the ready heap; expire what ran out of validity waiting."""
        while queue.waiting and queue.waiting[0][0] <= now:
            _, sequence, entry = heapq.heappop(queue.waiting)
            if entry.removed:
                continue
            if entry.message.is_expired(now):
                self._forget(entry)
                self._expired.append(entry.message)
            elif entry.message.due_at <= now:
                heapq.heappush(queue.ready, (*entry.ready_key, entry))
            else:  # woke for a validity end that has not come yet (clock granularity)
                heapq.heappush(queue.waiting, (entry.message.due_at, sequence, entry))

    def _forget(self, entry: _Entry) -> None:
        # Heaps keep the entry until they reach it (lazy deletion); index and counts drop it now.
        entry.removed = True
        del self._entries[entry.message.id]
        self._depth[(entry.link, entry.message.priority)] -= 1
        self._link_depth[entry.link] -= 1
        self._route_depth[entry.message.route] -= 1


class AsyncSendQueue:
    """`SendQueue` for asyncio senders: `put` wakes them, `await get(link)` waits until due.

    `on_expired` receives messages found expired (the caller marks them EXPIRED in the store);
    it is called synchronously, so it should schedule work rather than do it.
    """

    def __init__(
        self,
        on_expired: Callable[[list[Message]], None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.core = SendQueue()
        self._on_expired = on_expired
        self._clock = clock
        self._wakeups: dict[str, asyncio.Event] = {}

    def put(self, message: Message, link: str) -> None:
        self.core.put(message, link, self._clock())
        self._wake(link)

    async def get(self, link: str) -> Message:
        """The next message for `link`, waiting for one to arrive or become due."""
        wakeup = self._wakeups.setdefault(link, asyncio.Event())
        while True:
            now = self._clock()
            message = self.core.pop(link, now)
            self._hand_over_expired()
            if message is not None:
                return message
            wake_at = self.core.next_wake(link)
            wakeup.clear()
            timeout = None if wake_at is None else max(wake_at - now, 0.0)
            try:
                await asyncio.wait_for(wakeup.wait(), timeout)
            except TimeoutError:
                pass

    def remove(self, message_id: str) -> Message | None:
        return self.core.remove(message_id)

    def move(
        self, from_link: str, to_link: str, *, only: Callable[[Message], bool] | None = None
    ) -> int:
        moved = self.core.move(from_link, to_link, self._clock(), only=only)
        if moved:
            self._wake(to_link)
        return moved

    def depth(self) -> dict[str, dict[int, int]]:
        return self.core.depth()

    def size(self, link: str) -> int:
        """Messages queued for `link`, scheduled ones included."""
        return self.core.size(link)

    def route_size(self, route: str) -> int:
        """Messages of `route` queued on any of its links."""
        return self.core.route_size(route)

    def _wake(self, link: str) -> None:
        wakeup = self._wakeups.get(link)
        if wakeup is not None:
            wakeup.set()

    def _hand_over_expired(self) -> None:
        expired = self.core.take_expired()
        if expired:
            self._on_expired(expired)
