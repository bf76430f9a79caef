"""The routing config sections read from TOML, as the gateway's config model will embed them."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from routing import (
    LinkStatus,
    MessageKind,
    NumberingConfig,
    NumberResolver,
    RouteFacts,
    RouteList,
    RouteStrategy,
    RouteTable,
)

EXAMPLE = Path(__file__).parent / "data" / "routing" / "routing.toml"
REPO = Path(__file__).parent.parent


class GatewayLikeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    numbering: NumberingConfig = NumberingConfig()
    routes: RouteList = []


def load_example() -> GatewayLikeConfig:
    return GatewayLikeConfig.model_validate(tomllib.loads(EXAMPLE.read_text()))


def test_example_toml_validates_into_the_routing_models() -> None:
    config = load_example()
    assert config.numbering.default_region == "GB"
    assert [route.name for route in config.routes] == [
        "otp-ninety-direct",
        "us-numeric-sender",
        "uk-bulk-night",
        "default",
    ]
    assert config.routes[1].strategy is RouteStrategy.WEIGHTED
    assert config.routes[1].prefixes == ["+1"]
    assert config.routes[2].kinds == [MessageKind.BULK]


def test_example_routes_send_otp_direct_rewrite_us_senders_and_keep_bulk_to_nights() -> None:
    config = load_example()
    numbering = config.numbering.model_copy(
        update={
            "prefix_file": REPO / str(config.numbering.prefix_file),
            "mnp_file": REPO / str(config.numbering.mnp_file),
        }
    )
    resolver = NumberResolver.from_config(numbering)
    table = RouteTable.from_config(config.routes)
    links = {name: LinkStatus(up=True) for name in table.link_names()}
    wednesday_night = datetime(2026, 6, 10, 22, 30, tzinfo=UTC).timestamp()  # 23:30 BST

    ported = resolver.resolve("07911 123456")  # national input, ported to Ninety Mobile
    otp = table.resolve(
        RouteFacts.from_resolved(ported, kind=MessageKind.OTP), wednesday_night, links
    )
    assert otp.route == "otp-ninety-direct"
    assert otp.first_target == "ninety-smpp"

    us = resolver.resolve("+1 202 555 0123")
    us_decision = table.resolve(RouteFacts.from_resolved(us, sender="Shop"), wednesday_night, links)
    assert (us_decision.route, us_decision.sender, us_decision.max_parts) == (
        "us-numeric-sender",
        "12025550100",
        3,
    )

    uk = resolver.resolve("+447400123456")
    bulk = RouteFacts.from_resolved(
        uk, sender="Newsletter", account="newsletter", kind=MessageKind.BULK
    )
    assert table.resolve(bulk, wednesday_night, links).route == "uk-bulk-night"
    wednesday_noon = datetime(2026, 6, 10, 11, 0, tzinfo=UTC).timestamp()
    assert table.resolve(bulk, wednesday_noon, links).route == "default"
