"""Parsing single GTFS field values; each parser raises `FieldError` saying what to write.

Times are "H:MM:SS" or "HH:MM:SS" measured from noon minus 12 h of the service day, so a trip
that runs past midnight has times such as 25:10:00; we keep them as seconds after midnight of
the service day (25:10:00 → 90600) and never wrap them.
"""

from __future__ import annotations

import math
from datetime import date
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# A service day's times can legitimately exceed 24 h, but not by days: 72 h catches typos
# such as 250:00:00 while allowing night services that run into the second morning.
MAX_SERVICE_TIME_S = 72 * 3600


class FieldError(ValueError):
    """A field value that cannot be parsed; the message says what to write instead."""


def parse_time_s(value: str) -> int:
    """'25:10:05' → 90605 seconds after midnight of the service day."""
    parts = value.split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise FieldError(
            f"{value!r} is not a time; write H:MM:SS or HH:MM:SS "
            "(hours may pass 24 for trips after midnight, e.g. 25:10:00)"
        )
    hours, minutes, seconds = (int(p) for p in parts)
    if len(parts[1]) != 2 or len(parts[2]) != 2 or minutes > 59 or seconds > 59:
        raise FieldError(f"{value!r} is not a time; minutes and seconds are two digits, 00-59")
    total = hours * 3600 + minutes * 60 + seconds
    if total > MAX_SERVICE_TIME_S:
        raise FieldError(
            f"{value!r} is more than {MAX_SERVICE_TIME_S // 3600} h after the start of the "
            "service day; check the hours"
        )
    return total


def parse_date(value: str) -> date:
    """'20261123' → date(2026, 11, 23)."""
    if len(value) != 8 or not value.isdigit():
        raise FieldError(f"{value!r} is not a date; write YYYYMMDD, e.g. 20261123")
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise FieldError(f"{value!r} is not a real calendar date (YYYYMMDD)") from None


def parse_int(value: str, *, low: int | None = None, high: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise FieldError(f"{value!r} is not a whole number") from None
    if (low is not None and number < low) or (high is not None and number > high):
        raise FieldError(f"{value} is out of range; expected {_range(low, high)}")
    return number


def parse_choice(value: str, allowed: range) -> int:
    number = parse_int(value)
    if number not in allowed:
        raise FieldError(f"{value} is not allowed here; use one of {_list(allowed)}")
    return number


def parse_float(value: str, *, low: float | None = None, high: float | None = None) -> float:
    try:
        number = float(value)
    except ValueError:
        raise FieldError(f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise FieldError(f"{value!r} is not a finite number")
    if (low is not None and number < low) or (high is not None and number > high):
        raise FieldError(f"{value} is out of range; expected {_range(low, high)}")
    return number


def parse_lat(value: str) -> float:
    return parse_float(value, low=-90.0, high=90.0)


def parse_lon(value: str) -> float:
    return parse_float(value, low=-180.0, high=180.0)


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{low} to {high}"
    if low is not None:
        return f"at least {low}"
    return f"at most {high}"


def _list(allowed: range) -> str:
    return ", ".join(str(v) for v in allowed)


def parse_timezone(value: str) -> str:
    """An IANA time zone name such as Asia/Almaty (schedules are local times in it)."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise FieldError(
            f"{value!r} is not a time zone; use an IANA name such as Asia/Almaty"
        ) from None
    return value
