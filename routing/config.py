"""Configuration sections owned by routing: `[numbering]` and the `[[routes]]` entries.

Owns: the pydantic models and their validation (regexes compile, time zones exist, weights line
up with targets, route names and priorities are unique). The gateway embeds these models in its
one config model; `RouteTable.from_config` and `NumberResolver.from_config` consume them.
Must never: read files, know about links other than by name, or import gateway/smpp.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

_HH_MM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_DIGITS = re.compile(r"^\+?\d{1,15}$")
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class MessageKind(StrEnum):
    """What a message is for; routes may be restricted to some kinds."""

    OTP = "otp"
    TRANSACTIONAL = "transactional"
    BULK = "bulk"


class RouteStrategy(StrEnum):
    FAILOVER = "failover"  # the first usable target, in order
    WEIGHTED = "weighted"  # a draw among the usable targets by weight
    # The usable target that has used the least of its day: a pool of SIMs sends evenly
    # within their daily caps (see `routing.rules.pick_target`).
    EVEN = "even"


class _Section(BaseModel):
    # Like the gateway's sections: unknown keys and cross-type coercion are mistakes.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class NumberingConfig(_Section):
    """`[numbering]`: how destinations are normalised and which operator tables are loaded."""

    default_region: str | None = Field(
        default=None,
        description="ISO 3166 region used for national input without +, e.g. 'GB'.",
    )
    prefix_file: Path | None = Field(
        default=None, strict=False, description="CSV prefix,mno[,country]"
    )
    mnp_file: Path | None = Field(
        default=None, strict=False, description="CSV msisdn,mno (ported numbers)"
    )
    accept: Literal["valid", "possible"] = Field(
        default="valid",
        description=(
            "'valid': the number must be in an allocated range of phonenumbers' metadata; "
            "'possible': only its length must be plausible (for ranges newer than the metadata)."
        ),
    )

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str | None) -> str | None:
        if value is None:
            return None
        region = value.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r} (expected an ISO 3166 code like 'GB')")
        return region


class TimeWindowConfig(_Section):
    """Local wall-clock window; `start > end` crosses midnight. `days` are the days it opens."""

    start: str
    end: str
    timezone: str = "UTC"
    days: list[str] = Field(default_factory=lambda: list(WEEKDAYS))

    @field_validator("start", "end")
    @classmethod
    def _hh_mm(cls, value: str) -> str:
        if not _HH_MM.match(value):
            raise ValueError(f"time {value!r} must be HH:MM (24 h)")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("days")
    @classmethod
    def _weekday_names(cls, value: list[str]) -> list[str]:
        days = [day.lower()[:3] for day in value]
        unknown = [day for day in days if day not in WEEKDAYS]
        if unknown or not days:
            raise ValueError(f"days must be among {', '.join(WEEKDAYS)}; got {value!r}")
        return days


class SenderRewriteConfig(_Section):
    """When `match` (a regex, searched) matches the sender, the sender becomes `replace`
    (expanded with the match, so `\\1` refers to its groups)."""

    match: str
    replace: str

    @field_validator("match")
    @classmethod
    def _compiles(cls, value: str) -> str:
        _compile(value)
        return value


class RouteConfig(_Section):
    """One `[[routes]]` entry. Every match criterion is optional; an empty list means 'any'.

    Routes are tried in ascending `priority` (1 before 10); the first that matches decides.
    """

    name: str = Field(min_length=1)
    priority: int
    prefixes: list[str] = Field(default_factory=list, description="E.164 prefixes, '+' optional")
    countries: list[str] = Field(default_factory=list, description="ISO regions, e.g. GB")
    mnos: list[str] = Field(default_factory=list, description="operator names, case-insensitive")
    senders: list[str] = Field(default_factory=list, description="exact sender ids")
    sender_regex: str | None = Field(default=None, description="searched in the sender id")
    accounts: list[str] = Field(default_factory=list, description="HTTP key name or system_id")
    kinds: list[Annotated[MessageKind, Field(strict=False)]] = Field(default_factory=list)
    tags: list[str] = Field(
        default_factory=list,
        description="route tags: a message must carry one of them (an account's route_tags)",
    )
    time_window: TimeWindowConfig | None = None
    targets: list[str] = Field(min_length=1, description="link names")
    strategy: RouteStrategy = Field(default=RouteStrategy.FAILOVER, strict=False)
    weights: list[int] | None = Field(default=None, description="one per target (weighted)")
    throttle_limit: float = Field(
        default=1.0,
        gt=0.0,
        le=1.0,
        description="a link whose throttle level reaches this is skipped",
    )
    sender_rewrite: list[SenderRewriteConfig] = Field(default_factory=list)
    max_parts: int | None = Field(default=None, ge=1, le=255)
    queue_limit: int | None = Field(
        default=None,
        ge=1,
        description="messages of this route that may wait queued (None: no limit of its own)",
    )

    @field_validator("prefixes")
    @classmethod
    def _digit_prefixes(cls, value: list[str]) -> list[str]:
        for prefix in value:
            if not _DIGITS.match(prefix):
                raise ValueError(f"prefix {prefix!r} must be digits with an optional leading +")
        return ["+" + prefix.lstrip("+") for prefix in value]

    @field_validator("countries")
    @classmethod
    def _regions(cls, value: list[str]) -> list[str]:
        regions = [region.upper() for region in value]
        unknown = [r for r in regions if r not in phonenumbers.SUPPORTED_REGIONS]
        if unknown:
            raise ValueError(f"unknown regions {unknown!r}")
        return regions

    @field_validator("sender_regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            _compile(value)
        return value

    @field_validator("targets")
    @classmethod
    def _unique_targets(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"targets repeat a link: {value!r}")
        return value

    @model_validator(mode="after")
    def _weights_fit_targets(self) -> RouteConfig:
        if self.weights is None:
            return self
        if len(self.weights) != len(self.targets):
            raise ValueError(
                f"route {self.name!r}: {len(self.weights)} weights for {len(self.targets)} targets"
            )
        if any(weight < 0 for weight in self.weights) or sum(self.weights) <= 0:
            raise ValueError(f"route {self.name!r}: weights must be >= 0 with a positive sum")
        return self


def check_routes(routes: list[RouteConfig]) -> list[RouteConfig]:
    """Names and priorities must be unique so the evaluation order is never implicit."""
    seen_names: set[str] = set()
    seen_priorities: dict[int, str] = {}
    for route in routes:
        if route.name in seen_names:
            raise ValueError(f"two routes are named {route.name!r}")
        seen_names.add(route.name)
        if route.priority in seen_priorities:
            raise ValueError(
                f"routes {seen_priorities[route.priority]!r} and {route.name!r} "
                f"share priority {route.priority}"
            )
        seen_priorities[route.priority] = route.name
    return routes


RouteList = Annotated[list[RouteConfig], AfterValidator(check_routes)]
"""Type for the gateway's `routes` field: a list of `[[routes]]` checked as a whole."""


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"bad regex {pattern!r}: {exc}") from exc
