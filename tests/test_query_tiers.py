"""The query layer: the coarsest exact tier, and the same numbers from every tier."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from smartcity.cities import get_city
from smartcity.queries.energy import lighting_totals
from smartcity.queries.tiers import DailySegment, Segment, Tier, plan
from smartcity.rollups.maintain import run_once
from smartcity.settings import Settings
from tests.rollup_reference import CITY, START, energy_in_range, lamp_data, write_lamps

TZ = get_city("astana").tz
WATERMARK = datetime(2026, 4, 1, tzinfo=UTC)


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_whole_local_days_come_from_the_daily_tier() -> None:
    # Local midnight in Astana (UTC+5) is 19:00 UTC.
    segs = plan(_utc(2026, 3, 9, 19), _utc(2026, 3, 12, 19), TZ, WATERMARK)
    assert [s.tier for s in segs] == [Tier.DAILY]
    assert isinstance(segs[0], DailySegment)
    assert segs[0].days == (date(2026, 3, 10), date(2026, 3, 12))


def test_ragged_ranges_use_hourly_then_raw_at_the_edges() -> None:
    segs = plan(_utc(2026, 3, 9, 10, 30), _utc(2026, 3, 12, 21, 15), TZ, WATERMARK)
    assert [(s.tier, s.start, s.end) for s in segs] == [
        (Tier.RAW, _utc(2026, 3, 9, 10, 30), _utc(2026, 3, 9, 11)),
        (Tier.HOURLY, _utc(2026, 3, 9, 11), _utc(2026, 3, 9, 19)),
        (Tier.DAILY, _utc(2026, 3, 9, 19), _utc(2026, 3, 12, 19)),
        (Tier.HOURLY, _utc(2026, 3, 12, 19), _utc(2026, 3, 12, 21)),
        (Tier.RAW, _utc(2026, 3, 12, 21), _utc(2026, 3, 12, 21, 15)),
    ]
    # UTC-day-aligned but not local-day-aligned: hourly, never daily.
    segs = plan(_utc(2026, 3, 10), _utc(2026, 3, 11), TZ, WATERMARK)
    assert [s.tier for s in segs] == [Tier.HOURLY]


def test_what_the_rollups_have_not_folded_in_comes_from_raw() -> None:
    segs = plan(_utc(2026, 3, 10, 5), _utc(2026, 3, 10, 12), TZ, _utc(2026, 3, 10, 9, 40))
    assert [(s.tier, s.start, s.end) for s in segs] == [
        (Tier.HOURLY, _utc(2026, 3, 10, 5), _utc(2026, 3, 10, 9)),
        (Tier.RAW, _utc(2026, 3, 10, 9), _utc(2026, 3, 10, 12)),
    ]
    assert plan(_utc(2026, 3, 10), _utc(2026, 3, 11), TZ, None) == [
        Segment(Tier.RAW, _utc(2026, 3, 10), _utc(2026, 3, 11))
    ]
    with pytest.raises(ValueError, match="time zone"):
        plan(datetime(2026, 3, 10), datetime(2026, 3, 11), TZ, None)


@pytest.mark.parametrize(
    ("start", "end", "tiers"),
    [
        (_utc(2026, 3, 10, 19), _utc(2026, 3, 11, 19), {Tier.DAILY}),  # one local day
        (START, START + timedelta(hours=36), {Tier.DAILY, Tier.HOURLY}),  # everything
        (_utc(2026, 3, 10, 20, 25), _utc(2026, 3, 12, 3, 5), {Tier.RAW, Tier.HOURLY}),  # ragged
        (_utc(2026, 3, 11, 0, 7), _utc(2026, 3, 11, 0, 52), {Tier.RAW}),  # inside one hour
    ],
)
async def test_every_tier_gives_the_numbers_raw_rows_give(
    database_url: str, start: datetime, end: datetime, tiers: set[Tier]
) -> None:
    data = lamp_data()
    write_lamps(database_url, data.rows)
    run_once(
        Settings(_env_file=None, database_url=database_url, rollup_safety_lag_s=0),  # type: ignore[call-arg]
        now=_utc(2026, 3, 12),
    )
    want = energy_in_range(data.rows, start, end)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        tiered, segs = await lighting_totals(conn, CITY.slug, start, end, by_district=True)
        raw, _ = await lighting_totals(
            conn, CITY.slug, start, end, by_district=True, tiers=[Segment(Tier.RAW, start, end)]
        )
        city, _ = await lighting_totals(conn, CITY.slug, start, end, by_district=False)
    assert {t.key for t in tiered} == set(want)
    for t in tiered:
        assert math.isclose(t.energy_wh, want[t.key], rel_tol=1e-9, abs_tol=1e-6), t.key
    assert [(t.key, t.lamp_hours_reporting, t.lamp_hours_faulty) for t in tiered] == [
        (r.key, r.lamp_hours_reporting, r.lamp_hours_faulty) for r in raw
    ]
    for t, r in zip(tiered, raw, strict=True):
        for f in ("energy_wh", "full_power_energy_wh", "burn_h"):
            assert math.isclose(getattr(t, f), getattr(r, f), rel_tol=1e-9, abs_tol=1e-6), f
    assert len(city) == 1
    assert math.isclose(city[0].energy_wh, sum(want.values()), rel_tol=1e-9)
    assert city[0].lamp_hours_reporting == sum(t.lamp_hours_reporting for t in tiered)
    assert {s.tier for s in segs} == tiers
