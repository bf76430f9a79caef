"""SMPP 3.4 time format (section 7.1.1): `schedule_delivery_time`, `validity_period`, `final_date`.

Owns parsing `YYMMDDhhmmsstnnp` (absolute, `p` is '+' or '-' with `nn` quarter hours from UTC,
or relative, `p` is 'R') into unix seconds, and formatting unix seconds as an absolute UTC time.

Must never read a clock: the caller passes `now` (unix seconds) for relative times.
Relative periods count a year as 365 days and a month as 30 days, as SMSCs commonly do; the spec
leaves the calendar arithmetic open.
"""

from __future__ import annotations

import calendar
import time

SMPP_TIME_LENGTH = 16
_YEAR_SECONDS = 365 * 86400
_MONTH_SECONDS = 30 * 86400
_MAX_QUARTER_HOURS = 48  # +-12 hours from UTC


class InvalidSmppTime(ValueError):
    """The field is not a valid SMPP time."""


def parse_smpp_time(value: str, now: float) -> float | None:
    """The instant `value` names, in unix seconds; None for an empty field ("not given").

    `now` (unix seconds) anchors relative times. Raises InvalidSmppTime for anything else.
    """
    if not value:
        return None
    if len(value) != SMPP_TIME_LENGTH or not value[:15].isdigit():
        raise InvalidSmppTime(f"{value!r} is not YYMMDDhhmmsstnnp")
    sign = value[15]
    years, months, days = int(value[0:2]), int(value[2:4]), int(value[4:6])
    hours, minutes, seconds = int(value[6:8]), int(value[8:10]), int(value[10:12])
    tenths, quarters = int(value[12]), int(value[13:15])
    if sign == "R":
        return now + (
            years * _YEAR_SECONDS
            + months * _MONTH_SECONDS
            + days * 86400
            + hours * 3600
            + minutes * 60
            + seconds
        )
    if sign not in "+-":
        raise InvalidSmppTime(f"{value!r}: the last character must be '+', '-' or 'R'")
    if not (1 <= months <= 12 and hours <= 23 and minutes <= 59 and seconds <= 59):
        raise InvalidSmppTime(f"{value!r}: a date or time field is out of range")
    if quarters > _MAX_QUARTER_HOURS:
        raise InvalidSmppTime(f"{value!r}: UTC offset beyond 12 hours")
    year = 2000 + years
    if not 1 <= days <= calendar.monthrange(year, months)[1]:
        raise InvalidSmppTime(f"{value!r}: no such day in that month")
    local = calendar.timegm((year, months, days, hours, minutes, seconds, 0, 0, 0))
    offset = quarters * 900 * (1 if sign == "+" else -1)
    return local - offset + tenths / 10


def format_smpp_time(instant: float) -> str:
    """`instant` (unix seconds) as an absolute SMPP time in UTC, e.g. `261122061500000+`."""
    whole_tenths = round(instant * 10)
    moment = time.gmtime(whole_tenths // 10)
    return time.strftime("%y%m%d%H%M%S", moment) + f"{whole_tenths % 10}00+"
