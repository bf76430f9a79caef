"""SMPP 3.4 time format (7.1.1): absolute with UTC offsets, relative periods, round trips."""

from __future__ import annotations

import calendar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpp.timefmt import InvalidSmppTime, format_smpp_time, parse_smpp_time

NOW = calendar.timegm((2026, 11, 22, 6, 0, 0, 0, 0, 0))


def test_empty_field_means_not_given() -> None:
    assert parse_smpp_time("", NOW) is None


def test_absolute_time_in_utc() -> None:
    assert parse_smpp_time("261122071500000+", NOW) == NOW + 3600 + 900


def test_positive_offset_is_ahead_of_utc() -> None:
    # 09:00 local at UTC+2 (8 quarter hours) is 07:00 UTC.
    assert parse_smpp_time("261122090000008+", NOW) == NOW + 3600


def test_negative_offset_is_behind_utc() -> None:
    assert parse_smpp_time("261122010000020-", NOW) == NOW


def test_tenths_of_a_second_count() -> None:
    assert parse_smpp_time("261122060000500+", NOW) == NOW + 0.5


def test_relative_period_counts_from_now() -> None:
    assert parse_smpp_time("000001020304000R", NOW) == NOW + 86400 + 2 * 3600 + 3 * 60 + 4


def test_relative_months_and_years_use_30_and_365_days() -> None:
    assert parse_smpp_time("010200000000000R", NOW) == NOW + 365 * 86400 + 60 * 86400


@pytest.mark.parametrize(
    "value",
    [
        "2611220715",  # too short
        "26112207150000+",
        "261122071500000X",  # unknown sign
        "261322071500000+",  # month 13
        "261131071500000+",  # 31 November
        "261122241500000+",  # hour 24
        "261122071500049+",  # offset beyond 12 h
        "2611220715a0000+",
    ],
)
def test_malformed_times_are_refused(value: str) -> None:
    with pytest.raises(InvalidSmppTime):
        parse_smpp_time(value, NOW)


@given(st.integers(min_value=946684800, max_value=4102444799), st.integers(0, 9))
def test_formatted_time_parses_back_to_the_same_instant(seconds: int, tenths: int) -> None:
    instant = seconds + tenths / 10
    text = format_smpp_time(instant)
    assert len(text) == 16 and text.endswith("00+")
    parsed = parse_smpp_time(text, 0.0)
    assert parsed is not None
    assert abs(parsed - instant) < 1e-6
