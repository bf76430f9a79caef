"""Route rules: priority, criteria, time windows (midnight, DST), failover, weights, rewrites."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from routing import (
    LinkStates,
    LinkStatus,
    MessageKind,
    NoRoute,
    RouteConfig,
    RouteDecision,
    RouteFacts,
    RouteList,
    RouteTable,
    pick_target,
)

UP = LinkStatus(up=True)
DOWN = LinkStatus(up=False)
NOON_UTC = datetime(2026, 6, 10, 12, 0, tzinfo=UTC).timestamp()


def utc(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def route(name: str, priority: int, **fields: Any) -> RouteConfig:
    fields.setdefault("targets", [f"{name}-link"])
    return RouteConfig.model_validate({"name": name, "priority": priority, **fields})


def table(*routes: RouteConfig, seed: int | None = None) -> RouteTable:
    return RouteTable.from_config(list(routes), rng=random.Random(seed) if seed else None)


def facts(number: str = "+447400123456", **fields: Any) -> RouteFacts:
    return RouteFacts(number, **fields)


def all_up(decision_table: RouteTable) -> dict[str, LinkStatus]:
    return {name: UP for name in decision_table.link_names()}


# --- priority and criteria -----------------------------------------------------------------


def test_routes_are_tried_in_ascending_priority_not_file_order() -> None:
    routes = table(route("catch-all", 100), route("uk", 5, prefixes=["+44"]))
    decision = routes.resolve(facts(), NOON_UTC, all_up(routes))
    assert decision.route == "uk"
    decision = routes.resolve(facts("+33612345678"), NOON_UTC, all_up(routes))
    assert decision.route == "catch-all"


def test_a_route_without_criteria_matches_everything() -> None:
    routes = table(route("any", 1))
    assert routes.resolve(facts("+12025550123"), NOON_UTC, {}).route == "any"


def test_no_matching_route_raises_no_route_with_its_code() -> None:
    routes = table(route("fr", 1, countries=["FR"]))
    with pytest.raises(NoRoute) as refused:
        routes.resolve(facts(country="GB"), NOON_UTC, all_up(routes))
    assert refused.value.code == "no_route"
    assert "+447400123456" in refused.value.reason


@pytest.mark.parametrize(
    ("criteria", "matching", "failing", "criterion"),
    [
        ({"prefixes": ["4474", "+4475"]}, {}, {"number": "+447600123456"}, "prefix"),
        ({"countries": ["gb"]}, {"country": "GB"}, {"country": "GG"}, "country"),
        ({"mnos": ["Vodafone"]}, {"mno": "VODAFONE"}, {"mno": "EE"}, "mno"),
        ({"mnos": ["Vodafone"]}, {"mno": "vodafone"}, {"mno": None}, "mno"),
        ({"senders": ["MyBank"]}, {"sender": "MyBank"}, {"sender": "mybank"}, "sender"),
        ({"sender_regex": r"^\d+$"}, {"sender": "447700"}, {"sender": "Shop"}, "sender"),
        ({"sender_regex": r"^\d+$"}, {"sender": "447700"}, {"sender": None}, "sender"),
        ({"accounts": ["shop"]}, {"account": "shop"}, {"account": "other"}, "account"),
        ({"kinds": ["otp"]}, {"kind": MessageKind.OTP}, {"kind": MessageKind.BULK}, "kind"),
        ({"kinds": ["otp"]}, {"kind": MessageKind.OTP}, {"kind": None}, "kind"),
        ({"tags": ["gold", "vip"]}, {"tags": frozenset({"vip"})}, {"tags": frozenset()}, "tags"),
        ({"tags": ["gold"]}, {"tags": frozenset({"gold", "x"})}, {"tags": frozenset("y")}, "tags"),
    ],
)
def test_each_criterion_matches_or_names_itself_as_the_failure(
    criteria: dict[str, Any], matching: dict[str, Any], failing: dict[str, Any], criterion: str
) -> None:
    compiled = table(route("r", 1, **criteria)).routes[0]
    assert compiled.first_mismatch(facts(**matching), NOON_UTC) is None
    mismatch = compiled.first_mismatch(facts(**failing), NOON_UTC)
    assert mismatch is not None
    assert mismatch.criterion == criterion


def test_exact_sender_or_sender_regex_either_satisfies_the_sender_criterion() -> None:
    compiled = table(route("r", 1, senders=["Alerts"], sender_regex=r"^\+?\d{6,}$")).routes[0]
    assert compiled.first_mismatch(facts(sender="Alerts"), NOON_UTC) is None
    assert compiled.first_mismatch(facts(sender="+447700900000"), NOON_UTC) is None
    assert compiled.first_mismatch(facts(sender="Promo"), NOON_UTC) is not None


def test_all_criteria_of_a_route_must_hold() -> None:
    routes = table(
        route("otp-shop-uk", 1, prefixes=["+44"], accounts=["shop"], kinds=["otp"]),
        route("fallback", 2),
    )
    states = all_up(routes)
    good = facts(account="shop", kind=MessageKind.OTP)
    assert routes.resolve(good, NOON_UTC, states).route == "otp-shop-uk"
    wrong_kind = facts(account="shop", kind=MessageKind.BULK)
    assert routes.resolve(wrong_kind, NOON_UTC, states).route == "fallback"


def test_a_tagged_route_takes_only_tagged_messages_and_says_why_it_did_not() -> None:
    routes = table(route("premium", 1, tags=["premium"]), route("standard", 2))
    states = all_up(routes)
    tagged = facts(account="bank", tags=frozenset({"premium"}))
    assert routes.resolve(tagged, NOON_UTC, states).route == "premium"
    assert routes.resolve(facts(account="shop"), NOON_UTC, states).route == "standard"
    mismatch = routes.routes[0].first_mismatch(facts(tags=frozenset({"bulk"})), NOON_UTC)
    assert mismatch is not None
    assert mismatch.detail == "none of ['bulk'] is in ['premium']"


def test_kind_given_as_plain_string_matches_the_enum() -> None:
    routes = table(route("otp", 1, kinds=["otp"]))
    assert routes.resolve(facts(kind="otp"), NOON_UTC, all_up(routes)).route == "otp"


# --- time windows --------------------------------------------------------------------------


def window_route(**window: Any) -> RouteTable:
    return table(route("windowed", 1, time_window={"timezone": "Europe/London", **window}))


def in_window(routes: RouteTable, now: float) -> bool:
    return routes.routes[0].first_mismatch(facts(), now) is None


def test_window_crossing_midnight_is_open_late_evening_and_early_morning() -> None:
    night = window_route(start="22:00", end="06:00")
    # June: London is UTC+1.
    assert in_window(night, utc(2026, 6, 10, 21, 30))  # 22:30 local
    assert in_window(night, utc(2026, 6, 11, 4, 59))  # 05:59 local
    assert not in_window(night, utc(2026, 6, 11, 5, 0))  # 06:00 local: end is exclusive
    assert not in_window(night, utc(2026, 6, 10, 12, 0))
    assert not in_window(night, utc(2026, 6, 10, 20, 59))  # 21:59 local


def test_window_crossing_midnight_belongs_to_the_day_it_opens() -> None:
    friday_night = window_route(start="22:00", end="06:00", days=["fri"])
    # 2026-06-12 is a Friday.
    assert in_window(friday_night, utc(2026, 6, 12, 22, 0))  # Fri 23:00 local
    assert in_window(friday_night, utc(2026, 6, 13, 2, 0))  # Sat 03:00 local
    assert not in_window(friday_night, utc(2026, 6, 12, 2, 0))  # Fri 03:00: opened Thursday
    assert not in_window(friday_night, utc(2026, 6, 13, 22, 0))  # Sat 23:00


def test_office_hours_follow_london_time_across_the_spring_change() -> None:
    office = window_route(start="09:00", end="17:00")
    # Clocks go forward at 01:00 UTC on Sunday 2026-03-29.
    assert not in_window(office, utc(2026, 3, 28, 8, 30))  # 08:30 GMT
    assert in_window(office, utc(2026, 3, 29, 8, 30))  # 09:30 BST, same UTC time
    assert in_window(office, utc(2026, 3, 29, 15, 59))  # 16:59 BST
    assert not in_window(office, utc(2026, 3, 29, 16, 0))  # 17:00 BST


def test_office_hours_follow_london_time_across_the_autumn_change() -> None:
    office = window_route(start="09:00", end="17:00")
    # Clocks go back at 01:00 UTC on Sunday 2026-10-25.
    assert in_window(office, utc(2026, 10, 24, 8, 30))  # 09:30 BST
    assert not in_window(office, utc(2026, 10, 25, 8, 30))  # 08:30 GMT
    assert in_window(office, utc(2026, 10, 25, 16, 30))  # 16:30 GMT


def test_window_in_the_skipped_hour_never_opens_on_the_spring_change_day() -> None:
    skipped = window_route(start="01:00", end="02:00")
    minutes = [utc(2026, 3, 29, 0, 0) + 60 * m for m in range(180)]
    assert not any(in_window(skipped, now) for now in minutes)
    assert in_window(skipped, utc(2026, 3, 30, 0, 30))  # 01:30 BST next day


def test_window_in_the_repeated_hour_is_open_both_times_on_the_autumn_change_day() -> None:
    repeated = window_route(start="01:00", end="02:00")
    assert in_window(repeated, utc(2026, 10, 25, 0, 30))  # 01:30 BST
    assert in_window(repeated, utc(2026, 10, 25, 1, 30))  # 01:30 GMT, an hour later
    assert not in_window(repeated, utc(2026, 10, 25, 2, 0))  # 02:00 GMT


def test_out_of_window_route_falls_through_to_the_next_priority() -> None:
    routes = table(
        route("daytime", 1, time_window={"start": "08:00", "end": "20:00", "timezone": "UTC"}),
        route("night", 2),
    )
    states = all_up(routes)
    assert routes.resolve(facts(), utc(2026, 6, 10, 12, 0), states).route == "daytime"
    assert routes.resolve(facts(), utc(2026, 6, 10, 23, 0), states).route == "night"


# --- failover ------------------------------------------------------------------------------


def failover_decision(states: LinkStates, **fields: Any) -> RouteDecision:
    routes = table(route("uk", 1, targets=["primary", "secondary", "tertiary"], **fields))
    return routes.resolve(facts(), NOON_UTC, states)


def test_failover_uses_the_first_target_while_it_is_up() -> None:
    states = {"primary": UP, "secondary": UP, "tertiary": UP}
    decision = failover_decision(states)
    assert decision.first_target == "primary"
    assert pick_target(decision, states) == "primary"


def test_failover_skips_a_down_link_and_an_unbound_link() -> None:
    states = {"primary": DOWN, "tertiary": UP}  # secondary is not in the view: not bound
    decision = failover_decision(states)
    assert decision.first_target == "tertiary"


def test_failover_skips_a_link_throttled_to_the_route_limit() -> None:
    states = {"primary": LinkStatus(True, 0.9), "secondary": UP, "tertiary": UP}
    assert failover_decision(states, throttle_limit=0.8).first_target == "secondary"
    assert failover_decision(states).first_target == "primary"  # default limit 1.0
    states["primary"] = LinkStatus(True, 1.0)
    assert failover_decision(states).first_target == "secondary"


def test_failover_moves_on_after_a_permanent_failure_on_a_link() -> None:
    states = {"primary": UP, "secondary": UP, "tertiary": UP}
    decision = failover_decision(states)
    assert pick_target(decision, states, exclude={"primary"}) == "secondary"
    assert pick_target(decision, states, exclude=["primary", "secondary"]) == "tertiary"
    assert pick_target(decision, states, exclude=("primary", "secondary", "tertiary")) is None


def test_no_available_target_still_routes_but_has_no_first_target() -> None:
    decision = failover_decision({"primary": DOWN})
    assert decision.route == "uk"
    assert decision.first_target is None
    # When a link comes back the dispatcher picks it up from the same decision.
    assert pick_target(decision, {"secondary": UP}) == "secondary"


# --- even (a pool of SIMs) -----------------------------------------------------------------


def even_decision(states: LinkStates) -> RouteDecision:
    routes = table(route("sims", 1, targets=["a", "b", "c"], strategy="even"))
    return routes.resolve(facts(), NOON_UTC, states)


def sim(used_today: int, daily_cap: int | None = None, *, up: bool = True) -> LinkStatus:
    return LinkStatus(up, 0.0, used_today, daily_cap)


def test_even_picks_the_sim_with_the_smallest_share_of_its_cap() -> None:
    states = {"a": sim(50, 100), "b": sim(100, 400), "c": sim(30, 100)}
    assert pick_target(even_decision(states), states) == "b"  # 25% beats 30% and 50%
    states["b"] = sim(400, 400, up=False)  # at its cap the link is not up: skipped
    assert pick_target(even_decision(states), states) == "c"


def test_even_without_caps_spreads_by_count_and_breaks_ties_in_target_order() -> None:
    states = {"a": sim(3), "b": sim(2), "c": sim(2)}
    assert pick_target(even_decision(states), states) == "b"
    states = {"a": sim(0), "b": sim(0), "c": sim(0)}
    assert pick_target(even_decision(states), states) == "a"


@given(
    st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=6),
    st.integers(min_value=0, max_value=300),
)
def test_even_never_gives_a_sim_a_larger_share_than_needed(caps: list[int], sends: int) -> None:
    """Picking one at a time, the shares of the caps never differ by more than one part's
    share of the smallest cap while every SIM has room."""
    names = [f"sim{index}" for index in range(len(caps))]
    used = dict.fromkeys(names, 0)
    routes = table(route("sims", 1, targets=names, strategy="even"))
    for _ in range(min(sends, sum(caps))):
        states = {
            name: sim(used[name], cap, up=used[name] < cap)
            for name, cap in zip(names, caps, strict=True)
        }
        picked = pick_target(routes.resolve(facts(), NOON_UTC, states), states)
        assert picked is not None
        used[picked] += 1
    shares = [used[name] / cap for name, cap in zip(names, caps, strict=True) if used[name] < cap]
    if shares:
        assert max(shares) - min(shares) <= 1 / min(caps) + 1e-9


# --- weighted ------------------------------------------------------------------------------


def weighted_table(weights: list[int], seed: int = 20260322) -> RouteTable:
    return table(
        route("share", 1, targets=["a", "b", "c"], strategy="weighted", weights=weights),
        seed=seed,
    )


def test_weighted_picks_follow_the_weights_within_five_percent() -> None:
    routes = weighted_table([6, 3, 1])
    states = all_up(routes)
    decision = routes.resolve(facts(), NOON_UTC, states)
    rng = random.Random(7)
    picks = Counter(pick_target(decision, states, rng=rng) for _ in range(10_000))
    assert abs(picks["a"] / 10_000 - 0.6) < 0.05
    assert abs(picks["b"] / 10_000 - 0.3) < 0.05
    assert abs(picks["c"] / 10_000 - 0.1) < 0.05


def test_weighted_share_goes_to_the_available_links_only() -> None:
    routes = weighted_table([6, 3, 1])
    states = {"a": DOWN, "b": UP, "c": UP}
    decision = routes.resolve(facts(), NOON_UTC, states)
    rng = random.Random(11)
    picks = Counter(pick_target(decision, states, rng=rng) for _ in range(10_000))
    assert set(picks) == {"b", "c"}
    assert abs(picks["b"] / 10_000 - 0.75) < 0.05


def test_weighted_with_the_same_seed_repeats_the_same_picks() -> None:
    states = {"a": UP, "b": UP, "c": UP}
    runs = []
    for _ in range(2):
        routes = weighted_table([1, 1, 1], seed=99)
        runs.append([routes.resolve(facts(), NOON_UTC, states).first_target for _ in range(50)])
    assert runs[0] == runs[1]
    assert len(set(runs[0])) == 3


def test_zero_weight_target_is_used_only_when_the_others_are_unavailable() -> None:
    routes = weighted_table([1, 1, 0])
    decision = routes.resolve(facts(), NOON_UTC, all_up(routes))
    rng = random.Random(3)
    all_available = {"a": UP, "b": UP, "c": UP}
    assert "c" not in {pick_target(decision, all_available, rng=rng) for _ in range(2_000)}
    assert pick_target(decision, {"a": DOWN, "b": DOWN, "c": UP}, rng=rng) == "c"


def test_weighted_without_weights_shares_equally() -> None:
    routes = table(route("even", 1, targets=["a", "b"], strategy="weighted"), seed=5)
    decision = routes.resolve(facts(), NOON_UTC, all_up(routes))
    rng = random.Random(5)
    picks = Counter(pick_target(decision, {"a": UP, "b": UP}, rng=rng) for _ in range(10_000))
    assert abs(picks["a"] / 10_000 - 0.5) < 0.05


# --- sender rewrite and max parts ----------------------------------------------------------


def test_alphanumeric_sender_is_replaced_by_a_number_on_routes_that_need_it() -> None:
    rewrite = [{"match": "[A-Za-z]", "replace": "447700900000"}]
    routes = table(route("us", 1, prefixes=["+1"], sender_rewrite=rewrite), route("rest", 2))
    states = all_up(routes)
    us = routes.resolve(facts("+12025550123", sender="MyShop"), NOON_UTC, states)
    assert us.sender == "447700900000"
    assert us.original_sender == "MyShop"
    assert us.sender_rewritten
    numeric = routes.resolve(facts("+12025550123", sender="447911000000"), NOON_UTC, states)
    assert numeric.sender == "447911000000"
    assert not numeric.sender_rewritten
    elsewhere = routes.resolve(facts(sender="MyShop"), NOON_UTC, states)
    assert elsewhere.sender == "MyShop"


def test_sender_rewrite_uses_the_first_matching_rule_and_its_groups() -> None:
    rewrite = [
        {"match": r"^00(\d+)$", "replace": r"+\1"},
        {"match": r"^\d+$", "replace": "unused"},
        {"match": r".", "replace": "fallback"},
    ]
    compiled = table(route("r", 1, sender_rewrite=rewrite)).routes[0]
    assert compiled.rewrite_sender("00447911000000") == "+447911000000"
    assert compiled.rewrite_sender("12345") == "unused"
    assert compiled.rewrite_sender("Shop") == "fallback"
    assert compiled.rewrite_sender(None) is None


def test_max_parts_is_carried_by_the_decision() -> None:
    routes = table(route("short", 1, max_parts=2))
    assert routes.resolve(facts(), NOON_UTC, all_up(routes)).max_parts == 2


# --- config validation ---------------------------------------------------------------------


class Holder(BaseModel):
    routes: RouteList


def test_duplicate_route_names_or_priorities_are_config_errors() -> None:
    with pytest.raises(ValidationError, match="named 'a'"):
        Holder.model_validate({"routes": [route("a", 1).model_dump(), route("a", 2).model_dump()]})
    with pytest.raises(ValidationError, match="share priority 1"):
        Holder.model_validate({"routes": [route("a", 1).model_dump(), route("b", 1).model_dump()]})
    with pytest.raises(ValueError, match="share priority"):
        RouteTable.from_config([route("a", 1), route("b", 1)])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"targets": []}, "at least 1"),
        ({"targets": ["x", "x"]}, "repeat a link"),
        ({"targets": ["x", "y"], "weights": [1]}, "1 weights for 2 targets"),
        ({"weights": [0]}, "positive sum"),
        ({"sender_regex": "("}, "bad regex"),
        ({"sender_rewrite": [{"match": "[", "replace": "x"}]}, "bad regex"),
        ({"prefixes": ["+44a"]}, "digits"),
        ({"countries": ["XX"]}, "unknown regions"),
        ({"kinds": ["spam"]}, "kinds"),
        ({"time_window": {"start": "25:00", "end": "06:00"}}, "HH:MM"),
        ({"time_window": {"start": "22:00", "end": "06:00", "timezone": "Mars/Base"}}, "zone"),
        ({"time_window": {"start": "22:00", "end": "06:00", "days": ["funday"]}}, "days"),
        ({"priority": "1"}, "valid integer"),
        ({"colour": "red"}, "Extra inputs"),
    ],
)
def test_bad_route_entries_are_refused_with_the_reason(
    fields: dict[str, Any], message: str
) -> None:
    entry = {"name": "r", "priority": 1, "targets": ["x"], **fields}
    with pytest.raises(ValidationError, match=message):
        RouteConfig.model_validate(entry)


def test_prefixes_are_stored_with_a_plus_and_link_names_are_listed() -> None:
    config = route("r", 1, prefixes=["44", "+33"], targets=["x", "y"])
    assert config.prefixes == ["+44", "+33"]
    assert RouteTable.from_config([config]).link_names() == {"x", "y"}


def test_window_answers_stay_right_when_asked_many_times_a_minute() -> None:
    window = window_route(start="09:00", end="17:00").routes[0].window
    assert window is not None
    start = utc(2026, 3, 29, 7, 58)  # spring change day, around the 09:00 BST opening
    answers = [window.contains(start + 7 * step) for step in range(60)]
    expected = [
        datetime.fromtimestamp(start + 7 * step, window.zone).hour >= 9 for step in range(60)
    ]
    assert answers == expected
    assert False in answers and True in answers
