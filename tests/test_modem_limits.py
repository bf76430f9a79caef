"""Per-SIM pace and daily cap."""

from __future__ import annotations

from datetime import date

import pytest

from modems.limits import SendAllowance, SimSendLimits

MONDAY = date(2026, 12, 7)
TUESDAY = date(2026, 12, 8)


def test_no_limits_always_allow() -> None:
    limits = SimSendLimits()
    for second in range(100):
        assert limits.check(5, float(second), MONDAY).allowed
        limits.record(5, float(second), MONDAY)
    assert limits.remaining_today(MONDAY) is None
    assert limits.sent_today(MONDAY) == 500


def test_pace_spaces_parts_by_the_rate() -> None:
    limits = SimSendLimits(per_minute=6)  # one part every 10 s
    limits.record(1, 0.0, MONDAY)
    assert limits.check(1, 4.0, MONDAY) == SendAllowance(False, 6.0, False)
    assert limits.check(1, 10.0, MONDAY).allowed
    limits.record(3, 10.0, MONDAY)  # a three-part message earns 30 s
    assert limits.check(1, 39.0, MONDAY).wait == pytest.approx(1.0)
    assert limits.check(1, 40.0, MONDAY).allowed


def test_daily_cap_refuses_a_message_that_does_not_fit_and_resets_the_next_day() -> None:
    limits = SimSendLimits(daily_cap=10)
    limits.record(8, 0.0, MONDAY)
    assert limits.remaining_today(MONDAY) == 2
    assert limits.check(3, 1.0, MONDAY) == SendAllowance(False, 0.0, True)
    assert limits.check(2, 1.0, MONDAY).allowed
    assert limits.check(3, 1.0, TUESDAY).allowed
    assert limits.remaining_today(TUESDAY) == 10
    limits.record(1, 2.0, TUESDAY)
    assert limits.sent_today(TUESDAY) == 1


def test_restore_takes_the_count_kept_over_a_restart() -> None:
    limits = SimSendLimits(daily_cap=100)
    limits.restore(MONDAY, 99)
    assert limits.check(2, 0.0, MONDAY).capped
    assert limits.remaining_today(TUESDAY) == 100


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        SimSendLimits(per_minute=0)
    with pytest.raises(ValueError):
        SimSendLimits(daily_cap=-1)
