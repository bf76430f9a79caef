"""Route rules: which links may carry a message, in which order or share, and with which sender.

Owns: the compiled `[[routes]]` table (`RouteTable.resolve`), the criteria matching (prefix,
country, MNO, sender, account, kind, route tags, local time window), the per-route sender
rewrite and the choice of a link among a route's targets (`pick_target`: failover order or
weighted share).
Must never: read a clock (`now` is passed in), hold link state (the gateway passes a read-only
`LinkStates` view), or know how links, queues or protocols work.

`now` here is wall-clock UNIX time (`time.time()`), not monotonic: time windows are wall-clock.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from routing.config import WEEKDAYS, MessageKind, RouteConfig, RouteStrategy, check_routes
from routing.errors import NoRoute
from routing.numbers import ResolvedNumber


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """What the router needs to know about a link right now.

    `throttle_level` is 0.0 when the link has capacity and 1.0 when it accepts nothing more
    (e.g. its window is full or the peer answered ESME_RTHROTTLED); the gateway decides the scale
    in between.
    """

    up: bool
    throttle_level: float = 0.0
    # What the link has used of its day (parts sent today plus messages waiting for it) and its
    # daily cap (None: none); only the "even" strategy reads them.
    used_today: int = 0
    daily_cap: int | None = None


class LinkStates(Protocol):
    """Read-only view of links by name; a plain `dict[str, LinkStatus]` satisfies it. A link
    the view does not know (not configured, not bound) is unavailable."""

    def get(self, link: str, /) -> LinkStatus | None: ...


class RandomSource(Protocol):
    """`random.Random` satisfies it; inject a seeded one for reproducible weighted picks."""

    def random(self) -> float: ...


@dataclass(frozen=True, slots=True)
class RouteFacts:
    """What a route may match on. `number` is E.164; `mno` as decided by `NumberResolver`."""

    number: str
    country: str | None = None
    mno: str | None = None
    sender: str | None = None
    account: str | None = None
    kind: MessageKind | None = None
    tags: frozenset[str] = frozenset()  # route tags the message carries (its account's)

    @classmethod
    def from_resolved(
        cls,
        resolved: ResolvedNumber,
        *,
        sender: str | None = None,
        account: str | None = None,
        kind: MessageKind | None = None,
        tags: frozenset[str] = frozenset(),
    ) -> RouteFacts:
        return cls(resolved.e164, resolved.country, resolved.mno, sender, account, kind, tags)


@dataclass(frozen=True, slots=True)
class RouteTarget:
    link: str
    weight: int


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """The route that matched and what it prescribes. `first_target` is the link to try now
    (None when none of the targets is available at resolve time: hold the message)."""

    route: str
    priority: int
    strategy: RouteStrategy
    targets: tuple[RouteTarget, ...]
    throttle_limit: float
    sender: str | None
    original_sender: str | None
    max_parts: int | None
    first_target: str | None

    @property
    def sender_rewritten(self) -> bool:
        return self.sender != self.original_sender


@dataclass(frozen=True, slots=True)
class Mismatch:
    """The first criterion of a route that the facts fail, with a sentence fragment why."""

    criterion: str
    detail: str


_default_rng = random.Random()
_NONE: frozenset[str] = frozenset()


def link_available(status: LinkStatus | None, throttle_limit: float) -> bool:
    return status is not None and status.up and status.throttle_level < throttle_limit


def pick_target(
    decision: RouteDecision,
    link_states: LinkStates,
    exclude: Iterable[str] = (),
    rng: RandomSource | None = None,
) -> str | None:
    """The link to try next for `decision`, skipping links that are down, unknown, throttled to
    the route's limit, or in `exclude` (links that already failed this message permanently).

    failover: the first such link in target order. weighted: a draw among them by weight
    (zero-weight targets are used only when no weighted one is available). even: the one that
    has used the smallest share of its daily cap (a target without a cap counts against the
    largest cap among them, or by its count alone when none has one); ties in target order.
    None: nothing now.
    """
    excluded = exclude if isinstance(exclude, set | frozenset) else frozenset(exclude)
    return _pick(
        decision.targets, decision.strategy, decision.throttle_limit, link_states, excluded, rng
    )


def _pick(
    targets: tuple[RouteTarget, ...],
    strategy: RouteStrategy,
    throttle_limit: float,
    link_states: LinkStates,
    excluded: Set[str],
    rng: RandomSource | None,
) -> str | None:
    usable = [
        target
        for target in targets
        if target.link not in excluded
        and link_available(link_states.get(target.link), throttle_limit)
    ]
    if not usable:
        return None
    if strategy is RouteStrategy.FAILOVER:
        return usable[0].link
    if strategy is RouteStrategy.EVEN:
        return _least_used(usable, link_states)
    total = sum(target.weight for target in usable)
    if total <= 0:
        return usable[0].link
    point = (rng if rng is not None else _default_rng).random() * total
    for target in usable:
        point -= target.weight
        if point < 0 and target.weight > 0:
            return target.link
    # Float rounding at the very top of the range: the last weighted target.
    return next(target.link for target in reversed(usable) if target.weight > 0)


def _least_used(usable: list[RouteTarget], link_states: LinkStates) -> str:
    statuses = [link_states.get(target.link) or LinkStatus(True) for target in usable]
    largest_cap = max((status.daily_cap or 0 for status in statuses), default=0) or 1
    shares = [status.used_today / (status.daily_cap or largest_cap) for status in statuses]
    return usable[shares.index(min(shares))].link


class TimeWindow:
    """[start, end) in local time of `zone`; start > end crosses midnight, start == end is a
    whole day. `days` are the weekdays on which the window opens (Mon=0)."""

    __slots__ = ("_last", "days", "end_minute", "start_minute", "zone")

    def __init__(self, start: str, end: str, zone: str, days: Iterable[str] = WEEKDAYS) -> None:
        self.start_minute = _minutes(start)
        self.end_minute = _minutes(end)
        self.zone = ZoneInfo(zone)
        self.days = frozenset(WEEKDAYS.index(day) for day in days)
        self._last: tuple[int, bool] = (-1, False)

    def contains(self, now: float) -> bool:
        # Modern zone offsets are whole minutes, so the answer holds for the whole UTC minute;
        # one (minute, answer) pair saves the zone conversion for every other message in it.
        minute_of_epoch = int(now // 60)
        cached_minute, cached_answer = self._last
        if minute_of_epoch == cached_minute:
            return cached_answer
        answer = self._contains(now)
        self._last = (minute_of_epoch, answer)
        return answer

    def _contains(self, now: float) -> bool:
        local = datetime.fromtimestamp(now, self.zone)
        minute = local.hour * 60 + local.minute
        weekday = local.weekday()
        if self.start_minute < self.end_minute:
            return self.start_minute <= minute < self.end_minute and weekday in self.days
        if minute >= self.start_minute:
            return weekday in self.days
        if minute < self.end_minute:
            # The window opened yesterday evening.
            return (weekday - 1) % 7 in self.days
        return False

    def describe(self) -> str:
        days = ",".join(WEEKDAYS[day] for day in sorted(self.days))
        return f"{_hh_mm(self.start_minute)}-{_hh_mm(self.end_minute)} {self.zone.key} ({days})"


class Route:
    """One compiled `[[routes]]` entry."""

    __slots__ = (
        "accounts",
        "countries",
        "kinds",
        "max_parts",
        "mnos",
        "name",
        "prefixes",
        "priority",
        "rewrites",
        "sender_regex",
        "senders",
        "strategy",
        "tags",
        "targets",
        "throttle_limit",
        "window",
    )

    def __init__(self, config: RouteConfig) -> None:
        self.name = config.name
        self.priority = config.priority
        self.prefixes = tuple(config.prefixes)
        self.countries = frozenset(config.countries)
        self.mnos = frozenset(mno.casefold() for mno in config.mnos)
        self.senders = frozenset(config.senders)
        self.sender_regex = re.compile(config.sender_regex) if config.sender_regex else None
        self.accounts = frozenset(config.accounts)
        self.kinds = frozenset(config.kinds)
        self.tags = frozenset(config.tags)
        window = config.time_window
        self.window = (
            TimeWindow(window.start, window.end, window.timezone, window.days)
            if window is not None
            else None
        )
        weights = config.weights if config.weights is not None else [1] * len(config.targets)
        self.targets = tuple(
            RouteTarget(link, weight) for link, weight in zip(config.targets, weights)
        )
        self.strategy = config.strategy
        self.throttle_limit = config.throttle_limit
        self.rewrites = tuple(
            (re.compile(rule.match), rule.replace) for rule in config.sender_rewrite
        )
        self.max_parts = config.max_parts

    def failing_criterion(self, facts: RouteFacts, now: float) -> str | None:
        """The first criterion the facts fail, or None when every criterion set is met.
        (The hot path: no strings are built here.)"""
        if self.prefixes and not facts.number.startswith(self.prefixes):
            return "prefix"
        if self.countries and facts.country not in self.countries:
            return "country"
        if self.mnos and (facts.mno is None or facts.mno.casefold() not in self.mnos):
            return "mno"
        if (self.senders or self.sender_regex is not None) and not self._sender_matches(
            facts.sender
        ):
            return "sender"
        if self.accounts and facts.account not in self.accounts:
            return "account"
        if self.kinds and facts.kind not in self.kinds:
            return "kind"
        if self.tags and self.tags.isdisjoint(facts.tags):
            return "tags"
        if self.window is not None and not self.window.contains(now):
            return "time_window"
        return None

    def first_mismatch(self, facts: RouteFacts, now: float) -> Mismatch | None:
        """Like `failing_criterion`, with a sentence fragment saying why (for explanations)."""
        criterion = self.failing_criterion(facts, now)
        if criterion is None:
            return None
        if criterion == "prefix":
            detail = f"{facts.number} starts with none of {list(self.prefixes)}"
        elif criterion == "country":
            detail = f"{facts.country} not in {sorted(self.countries)}"
        elif criterion == "mno":
            detail = f"{facts.mno} not in {sorted(self.mnos)}"
        elif criterion == "sender":
            pattern = self.sender_regex.pattern if self.sender_regex is not None else None
            detail = f"{facts.sender!r} is not in {sorted(self.senders)} nor /{pattern}/"
        elif criterion == "account":
            detail = f"{facts.account} not in {sorted(self.accounts)}"
        elif criterion == "kind":
            detail = f"{facts.kind} not in {sorted(kind.value for kind in self.kinds)}"
        elif criterion == "tags":
            detail = f"none of {sorted(facts.tags)} is in {sorted(self.tags)}"
        else:
            detail = f"now is outside {self.window.describe() if self.window else '-'}"
        return Mismatch(criterion, detail)

    def _sender_matches(self, sender: str | None) -> bool:
        if sender is None:
            return False
        if sender in self.senders:
            return True
        return self.sender_regex is not None and self.sender_regex.search(sender) is not None

    def rewrite_sender(self, sender: str | None) -> str | None:
        """The first rewrite rule whose regex is found in the sender replaces the whole sender
        with its template expanded by the match."""
        if sender is None:
            return None
        for pattern, template in self.rewrites:
            match = pattern.search(sender)
            if match is not None:
                return match.expand(template)
        return sender

    def decide(
        self, facts: RouteFacts, link_states: LinkStates, rng: RandomSource | None
    ) -> RouteDecision:
        return RouteDecision(
            route=self.name,
            priority=self.priority,
            strategy=self.strategy,
            targets=self.targets,
            throttle_limit=self.throttle_limit,
            sender=self.rewrite_sender(facts.sender),
            original_sender=facts.sender,
            max_parts=self.max_parts,
            first_target=_pick(
                self.targets, self.strategy, self.throttle_limit, link_states, _NONE, rng
            ),
        )


class RouteTable:
    """Routes in ascending priority; the first whose criteria all hold decides."""

    __slots__ = ("_routes", "rng")

    def __init__(self, routes: Iterable[Route], rng: RandomSource | None = None) -> None:
        self._routes = tuple(sorted(routes, key=lambda route: route.priority))
        self.rng = rng

    @classmethod
    def from_config(
        cls, routes: Sequence[RouteConfig], rng: RandomSource | None = None
    ) -> RouteTable:
        check_routes(list(routes))
        return cls((Route(config) for config in routes), rng)

    @property
    def routes(self) -> tuple[Route, ...]:
        return self._routes

    @property
    def matches_operator(self) -> bool:
        """True when some route matches on the MNO (so resolving it is worth its cost)."""
        return any(route.mnos for route in self._routes)

    def link_names(self) -> frozenset[str]:
        """Every link a route names (the gateway checks they exist)."""
        return frozenset(target.link for route in self._routes for target in route.targets)

    def resolve(self, facts: RouteFacts, now: float, link_states: LinkStates) -> RouteDecision:
        """The decision of the first matching route; raises `NoRoute` when none matches."""
        for route in self._routes:
            if route.failing_criterion(facts, now) is None:
                return route.decide(facts, link_states, self.rng)
        raise NoRoute(
            f"No route matches {facts.number} (country {facts.country}, mno {facts.mno}, "
            f"sender {facts.sender!r}, account {facts.account!r}, kind {facts.kind}"
            f"{', tags ' + ','.join(sorted(facts.tags)) if facts.tags else ''})."
        )

    def trials(self, facts: RouteFacts, now: float) -> list[tuple[Route, Mismatch | None]]:
        """Each route tried, in order, with its first failing criterion, up to the match."""
        tried: list[tuple[Route, Mismatch | None]] = []
        for route in self._routes:
            mismatch = route.first_mismatch(facts, now)
            tried.append((route, mismatch))
            if mismatch is None:
                break
        return tried


def _minutes(hh_mm: str) -> int:
    hours, minutes = hh_mm.split(":")
    return int(hours) * 60 + int(minutes)


def _hh_mm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
