"""KPIs (docs/kpis.md) from the rollups equal the same formulas applied in Python to the
numpy reference figures (themselves checked against the raw rows in test_rollups)."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import psycopg

from smartcity.queries import kpis
from smartcity.queries.energy import lighting_totals
from smartcity.rollups.maintain import run_once
from smartcity.settings import Settings
from tests.rollup_reference import (
    CITY,
    START,
    TZ,
    lamp_data,
    lighting_reference,
    meter_data,
    metering_reference,
    write_lamps,
    write_meters,
)

END = START + timedelta(hours=36)
DAYS = (date(2026, 3, 10), date(2026, 3, 12))


async def test_kpis_follow_their_documented_formulas(database_url: str) -> None:
    lamps, meters = lamp_data(), meter_data()
    write_lamps(database_url, lamps.rows)
    write_meters(database_url, meters.rows)
    run_once(
        Settings(_env_file=None, database_url=database_url, rollup_safety_lag_s=0),  # type: ignore[call-arg]
        now=datetime(2026, 3, 12, tzinfo=UTC),
    )
    light = lighting_reference(lamps.rows)
    water = metering_reference(meters.rows)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        per_lamp = await kpis.energy_per_lamp_night_kwh(conn, CITY.slug, *DAYS)
        (city,), _ = await lighting_totals(conn, CITY.slug, START, END, by_district=False)
        mttr = await kpis.fault_mttr(conn, CITY.slug, START, END)
        night = await kpis.water_night_flow(conn, CITY.slug, *DAYS)
        rate = await kpis.meter_reporting_rate(conn, CITY.slug, *DAYS)

    city_days = [f for k, f in light.items() if k[:2] == ("daily", "city")]
    want = (
        sum(f["energy_wh"] for f in city_days) / 1000 / sum(f["lamps_reporting"] for f in city_days)
    )
    assert per_lamp is not None
    assert math.isclose(per_lamp, want, rel_tol=1e-9)

    lamp_hours = {k: f for k, f in light.items() if k[:2] == ("hourly", "lamp")}
    reporting = sum(f["lamp_hours_reporting"] for f in lamp_hours.values())
    faulty = sum(f["lamp_hours_faulty"] for f in lamp_hours.values())
    assert faulty > 0
    assert city.availability_pct is not None
    assert math.isclose(city.availability_pct, 100 * (1 - faulty / reporting), rel_tol=1e-9)
    saved = sum(f["full_power_energy_wh"] - f["energy_wh"] for f in lamp_hours.values()) / 1000
    assert saved > 0  # the lamps are dimmed after midnight
    assert math.isclose(city.saved_by_dimming_kwh, saved, rel_tol=1e-9)

    # MTTR: per lamp, from the first faulty hour to the first later reported healthy hour.
    durations: list[float] = []
    by_lamp: dict[str, list[tuple[datetime, bool]]] = defaultdict(list)
    for (_, _, lamp, hour), f in lamp_hours.items():
        by_lamp[lamp].append((hour, f["lamps_faulty"] > 0))
    for hours in by_lamp.values():
        hours.sort()
        began: datetime | None = None
        for hour, is_faulty in hours:
            if is_faulty and began is None:
                began = hour
            elif not is_faulty and began is not None:
                durations.append((hour - began).total_seconds() / 3600)
                began = None
    assert mttr.repairs == len(durations) >= 2
    assert mttr.mean_hours is not None
    assert math.isclose(mttr.mean_hours, sum(durations) / len(durations), rel_tol=1e-9)

    # Night flow per district: mean hourly volume at local 02–05 vs over all hours.
    vols: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for (tier, level, key, kind, hour), f in water.items():
        if (tier, level, kind) == ("hourly", "district", "water"):
            vols[key].append((hour.astimezone(TZ).hour, f["consumption"]))
    assert [n.district for n in night] == sorted(vols)
    for n in night:
        v = vols[n.district]
        nights = [x for h, x in v if 2 <= h < 5]
        assert math.isclose(n.night_m3_per_h, sum(nights) / len(nights), rel_tol=1e-9)
        assert math.isclose(n.mean_m3_per_h, sum(x for _, x in v) / len(v), rel_tol=1e-9)

    # Reporting rate: meters reporting per day ÷ meters seen, averaged over the days.
    n_days = (DAYS[1] - DAYS[0]).days + 1
    for kind in ("electricity", "water"):
        seen = {k[2] for k in water if k[:2] == ("daily", "meter") and k[3] == kind}
        per_day = [
            f["meters_reporting"]
            for k, f in water.items()
            if k[:2] == ("daily", "city") and k[3] == kind
        ]
        assert math.isclose(rate[kind], 100 * sum(per_day) / n_days / len(seen), rel_tol=1e-9)
