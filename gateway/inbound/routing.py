"""Inbound routing: which destinations an MO goes to, from the number it was sent to and its
first word. A pure decision: no I/O, no clock.

Owns `InboundRoute` (one `[[inbound.routes]]` entry, or an SMPP account's `mo_numbers`, which
are routes to that account matching those numbers exactly) and `InboundRouter.route`.

The most specific route wins: one with a keyword before one without, an exact number before a
prefix, a longer prefix before a shorter one; between equals, the configured route before an
account's `mo_numbers`, and the first configured before later ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.config import InboundRouteConfig
from gateway.optouts.keywords import compact, words_of


@dataclass(frozen=True, slots=True)
class InboundRoute:
    """Where MOs go: `name` is the configured route's, or "account:<system_id>"."""

    name: str
    account: str | None = None
    webhook: str | None = None
    webhook_secret: str | None = None
    event_sink: str | None = None


def digits(number: str) -> str:
    return number.strip().removeprefix("+")


@dataclass(frozen=True, slots=True)
class _Rule:
    route: InboundRoute
    keyword: str | None  # compact form
    order: int


class InboundRouter:
    """`route(destination, text)`: the route an MO takes, or None (unmatched)."""

    def __init__(
        self,
        routes: Sequence[InboundRouteConfig],
        account_of: Callable[[str], str | None] = lambda number: None,
    ) -> None:
        self.account_of = account_of
        self.routes = {route.name: route for route in routes}
        self._exact: dict[str, list[_Rule]] = {}
        self._prefixes: dict[str, list[_Rule]] = {}
        for order, config in enumerate(routes):
            rule = _Rule(
                InboundRoute(
                    config.name,
                    config.account,
                    config.webhook,
                    config.webhook_secret,
                    config.event_sink,
                ),
                compact(config.keyword) if config.keyword else None,
                order,
            )
            for number in config.to:
                self._exact.setdefault(digits(number), []).append(rule)
            for prefix in config.prefix:
                self._prefixes.setdefault(digits(prefix), []).append(rule)
        self._prefix_lengths = sorted({len(p) for p in self._prefixes}, reverse=True)

    def route(self, destination: str, text: str | None) -> InboundRoute | None:
        number = digits(destination)
        first_word = ""
        if text:
            words = words_of(text)
            first_word = words[0] if words else ""
        exact = self._exact.get(number, ())
        prefixed = [
            rule
            for length in self._prefix_lengths
            if length <= len(number)
            for rule in self._prefixes.get(number[:length], ())
        ]
        # Keyword routes first (exact, then longest prefix), then the rest the same way.
        for rule in exact:
            if rule.keyword is not None and rule.keyword == first_word:
                return rule.route
        for rule in prefixed:
            if rule.keyword is not None and rule.keyword == first_word:
                return rule.route
        for rule in exact:
            if rule.keyword is None:
                return rule.route
        account = self.account_of(number)
        if account is not None:
            return InboundRoute(f"account:{account}", account=account)
        for rule in prefixed:
            if rule.keyword is None:
                return rule.route
        return None
