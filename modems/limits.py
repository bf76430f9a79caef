"""How fast and how much one SIM may send: messages per minute and a daily cap.

Operators block SIMs that send too much, so a modem link paces its sends and stops at a daily
cap. Owns the arithmetic only, sans-IO: the caller passes `now` (monotonic seconds, for the
pace) and `today` (the calendar date in the operator's time zone, for the cap), and restores
the day's count from its store after a restart (`restore`). Must never read a clock, persist
anything or choose another SIM (a pool's strategy does, using `remaining_today`).

Counts are of SMS parts: the operator counts what goes over the air.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True, slots=True)
class SendAllowance:
    allowed: bool
    wait: float  # seconds until the pace allows the next part (0 when allowed)
    capped: bool  # the daily cap is reached: nothing more today


class SimSendLimits:
    """`per_minute` parts a minute (None: as fast as the modem goes), `daily_cap` parts a day
    (None: no cap)."""

    def __init__(self, per_minute: float | None = None, daily_cap: int | None = None) -> None:
        if per_minute is not None and per_minute <= 0:
            raise ValueError("per_minute must be positive")
        if daily_cap is not None and daily_cap < 0:
            raise ValueError("daily_cap must not be negative")
        self.per_minute = per_minute
        self.daily_cap = daily_cap
        self._day: date | None = None
        self._sent_today = 0
        self._next_at: float | None = None

    def restore(self, today: date, sent_today: int) -> None:
        """The day's count as the store kept it (after a restart)."""
        self._day = today
        self._sent_today = max(0, sent_today)

    def sent_today(self, today: date) -> int:
        return self._sent_today if self._day == today else 0

    def remaining_today(self, today: date) -> int | None:
        """Parts still allowed today; None when there is no cap."""
        if self.daily_cap is None:
            return None
        return max(0, self.daily_cap - self.sent_today(today))

    def check(self, parts: int, now: float, today: date) -> SendAllowance:
        """May a message of `parts` parts go now? A message is never split across days: if
        its parts do not all fit under today's cap, it waits for another SIM or tomorrow."""
        remaining = self.remaining_today(today)
        if remaining is not None and parts > remaining:
            return SendAllowance(False, 0.0, True)
        if self._next_at is not None and now < self._next_at:
            return SendAllowance(False, self._next_at - now, False)
        return SendAllowance(True, 0.0, False)

    def record(self, parts: int, now: float, today: date) -> None:
        """`parts` parts went at `now`: count them and space the next send."""
        if self._day != today:
            self._day = today
            self._sent_today = 0
        self._sent_today += parts
        if self.per_minute is not None:
            start = max(now, self._next_at or now)
            self._next_at = start + parts * 60.0 / self.per_minute
