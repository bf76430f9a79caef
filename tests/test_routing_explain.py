"""`tandem route explain`: the structured explanation and its plain-text rendering."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from routing import (
    LinkStatus,
    MessageKind,
    MnoSource,
    NumberingConfig,
    NumberResolver,
    RouteConfig,
    RouteFacts,
    RouteTable,
    explain_route,
    render_explanation,
)

DATA = Path(__file__).parent / "data" / "routing"
NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC).timestamp()


@pytest.fixture
def resolver() -> NumberResolver:
    config = NumberingConfig(
        default_region="GB", prefix_file=DATA / "prefixes.csv", mnp_file=DATA / "ported.csv"
    )
    return NumberResolver.from_config(config)


@pytest.fixture
def routes() -> RouteTable:
    configs = [
        {"name": "fr-bulk", "priority": 1, "countries": ["FR"], "targets": ["fr-link"]},
        {
            "name": "ninety-otp",
            "priority": 2,
            "mnos": ["Ninety Mobile"],
            "kinds": ["otp"],
            "targets": ["ninety-direct", "aggregator"],
            "sender_rewrite": [{"match": "[A-Za-z]", "replace": "447700900000"}],
            "max_parts": 3,
        },
        {"name": "default", "priority": 9, "targets": ["aggregator"]},
    ]
    return RouteTable.from_config(
        [RouteConfig.model_validate(c) for c in configs], rng=random.Random(1)
    )


def test_explanation_lists_every_rule_tried_and_the_failing_criterion(
    resolver: NumberResolver, routes: RouteTable
) -> None:
    states = {"ninety-direct": LinkStatus(up=False), "aggregator": LinkStatus(True, 0.25)}
    explained = explain_route(
        "07911 123456",
        resolver,
        routes,
        now=NOW,
        link_states=states,
        sender="MyBank",
        account="bank",
        kind=MessageKind.OTP,
    )
    assert explained.number == "+447911123456"
    assert explained.mno == "Ninety Mobile"
    assert explained.mno_source is MnoSource.PORTED
    assert [(r.route, r.matched, r.failed_criterion) for r in explained.rules] == [
        ("fr-bulk", False, "country"),
        ("ninety-otp", True, None),
    ]
    assert explained.chosen_route == "ninety-otp"
    assert [(t.link, t.state, t.available) for t in explained.targets] == [
        ("ninety-direct", "down", False),
        ("aggregator", "up", True),
    ]
    assert explained.next_target == "aggregator"
    assert explained.rewritten_sender == "447700900000"
    assert explained.max_parts == 3
    json.dumps(explained.to_dict())  # the CLI may print it as JSON

    text = render_explanation(explained)
    assert "+447911123456" in text
    assert "Ninety Mobile (decided by ported)" in text
    assert "fr-bulk: no: country" in text
    assert "ninety-otp: MATCH" in text
    assert "ninety-direct: down" in text
    assert "next target:  aggregator" in text
    assert "rewritten from MyBank" in text


def test_explanation_names_the_prefix_that_decided_the_operator(
    resolver: NumberResolver, routes: RouteTable
) -> None:
    explained = explain_route("+447911123400", resolver, routes, now=NOW, link_states={})
    assert explained.mno == "Island Mobile"
    assert explained.mno_source is MnoSource.PREFIX_TABLE
    assert explained.matched_prefix == "+447911"
    assert explained.country == "GG"
    # Not OTP, so the Ninety route fails on its first criterion: the MNO.
    assert explained.rules[1].failed_criterion == "mno"
    assert explained.chosen_route == "default"
    assert explained.targets[0].state == "unknown"
    assert explained.next_target is None
    assert "none available" in render_explanation(explained)


def test_explanation_of_an_invalid_number_gives_the_refusal(
    resolver: NumberResolver, routes: RouteTable
) -> None:
    explained = explain_route("+44 74", resolver, routes, now=NOW, link_states={})
    assert explained.number is None
    assert explained.refusal_code == "too_short"
    assert explained.rules == ()
    assert "refused:      too_short" in render_explanation(explained)


def test_explanation_when_no_route_matches(resolver: NumberResolver) -> None:
    only_fr = RouteTable.from_config(
        [RouteConfig(name="fr", priority=1, countries=["FR"], targets=["fr-link"])]
    )
    explained = explain_route("+447400123456", resolver, only_fr, now=NOW, link_states={})
    assert explained.refusal_code == "no_route"
    assert explained.chosen_route is None
    assert [r.failed_criterion for r in explained.rules] == ["country"]
    assert "refused:      no_route" in render_explanation(explained)


def test_explanation_agrees_with_resolve_on_the_chosen_route(
    resolver: NumberResolver, routes: RouteTable
) -> None:
    states = {"fr-link": LinkStatus(True), "aggregator": LinkStatus(True)}
    for raw, kind in [("+33612345678", None), ("+447956123456", MessageKind.OTP)]:
        resolved = resolver.resolve(raw)
        decision = routes.resolve(RouteFacts.from_resolved(resolved, kind=kind), NOW, states)
        explained = explain_route(raw, resolver, routes, now=NOW, link_states=states, kind=kind)
        assert explained.chosen_route == decision.route
