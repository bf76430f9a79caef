"""Back-pressure: how many messages may wait for each link and each route before intake says
"not now".

Owns `BacklogLimits` (the limits, read from `[[links]] queue_limit` and `[[routes]]
queue_limit`), `Backlog` (admission: a batch of prepared messages is admitted only if every link
and route it would wait on stays within its limit, counting what the queue holds plus what other
callers were admitted for and are still storing) and `BacklogStats` (refusals, per link and per
route, for metrics).

Why: a customer channel accepts faster than a carrier drains (the SMPP server answered 4,900
submit_sm/s while a link sent 1,500/s). Without a bound the difference waits in the queue until
the customer stops. Past a limit intake refuses with a temporary status instead: SMPP
ESME_RTHROTTLED (an ESME slows down and submits again), HTTP 503 with Retry-After. Nothing is
lost: a refused message was never acknowledged.

Never does: I/O, waiting, or deciding routes. It reads the queue's counts and is consulted by
`gateway.intake` before the store write; a reservation is released once the messages are
queued (or the write failed).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.messages import Message
from smpp.constants import CommandStatus

BACKLOG_FULL = "backlog_full"
HTTP_STATUS = 503  # the gateway (a route or link) is saturated: not this client's own rate (429)
SMPP_STATUS = CommandStatus.ESME_RTHROTTLED


@dataclass(slots=True, frozen=True)
class BacklogLimits:
    """Most messages that may wait queued per link and per route (absent: no limit)."""

    links: Mapping[str, int] = field(default_factory=dict)
    routes: Mapping[str, int] = field(default_factory=dict)
    retry_after: float = 5.0


@dataclass(slots=True)
class BacklogStats:
    """Messages refused because a backlog was full, in total and by what was full."""

    refused: int = 0
    by_link: Counter[str] = field(default_factory=Counter)
    by_route: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True, frozen=True)
class BacklogFull:
    """Why a batch was not admitted: which link or route, its limit and what waits on it."""

    kind: str  # "link" | "route"
    name: str
    limit: int
    queued: int

    def reason(self) -> str:
        return (
            f"the {self.kind} {self.name!r} has {self.queued} messages waiting (limit "
            f"{self.limit}); send again later"
        )


@dataclass(slots=True)
class Reservation:
    """What one admitted batch counts against, until `Backlog.release`."""

    links: dict[str, int]
    routes: dict[str, int]


class Backlog:
    """Admission against per-link and per-route limits (sans-IO)."""

    def __init__(
        self,
        limits: BacklogLimits,
        link_depth: Callable[[str], int],
        route_depth: Callable[[str], int],
    ) -> None:
        self.limits = limits
        self.stats = BacklogStats()
        self._link_depth = link_depth
        self._route_depth = route_depth
        # Admitted and not yet queued (their store write is in progress). Plain dicts and
        # loops: this runs for every intake batch, and Counter's methods cost microseconds.
        self._reserved_links: dict[str, int] = {}
        self._reserved_routes: dict[str, int] = {}

    def admit(self, messages: Sequence[Message]) -> Reservation | BacklogFull:
        """Reserve room for `messages` on the links and routes they will wait on, or say which
        backlog is full. A batch is admitted whole or not at all."""
        limits = self.limits
        link_limits, route_limits = limits.links, limits.routes
        links: dict[str, int] = {}
        routes: dict[str, int] = {}
        for message in messages:
            link = message.link or (message.targets[0] if message.targets else None)
            if link is not None and link in link_limits:
                links[link] = links.get(link, 0) + 1
            route = message.route
            if route is not None and route in route_limits:
                routes[route] = routes.get(route, 0) + 1
        reserved_links, reserved_routes = self._reserved_links, self._reserved_routes
        for link, count in links.items():
            queued = self._link_depth(link) + reserved_links.get(link, 0)
            if queued + count > link_limits[link]:
                return BacklogFull("link", link, link_limits[link], queued)
        for route, count in routes.items():
            queued = self._route_depth(route) + reserved_routes.get(route, 0)
            if queued + count > route_limits[route]:
                return BacklogFull("route", route, route_limits[route], queued)
        for link, count in links.items():
            reserved_links[link] = reserved_links.get(link, 0) + count
        for route, count in routes.items():
            reserved_routes[route] = reserved_routes.get(route, 0) + count
        return Reservation(links, routes)

    def count_refused(self, full: BacklogFull, messages: int) -> None:
        """`messages` were refused for good because of `full` (the channel answered them)."""
        self.stats.refused += messages
        counter = self.stats.by_link if full.kind == "link" else self.stats.by_route
        counter[full.name] += messages

    def release(self, reservation: Reservation) -> None:
        """The reserved messages are queued now (and counted there), or were never stored."""
        reserved_links, reserved_routes = self._reserved_links, self._reserved_routes
        for link, count in reservation.links.items():
            reserved_links[link] -= count
        for route, count in reservation.routes.items():
            reserved_routes[route] -= count
