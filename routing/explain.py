"""Why a destination goes where it goes: a structured explanation and its plain-text rendering.

Owns: `explain_route` (the data behind `tandem route explain`) and `render_explanation`.
It reuses the resolver's and the route table's own matching code, so the explanation cannot
disagree with what `RouteTable.resolve` does.
Must never: print, read a clock, or change routing state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from routing.config import MessageKind, RouteStrategy
from routing.errors import InvalidNumber
from routing.numbers import NumberResolver
from routing.rules import LinkStates, RouteFacts, RouteTable, link_available, pick_target
from routing.tables import MnoSource


@dataclass(frozen=True, slots=True)
class RuleTrial:
    route: str
    priority: int
    matched: bool
    failed_criterion: str | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class TargetState:
    link: str
    weight: int
    state: str  # "up", "throttled", "down" or "unknown" (no such link in the view)
    throttle_level: float | None
    available: bool


@dataclass(frozen=True, slots=True)
class RouteExplanation:
    input: str
    number: str | None
    refusal_code: str | None
    refusal_reason: str | None
    country: str | None
    number_region: str | None
    mno: str | None
    mno_source: MnoSource | None
    matched_prefix: str | None
    sender: str | None
    account: str | None
    kind: MessageKind | None
    tags: tuple[str, ...]
    rules: tuple[RuleTrial, ...]
    chosen_route: str | None
    strategy: RouteStrategy | None
    targets: tuple[TargetState, ...]
    next_target: str | None
    rewritten_sender: str | None
    max_parts: int | None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready (enums are str subclasses)."""
        return asdict(self)


def explain_route(
    raw: str,
    resolver: NumberResolver,
    table: RouteTable,
    *,
    now: float,
    link_states: LinkStates,
    sender: str | None = None,
    account: str | None = None,
    kind: MessageKind | None = None,
    region: str | None = None,
    tags: frozenset[str] = frozenset(),
) -> RouteExplanation:
    """Explain the routing of `raw`; never raises for bad input (the refusal is explained)."""
    blank = RouteExplanation(
        input=raw,
        number=None,
        refusal_code=None,
        refusal_reason=None,
        country=None,
        number_region=None,
        mno=None,
        mno_source=None,
        matched_prefix=None,
        sender=sender,
        account=account,
        kind=kind,
        tags=tuple(sorted(tags)),
        rules=(),
        chosen_route=None,
        strategy=None,
        targets=(),
        next_target=None,
        rewritten_sender=None,
        max_parts=None,
    )
    try:
        number = resolver.normalise(raw, region=region)
    except InvalidNumber as refusal:
        return replace(blank, refusal_code=refusal.code, refusal_reason=refusal.reason)
    operator = resolver.operator_of(number)
    country = operator.country if operator.country is not None else number.region
    prefix = (
        resolver.tables.matching_prefix(number.e164)
        if operator.source is MnoSource.PREFIX_TABLE
        else None
    )
    facts = RouteFacts(number.e164, country, operator.mno, sender, account, kind, tags)
    tried = table.trials(facts, now)
    rules = tuple(
        RuleTrial(
            route.name,
            route.priority,
            mismatch is None,
            mismatch.criterion if mismatch is not None else None,
            mismatch.detail if mismatch is not None else None,
        )
        for route, mismatch in tried
    )
    explained = replace(
        blank,
        number=number.e164,
        country=country,
        number_region=number.region,
        mno=operator.mno,
        mno_source=operator.source,
        matched_prefix=prefix,
        rules=rules,
    )
    if not tried or tried[-1][1] is not None:
        return replace(
            explained,
            refusal_code="no_route",
            refusal_reason=f"No route matches {number.e164}.",
        )
    route = tried[-1][0]
    decision = route.decide(facts, link_states, table.rng)
    targets = tuple(
        _target_state(target.link, target.weight, link_states, route.throttle_limit)
        for target in route.targets
    )
    return replace(
        explained,
        chosen_route=route.name,
        strategy=route.strategy,
        targets=targets,
        next_target=pick_target(decision, link_states, rng=table.rng),
        rewritten_sender=decision.sender,
        max_parts=route.max_parts,
    )


def render_explanation(explanation: RouteExplanation) -> str:
    """Plain text for a terminal, one fact per line."""
    e = explanation
    lines = [f"input:        {e.input}"]
    if e.number is None:
        lines.append(f"refused:      {e.refusal_code}: {e.refusal_reason}")
        return "\n".join(lines) + "\n"
    lines += [
        f"number:       {e.number}",
        f"country:      {e.country or '-'} (number region {e.number_region or '-'})",
        f"mno:          {e.mno or '-'} (decided by {e.mno_source}"
        + (f", prefix {e.matched_prefix})" if e.matched_prefix else ")"),
        f"sender:       {e.sender or '-'}   account: {e.account or '-'}   kind: {e.kind or '-'}"
        + (f"   tags: {','.join(e.tags)}" if e.tags else ""),
        "rules:",
    ]
    if not e.rules:
        lines.append("  (no routes configured)")
    for rule in e.rules:
        verdict = "MATCH" if rule.matched else f"no: {rule.failed_criterion}: {rule.detail}"
        lines.append(f"  [{rule.priority:>4}] {rule.route}: {verdict}")
    if e.chosen_route is None:
        lines.append(f"refused:      {e.refusal_code}: {e.refusal_reason}")
        return "\n".join(lines) + "\n"
    lines.append(f"route:        {e.chosen_route} ({e.strategy})")
    lines.append("targets:")
    for target in e.targets:
        level = "" if target.throttle_level is None else f", throttle {target.throttle_level:.2f}"
        usable = "usable" if target.available else "skipped"
        lines.append(f"  {target.link}: {target.state}{level}, weight {target.weight}, {usable}")
    lines.append(f"next target:  {e.next_target or '- (none available: message waits)'}")
    if e.rewritten_sender != e.sender:
        lines.append(f"sender out:   {e.rewritten_sender} (rewritten from {e.sender})")
    if e.max_parts is not None:
        lines.append(f"max parts:    {e.max_parts}")
    return "\n".join(lines) + "\n"


def _target_state(
    link: str, weight: int, link_states: LinkStates, throttle_limit: float
) -> TargetState:
    status = link_states.get(link)
    if status is None:
        return TargetState(link, weight, "unknown", None, False)
    if not status.up:
        state = "down"
    elif status.throttle_level >= throttle_limit:
        state = "throttled"
    else:
        state = "up"
    return TargetState(
        link, weight, state, status.throttle_level, link_available(status, throttle_limit)
    )
