"""Dispatch: which link's queue an accepted message waits in, and moving it when links fail.

Owns `Dispatcher` (the intake's `Dispatch`): a message is queued on the link its route picks now
(failover order or weighted share, skipping links that are down or throttled past the route's
limit); when a link goes down its queued messages move to the next usable target of their own
routes; a message a link refused permanently with a route-level status is offered to the next
target, never to the same link again. `LinkStateView` is the read-only view routing consults.

Never does: I/O, persistence, or sending. Decisions come from `routing.pick_target`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

from gateway.links.base import Link, LinkState
from gateway.messages import Message
from gateway.queue import AsyncSendQueue
from gateway.stages import recording
from routing import LinkStatus, RouteDecision, RouteStrategy, RouteTable, RouteTarget, pick_target


@runtime_checkable
class DailyUsage(Protocol):
    """A link that counts its day against a cap (a modem link's SIM)."""

    @property
    def daily_cap(self) -> int | None: ...

    def sent_today(self) -> int: ...


class LinkStateView:
    """`routing.LinkStates` over the daemon's live links. Links registered with
    `count_usage` also report what they used today, with what waits for them in the queue
    (`waiting`), so an "even" route spreads a burst instead of giving it all to one link."""

    __slots__ = ("_links", "_usage", "waiting")

    def __init__(self, links: Mapping[str, Link]) -> None:
        self._links = links
        self._usage: dict[str, DailyUsage] = {}
        self.waiting: Callable[[str], int] = lambda _link: 0

    def count_usage(self, link: str, usage: DailyUsage) -> None:
        self._usage[link] = usage

    def get(self, link: str, /) -> LinkStatus | None:
        found = self._links.get(link)
        if found is None:
            return None
        up, throttle = found.state is LinkState.UP, found.throttle_level
        if self._usage:
            usage = self._usage.get(link)
            if usage is not None:
                used = usage.sent_today() + self.waiting(link)
                return LinkStatus(up, throttle, used, usage.daily_cap)
        if throttle == 0.0:  # the usual answers, shared: asked twice for every message
            return _UP if up else _DOWN
        return LinkStatus(up, throttle)


_UP, _DOWN = LinkStatus(True, 0.0), LinkStatus(False, 0.0)


class Dispatcher:
    """Puts messages on link queues and re-homes them when links fail."""

    def __init__(
        self,
        queue: AsyncSendQueue,
        routes: Callable[[], RouteTable],
        link_states: LinkStateView,
    ) -> None:
        self.queue = queue
        self._routes = routes
        self._link_states = link_states
        # Links that refused a message permanently: it is never offered to them again.
        self._excluded: dict[str, set[str]] = {}

    def decision_for(self, message: Message) -> RouteDecision:
        """The message's route as it stands now (weights included), or its stored targets."""
        for route in self._routes().routes:
            if route.name == message.route:
                targets = tuple(t for t in route.targets if t.link in message.targets) or tuple(
                    route.targets
                )
                return _decision(message, targets, route.strategy, route.throttle_limit)
        targets = tuple(RouteTarget(link, 1) for link in message.targets)
        strategy = RouteStrategy(message.strategy or RouteStrategy.FAILOVER)
        return _decision(message, targets, strategy, 1.0)

    def choose(self, message: Message) -> str | None:
        """A usable link for the message now, or None when none of its targets is usable."""
        excluded = self._excluded.get(message.id, ())
        return pick_target(self.decision_for(message), self._link_states, exclude=excluded)

    def enqueue(self, message: Message) -> None:
        """Queue on a usable link; when none is usable, wait on the link it had (or its first
        remaining target) until that link comes up or another is chosen by `link_down`."""
        link = self.place(message)
        if link is None:  # every target refused it: the caller fails it (see `exclude`)
            return
        message.link = link
        self.queue.put(message, link)
        stages = recording()
        if stages is not None:
            stages.start("queue_wait", message.id)

    def place(self, message: Message) -> str | None:
        """The link `message` should wait for now (see `enqueue`); None: no target is left."""
        # Intake (or the previous attempt) already picked a link: keep it while it is usable,
        # so a weighted route is drawn once per message and the common case costs one lookup.
        # An even route chooses again here, as each message is queued: intake picks for a
        # whole batch before any of it is queued, so its picks all see the same counts.
        keep = message.strategy != RouteStrategy.EVEN and self._still_usable(message)
        link = message.link if keep else self.choose(message)
        if link is None:
            excluded = self._excluded.get(message.id, set())
            remaining = [t for t in message.targets if t not in excluded]
            link = message.link if message.link in remaining else next(iter(remaining), None)
        return link

    def _still_usable(self, message: Message) -> bool:
        if message.link is None or message.link in self._excluded.get(message.id, ()):
            return False
        status = self._link_states.get(message.link)
        return status is not None and status.up and status.throttle_level < 1.0

    def exclude(self, message: Message, link: str) -> bool:
        """`link` refused `message` permanently: True if another target remains to try."""
        excluded = self._excluded.setdefault(message.id, set())
        excluded.add(link)
        return any(target not in excluded for target in message.targets)

    def forget(self, message_id: str) -> None:
        """The message reached an outcome: drop its exclusions."""
        self._excluded.pop(message_id, None)

    def link_down(self, link: str) -> int:
        """Move `link`'s queued messages to another usable target of their routes."""
        choices: dict[str, str | None] = {}  # one draw per message, even for weighted routes

        def goes_to(message: Message, to: str) -> bool:
            if message.id not in choices:
                choices[message.id] = self.choose(message)
            return choices[message.id] == to

        moved = 0
        others = {target.link for route in self._routes().routes for target in route.targets}
        for other in sorted(others - {link}):
            moved += self.queue.move(link, other, only=functools.partial(_swap, goes_to, other))
        return moved


def _decision(
    message: Message,
    targets: tuple[RouteTarget, ...],
    strategy: RouteStrategy,
    throttle_limit: float,
) -> RouteDecision:
    return RouteDecision(
        route=message.route or "",
        priority=0,
        strategy=strategy,
        targets=targets,
        throttle_limit=throttle_limit,
        sender=message.source_addr,
        original_sender=message.source_addr,
        max_parts=None,
        first_target=None,
    )


def _swap(goes_to: Callable[[Message, str], bool], to: str, message: Message) -> bool:
    return goes_to(message, to)
