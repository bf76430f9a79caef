"""The in-memory send queue: which message each outbound link sends next, and when.

Owns `SendQueue` (sans-IO: per-link priority queues, scheduled and backed-off messages held until
due, expired ones handed back instead of sent), `RetryPolicy` (the backoff for temporary
failures), `AsyncSendQueue` (the thin awaitable face senders use: `await queue.get(link)`) and
`SendGate` (until when senders may take messages at all: a cluster node's lease).

Never does: persistence or status decisions. The store is the truth; this queue is rebuilt from
the store's pending messages on start and fed by intake and requeues. Expired messages are given
back to the caller, which marks them EXPIRED in the store; they are never sent late.

A backlog waits in the store, not in memory (`in_memory`): past that many messages ready to go
for one link and priority, the queue keeps only a reference to each further one (its id in 10
octets and its route's number in 2: 12 octets, where a whole `Message` costs about 800), in
arrival order, and `AsyncSendQueue` reads them back from the store a page at a time as the link
works its way down. A million queued messages cost 12 MB this way. A message found no longer
waiting when its page is read (cancelled, expired, sent by an earlier run) is dropped then.
Messages scheduled for later stay whole in memory, as do ids not in our own format.

Order within a link: priority first (lower = sooner; OTP before bulk), then the instant the
message became sendable (its creation, schedule or backoff time), then arrival order.
Times are unix seconds, like the message fields they come from.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from gateway.messages import Message
from gateway.tasks import cancel_and_wait

log = logging.getLogger("tandem.queue")

_ID_OCTETS = 10  # our ids are 20 hex digits (gateway.messages.MessageIdGenerator)
_REF_OCTETS = 2 + _ID_OCTETS  # a route number, then the id
_TAKEN = 0xFFFF  # route number of a reference taken out (cancelled) while it waited
PAGE_RETRY_SECONDS = 1.0  # after a page could not be read from the store


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
    ready: bool = False  # in the ready heap (counted against `in_memory`)

    @property
    def ready_key(self) -> tuple[float, int, _Entry]:
        m = self.message
        return (max(m.due_at, m.created_at), self.sequence, self)


@dataclass(slots=True)
class _LinkQueue:
    # What may go now: a heap of (sendable since, sequence, entry) per priority, so that the
    # head of each is its longest-waiting message (the oldest age costs no scan).
    ready: dict[int, list[tuple[float, int, _Entry]]] = field(default_factory=dict)
    priorities: list[int] = field(default_factory=list)  # the keys of `ready`, sorted
    # (wake at, sequence, entry): not due yet; wake at due time or at validity end if sooner.
    waiting: list[tuple[float, int, _Entry]] = field(default_factory=list)

    def push_ready(self, entry: _Entry) -> None:
        priority = entry.message.priority
        heap = self.ready.get(priority)
        if heap is None:
            heap = self.ready[priority] = []
            self.priorities.append(priority)
            self.priorities.sort()
        heapq.heappush(heap, entry.ready_key)

    def ready_entries(self) -> Iterator[_Entry]:
        """Every entry of the ready heaps, removed ones included (in no order)."""
        for heap in self.ready.values():
            for item in heap:
                yield item[2]

    def oldest_ready_at(self) -> float | None:
        """The earliest `sendable since` of what may go now: the heads of the heaps, once
        entries taken out (lazily deleted) are dropped from them."""
        oldest: float | None = None
        for heap in self.ready.values():
            while heap and heap[0][2].removed:
                heapq.heappop(heap)
            if heap and (oldest is None or heap[0][0] < oldest):
                oldest = heap[0][0]
        return oldest


class StoredRef(NamedTuple):
    """A queued message known by reference only: it waits in the store."""

    message_id: str
    link: str
    priority: int
    route: str | None


@dataclass(slots=True)
class _Refs:
    """References in arrival order, `_REF_OCTETS` each, from `head` on."""

    data: bytearray = field(default_factory=bytearray)
    head: int = 0
    live: int = 0  # references not taken out


def compact_id(message_id: str) -> bytes | None:
    """The 10 octets of one of our ids, or None for an id in another format."""
    if len(message_id) != 2 * _ID_OCTETS:
        return None
    try:
        octets = bytes.fromhex(message_id)
    except ValueError:
        return None
    return octets if octets.hex() == message_id else None


class SendQueue:
    """Per-link priority queues with scheduled delivery and expiry (sans-IO: pass `now`).

    `in_memory`: messages ready to go kept whole per link and priority (None: all of them);
    further ones are kept as references (see the module's docstring) until `take_page`.
    """

    def __init__(self, in_memory: int | None = None) -> None:
        self.in_memory = in_memory
        self._links: dict[str, _LinkQueue] = {}
        self._entries: dict[str, _Entry] = {}  # by message id: for remove() and duplicates
        self._depth: Counter[tuple[str, int]] = Counter()  # (link, priority) -> messages
        self._link_depth: Counter[str] = Counter()  # what back-pressure reads, per message
        self._route_depth: Counter[str | None] = Counter()
        self._sequence = itertools.count()
        self._expired: list[Message] = []
        # The backlog kept as references: per (link, priority), in arrival order.
        self._refs: dict[tuple[str, int], _Refs] = {}
        self._refs_by_link: Counter[str] = Counter()
        self._ready: Counter[tuple[str, int]] = Counter()  # whole messages in ready heaps
        self._route_numbers: dict[str | None, int] = {None: 0}
        self._route_names: list[str | None] = [None]
        self._paging: dict[str, StoredRef] = {}  # taken for a page, not back yet
        self._paging_taken: set[str] = set()  # ... and taken out meanwhile

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._entries

    def put(self, message: Message, link: str, now: float) -> None:
        """Queue `message` for `link`; if it was queued already, its old place is dropped.
        Behind a backlog kept as references it joins them as a reference."""
        if (
            self.in_memory is not None
            and message.due_at <= now
            and self._behind_refs(link, message.priority)
            and message.id not in self._entries
        ):
            compact = compact_id(message.id)
            if compact is not None:
                self._add_ref(link, message.priority, message.route, compact)
                return
        self._push(message, link, next(self._sequence), now)

    def push(self, message: Message, link: str, now: float) -> None:
        """Queue `message` whole, whatever waits as references (a page read back)."""
        self._push(message, link, next(self._sequence), now)

    def put_ref(self, message_id: str, link: str, priority: int, route: str | None) -> bool:
        """Queue a message the store holds by reference only (start-up); False when its id is
        not in our format (the caller queues it whole)."""
        compact = compact_id(message_id)
        if compact is None:
            return False
        self._add_ref(link, priority, route, compact)
        return True

    def put_refs(self, refs: Iterable[tuple[str, int, str | None, str | None]]) -> list[str]:
        """`put_ref` for many (start-up): (message id, priority, route, link) each, in arrival
        order; one without a link is not queued. Returns the ids not in our format (the caller
        queues those whole)."""
        odd: list[str] = []
        slots: dict[tuple[str, int, str | None], tuple[_Refs, bytes, list[int]]] = {}
        fromhex = bytes.fromhex
        for message_id, priority, route, link in refs:
            if link is None:
                continue
            key = (link, priority, route)
            slot = slots.get(key)
            if slot is None:
                refs_of = self._refs.get((link, priority))
                if refs_of is None:
                    refs_of = self._refs[(link, priority)] = _Refs()
                slot = slots[key] = (refs_of, self._route_number(route).to_bytes(2, "big"), [0])
            try:
                octets = fromhex(message_id)
            except ValueError:
                octets = b""
            if len(octets) != _ID_OCTETS or octets.hex() != message_id:
                odd.append(message_id)
                continue
            slot[0].data += slot[1] + octets
            slot[2][0] += 1
        for (link, priority, route), (refs_of, _, added) in slots.items():
            refs_of.live += added[0]
            self._refs_by_link[link] += added[0]
            self._count(link, priority, route, added[0])
        return odd

    def _route_number(self, route: str | None) -> int:
        number = self._route_numbers.get(route)
        if number is None:
            number = self._route_numbers[route] = len(self._route_names)
            self._route_names.append(route)
        return number

    def _behind_refs(self, link: str, priority: int) -> bool:
        key = (link, priority)
        assert self.in_memory is not None
        if self._ready[key] >= self.in_memory:
            return True
        refs = self._refs.get(key)
        return refs is not None and refs.live > 0

    def _add_ref(self, link: str, priority: int, route: str | None, compact: bytes) -> None:
        number = self._route_number(route)
        key = (link, priority)
        refs = self._refs.get(key)
        if refs is None:
            refs = self._refs[key] = _Refs()
        refs.data += number.to_bytes(2, "big")
        refs.data += compact
        refs.live += 1
        self._refs_by_link[link] += 1
        self._count(link, priority, route, 1)

    def _count(self, link: str, priority: int, route: str | None, delta: int) -> None:
        self._depth[(link, priority)] += delta
        self._link_depth[link] += delta
        self._route_depth[route] += delta

    def page_wanted(self, link: str) -> int | None:
        """The most urgent priority of `link` whose whole messages ran below half of
        `in_memory` while references wait behind them, or None."""
        if not self._refs_by_link[link] or self.in_memory is None:
            return None
        low = max(self.in_memory // 2, 1)
        wanted = [
            priority
            for (name, priority), refs in self._refs.items()
            if name == link and refs.live and self._ready[(name, priority)] < low
        ]
        return min(wanted) if wanted else None

    def take_page(self, link: str, priority: int, count: int) -> list[StoredRef]:
        """The next `count` references of `link` and `priority`, oldest first: they stay
        counted as queued until `page_read` says what became of them."""
        refs = self._refs.get((link, priority))
        page: list[StoredRef] = []
        if refs is None:
            return page
        data, at = refs.data, refs.head
        names = self._route_names
        while len(page) < count and at < len(data):
            number = int.from_bytes(data[at : at + 2], "big")
            if number != _TAKEN:
                message_id = data[at + 2 : at + _REF_OCTETS].hex()
                ref = StoredRef(message_id, link, priority, names[number])
                page.append(ref)
                self._paging[message_id] = ref
            at += _REF_OCTETS
        refs.head = at
        refs.live -= len(page)
        self._refs_by_link[link] -= len(page)
        if refs.head == len(data):
            refs.data, refs.head = bytearray(), 0
        elif refs.head > 1 << 16 and refs.head > len(data) // 2:
            del data[: refs.head]  # the consumed front, not the whole array, is copied
            refs.head = 0
        return page

    def page_read(
        self, page: Sequence[StoredRef], still_waiting: Mapping[str, Message]
    ) -> Iterator[tuple[Message, str]]:
        """A page's messages as read back from the store: yields each still waiting with the
        link it waited for (the caller queues it, `push` or `put`); the rest are forgotten."""
        for ref in page:
            self._paging.pop(ref.message_id, None)
            if ref.message_id in self._paging_taken:
                self._paging_taken.discard(ref.message_id)
                continue  # taken out meanwhile: already uncounted
            self._count(ref.link, ref.priority, ref.route, -1)
            message = still_waiting.get(ref.message_id)
            if message is not None:
                yield message, ref.link

    def page_failed(self, page: Sequence[StoredRef]) -> None:
        """A page could not be read: its references go back to the front, in order."""
        by_key: dict[tuple[str, int], bytearray] = {}
        for ref in page:
            self._paging.pop(ref.message_id, None)
            if ref.message_id in self._paging_taken:
                self._paging_taken.discard(ref.message_id)
                continue
            compact = compact_id(ref.message_id)
            assert compact is not None
            chunk = by_key.setdefault((ref.link, ref.priority), bytearray())
            chunk += self._route_numbers[ref.route].to_bytes(2, "big")
            chunk += compact
        for (link, priority), chunk in by_key.items():
            refs = self._refs.setdefault((link, priority), _Refs())
            refs.data = chunk + refs.data[refs.head :]
            refs.head = 0
            refs.live += len(chunk) // _REF_OCTETS
            self._refs_by_link[link] += len(chunk) // _REF_OCTETS

    def held_ids(self) -> list[str]:
        """The ids held whole, and those of pages being read back (not the references still
        waiting: reading them back checks them): what a cluster node checks its claims on."""
        paging = [i for i in self._paging if i not in self._paging_taken]
        return [*self._entries, *paging]

    def take_link(self, link: str) -> tuple[list[Message], list[StoredRef]]:
        """Take out all that waits for `link` (for another node to send): its whole messages,
        scheduled ones included, in arrival order, and its references (pages being read come
        back whole, to be taken next time)."""
        queue = self._links.get(link)
        whole: list[_Entry] = []
        if queue is not None:
            whole = [*queue.ready_entries(), *(item[2] for item in queue.waiting)]
            whole = [entry for entry in whole if not entry.removed]
            whole.sort(key=lambda entry: entry.sequence)
            for entry in whole:
                self._forget(entry)
        refs: list[StoredRef] = []
        for (name, priority), stored in self._refs.items():
            if name != link or not stored.live:
                continue
            data, names = stored.data, self._route_names
            for at in range(stored.head, len(data), _REF_OCTETS):
                number = int.from_bytes(data[at : at + 2], "big")
                if number != _TAKEN:
                    route = names[number]
                    refs.append(
                        StoredRef(data[at + 2 : at + _REF_OCTETS].hex(), link, priority, route)
                    )
                    self._count(link, priority, route, -1)
            self._refs_by_link[link] -= stored.live
            stored.data, stored.head, stored.live = bytearray(), 0, 0
        return [entry.message for entry in whole], refs

    def withdraw(self, message_id: str, *, refs: bool = True) -> bool:
        """Take a message out wherever it waits (to cancel it): False if it is not queued
        (handed out to a link, or never here). `refs=False` looks only at whole messages;
        finding a reference costs a search through them (milliseconds for a million)."""
        if self.remove(message_id) is not None:
            return True
        if not refs:
            return False
        paging = self._paging.get(message_id)
        if paging is not None:
            if message_id in self._paging_taken:
                return False
            self._paging_taken.add(message_id)
            self._count(paging.link, paging.priority, paging.route, -1)
            return True
        compact = compact_id(message_id)
        if compact is None or not any(self._refs_by_link.values()):
            return False
        for (link, priority), stored in self._refs.items():
            if not stored.live:
                continue
            data = stored.data
            at = data.find(compact, stored.head)
            while at != -1:
                if at % _REF_OCTETS == 2:  # an id, not octets straddling two references
                    number = int.from_bytes(data[at - 2 : at], "big")
                    if number == _TAKEN:
                        return False
                    data[at - 2 : at] = _TAKEN.to_bytes(2, "big")
                    stored.live -= 1
                    self._refs_by_link[link] -= 1
                    self._count(link, priority, self._route_names[number], -1)
                    return True
                at = data.find(compact, at + 1)
        return False

    def refs_waiting(self, link: str | None = None) -> int:
        """References waiting (for `link`, or all), pages being read not included."""
        if link is None:
            return sum(self._refs_by_link.values())
        return self._refs_by_link[link]

    def pop(self, link: str, now: float) -> Message | None:
        """The next message `link` should send now, or None. Expired ones met on the way are
        set aside for `take_expired()` instead of being returned."""
        queue = self._links.get(link)
        if queue is None:
            return None
        self._promote(queue, now)
        ready = queue.ready
        for priority in queue.priorities:  # most urgent first
            heap = ready[priority]
            while heap:
                entry = heapq.heappop(heap)[2]
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
        entries = [*queue.ready_entries(), *(item[2] for item in queue.waiting)]
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

    def oldest_ready_at(self, link: str) -> float | None:
        """When the longest-waiting message of `link` that may go now became sendable (unix
        seconds), or None when none waits; scheduled messages not yet due do not count. Reads
        the head of each priority's heap and of each backlog of references: what a scrape
        pays does not grow with the queue."""
        queue = self._links.get(link)
        oldest = queue.oldest_ready_at() if queue is not None else None
        for (name, _), refs in self._refs.items():
            if name != link or not refs.live:
                continue
            # References wait in arrival order (skip those taken out); our ids begin with
            # their creation in milliseconds.
            at = refs.head
            while at + _REF_OCTETS < len(refs.data) and (
                int.from_bytes(refs.data[at : at + 2], "big") == _TAKEN
            ):
                at += _REF_OCTETS
            created = int.from_bytes(refs.data[at + 2 : at + 8], "big") / 1000
            if oldest is None or created < oldest:
                oldest = created
        return oldest

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
        self._count(link, message.priority, message.route, 1)
        queue = self._links.get(link)
        if queue is None:
            queue = self._links[link] = _LinkQueue()
        due = message.due_at
        if due <= now:
            entry.ready = True
            self._ready[(link, message.priority)] += 1
            queue.push_ready(entry)
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
                entry.ready = True
                self._ready[(entry.link, entry.message.priority)] += 1
                queue.push_ready(entry)
            else:  # woke for a validity end that has not come yet (clock granularity)
                heapq.heappush(queue.waiting, (entry.message.due_at, sequence, entry))

    def _forget(self, entry: _Entry) -> None:
        # Heaps keep the entry until they reach it (lazy deletion); index and counts drop it now.
        entry.removed = True
        del self._entries[entry.message.id]
        if entry.ready:
            self._ready[(entry.link, entry.message.priority)] -= 1
        self._count(entry.link, entry.message.priority, entry.message.route, -1)


Loader = Callable[[Sequence[str]], Awaitable[list[Message]]]


class SendGate:
    """Until when senders may take messages (`until`, monotonic seconds), moved on by its
    owner: a cluster node after each renewal of its lease, so that it sends only while no
    other node can have taken its messages over. While it is shut, `get` waits."""

    __slots__ = ("_moved", "until")

    def __init__(self, until: float) -> None:
        self.until = until
        self._moved = asyncio.Event()

    def is_open(self) -> bool:
        return time.monotonic() < self.until

    def open_until(self, until: float) -> None:
        self.until = until
        self._moved.set()

    async def wait_open(self) -> None:
        while not self.is_open():
            self._moved.clear()
            await self._moved.wait()


class AsyncSendQueue:
    """`SendQueue` for asyncio senders: `put` wakes them, `await get(link)` waits until due.

    `on_expired` receives messages found expired (the caller marks them EXPIRED in the store);
    it is called synchronously, so it should schedule work rather than do it.

    With `load` (the store's `load_waiting`: those of the ids given that still wait, whole),
    a backlog past `in_memory` per link and priority waits as references and is read back
    `page` at a time, before the link runs out of whole messages. `place` says which link a
    message read back should wait for now (the dispatcher's choice: the link it waited for
    may have gone down meanwhile); without it, the same link.
    """

    def __init__(
        self,
        on_expired: Callable[[list[Message]], None],
        *,
        clock: Callable[[], float] = time.time,
        load: Loader | None = None,
        in_memory: int = 50_000,
        page: int = 1_000,
    ) -> None:
        self.core = SendQueue(in_memory if load is not None else None)
        self._on_expired = on_expired
        self._clock = clock
        self._wakeups: dict[str, asyncio.Event] = {}
        self._load = load
        self._page = page
        self.place: Callable[[Message], str | None] | None = None
        # The last word before a message goes to its link: True takes it out for good (the
        # callable records why; the gateway's opt-out check for messages queued before a STOP).
        self.stop_before_send: Callable[[Message], bool] | None = None
        self._paging: dict[str, asyncio.Task[None]] = {}  # per link: one page at a time
        self.gate: SendGate | None = None  # None: senders may always take (one node)

    def put(self, message: Message, link: str) -> None:
        self.core.put(message, link, self._clock())
        self._wake(link)

    def put_refs(self, refs: Iterable[tuple[str, int, str | None, str | None]]) -> list[str]:
        """Queue messages by reference (start-up): (message id, priority, route, link) each.
        Returns the ids to queue whole instead (all of them without a `load`)."""
        if self._load is None:
            return [ref[0] for ref in refs if ref[3] is not None]
        return self.core.put_refs(refs)

    async def get(self, link: str) -> Message:
        """The next message for `link`, waiting for one to arrive or become due."""
        wakeup = self._wakeups.setdefault(link, asyncio.Event())
        core = self.core
        while True:
            gate = self.gate
            if gate is not None and not gate.is_open():
                await gate.wait_open()
                continue
            now = self._clock()
            message = core.pop(link, now)
            self._hand_over_expired()
            if core.refs_waiting(link):  # a backlog waits in the store: read ahead
                self._read_page(link)
            if message is not None:
                stop = self.stop_before_send
                if stop is None or not stop(message):
                    return message
                continue
            wake_at = core.next_wake(link)
            wakeup.clear()
            timeout = None if wake_at is None else max(wake_at - now, 0.0)
            try:
                await asyncio.wait_for(wakeup.wait(), timeout)
            except TimeoutError:
                pass

    def take_link(self, link: str) -> tuple[list[Message], list[StoredRef]]:
        """See `SendQueue.take_link`."""
        return self.core.take_link(link)

    def put_back(self, link: str, messages: Sequence[Message], refs: Sequence[StoredRef]) -> None:
        """Queue again what `take_link(link)` took out (it could not be handed on)."""
        for message in messages:
            self.put(message, link)
        odd = self.put_refs((ref.message_id, ref.priority, ref.route, ref.link) for ref in refs)
        assert not odd  # references are of our own ids only

    def remove(self, message_id: str, *, refs: bool = True) -> bool:
        """Take a message out (to cancel it): False when it is not queued (handed out to a
        link already, or never here). `refs=False`: only if it is held whole (cheap)."""
        return self.core.withdraw(message_id, refs=refs)

    def move(
        self, from_link: str, to_link: str, *, only: Callable[[Message], bool] | None = None
    ) -> int:
        moved = self.core.move(from_link, to_link, self._clock(), only=only)
        if moved:
            self._wake(to_link)
        # What waits by reference is read back and placed as it is read (see `place`).
        self._read_page(from_link)
        return moved

    def depth(self) -> dict[str, dict[int, int]]:
        return self.core.depth()

    def oldest_ready_at(self, link: str) -> float | None:
        """See `SendQueue.oldest_ready_at`."""
        return self.core.oldest_ready_at(link)

    def size(self, link: str) -> int:
        """Messages queued for `link`, scheduled ones and references included."""
        return self.core.size(link)

    def route_size(self, route: str) -> int:
        """Messages of `route` queued on any of its links."""
        return self.core.route_size(route)

    async def close(self) -> None:
        """Stop reading pages (the store is closing); what they held stays in the store."""
        tasks = list(self._paging.values())
        await cancel_and_wait(*tasks)

    def _read_page(self, link: str) -> None:
        if link in self._paging or self._load is None:
            return
        priority = self.core.page_wanted(link)
        if priority is None:
            return
        page = self.core.take_page(link, priority, self._page)
        if page:
            task = asyncio.ensure_future(self._read(link, page))
            self._paging[link] = task

    async def _read(self, link: str, page: list[StoredRef]) -> None:
        assert self._load is not None
        try:
            try:
                loaded = await self._load([ref.message_id for ref in page])
            except BaseException as exc:
                self.core.page_failed(page)
                if not isinstance(exc, asyncio.CancelledError):
                    log.exception("reading %d queued messages of link %s failed", len(page), link)
                raise
            now = self._clock()
            core, place = self.core, self.place
            for message, waited_for in core.page_read(page, {m.id: m for m in loaded}):
                message.link = waited_for
                to = place(message) if place is not None else waited_for
                if to is None or to == waited_for:
                    core.push(message, waited_for, now)
                else:
                    core.put(message, to, now)
                    self._wake(to)
        except Exception:  # logged above: the link's sender tries again in a while
            asyncio.get_running_loop().call_later(PAGE_RETRY_SECONDS, self._wake, link)
            return
        finally:
            self._paging.pop(link, None)
        self._wake(link)
        self._read_page(link)  # a link that is down: its backlog moves on page by page

    def _wake(self, link: str) -> None:
        wakeup = self._wakeups.get(link)
        if wakeup is not None:
            wakeup.set()

    def _hand_over_expired(self) -> None:
        expired = self.core.take_expired()
        if expired:
            self._on_expired(expired)
