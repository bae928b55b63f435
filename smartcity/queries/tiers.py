"""Which tier answers a time range exactly: daily rollups for whole city-local days, hourly
rollups for whole UTC hours, raw rows for the ragged edges and for what the rollups have not
folded in yet.

A range [start, end) is cut into at most five segments — raw, hourly, daily, hourly, raw —
and each additive figure (energy, burn hours, lamp-hours, consumption) is the sum over the
segments, which is exact because every tier attributes a register delta to the bucket of its
later reading (`smartcity.rollups.registers`). Rollups are used only up to the hour holding
the maintenance watermark: readings ingested since then are read from the raw tier.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

HOUR = timedelta(hours=1)


class Tier(StrEnum):
    DAILY = "daily"
    HOURLY = "hourly"
    RAW = "raw"


@dataclass(frozen=True, slots=True)
class Segment:
    tier: Tier
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive


@dataclass(frozen=True, slots=True)
class DailySegment(Segment):
    days: tuple[date, date] = (date.min, date.min)  # first and last local day, inclusive


def floor_hour(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(ts: datetime) -> datetime:
    f = floor_hour(ts)
    return f if f == ts else f + HOUR


def _local_midnight_on_or_after(ts: datetime, tz: ZoneInfo) -> datetime:
    local = ts.astimezone(tz)
    midnight = datetime.combine(local.date(), datetime.min.time(), tz)
    if midnight < local:
        midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tz)
    return midnight.astimezone(UTC)


def _local_midnight_on_or_before(ts: datetime, tz: ZoneInfo) -> datetime:
    local = ts.astimezone(tz)
    return datetime.combine(local.date(), datetime.min.time(), tz).astimezone(UTC)


def plan(
    start: datetime, end: datetime, tz: ZoneInfo, fresh_until: datetime | None
) -> list[Segment]:
    """Cover [start, end) with the coarsest exact tiers. `fresh_until` is the rollups'
    watermark (None: never refreshed, everything from raw)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must carry a time zone (UTC or the city's)")
    if end <= start:
        return []
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if fresh_until is None:
        return [Segment(Tier.RAW, start, end)]
    h0 = ceil_hour(start)
    h1 = min(floor_hour(end), floor_hour(fresh_until))
    if h0 >= h1:
        return [Segment(Tier.RAW, start, end)]
    segments: list[Segment] = []
    if start < h0:
        segments.append(Segment(Tier.RAW, start, h0))
    d0 = _local_midnight_on_or_after(h0, tz)
    d1 = _local_midnight_on_or_before(h1, tz)
    # Local days are whole UTC hours only in zones with whole-hour offsets (all of Kazakhstan).
    if d0 < d1 and d0.minute == 0 and d1.minute == 0:
        if h0 < d0:
            segments.append(Segment(Tier.HOURLY, h0, d0))
        first = d0.astimezone(tz).date()
        last = d1.astimezone(tz).date() - timedelta(days=1)
        segments.append(DailySegment(Tier.DAILY, d0, d1, (first, last)))
        if d1 < h1:
            segments.append(Segment(Tier.HOURLY, d1, h1))
    else:
        segments.append(Segment(Tier.HOURLY, h0, h1))
    if h1 < end:
        segments.append(Segment(Tier.RAW, h1, end))
    return segments
