"""The energy panels that read the rollups show the KPIs of docs/kpis.md: each panel's SQL,
expanded as Grafana would, gives what `smartcity.queries` computes for the same local days."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from dashboards.check import load
from dashboards.macros import TimeRange, expand, quote
from smartcity.cities import get_city
from smartcity.queries import kpis
from smartcity.queries.energy import lighting_totals
from tests.dashboard_data import Fleet, fill

CITY = get_city("astana")


def _panels(name: str) -> tuple[dict[str, str], dict[str, Any]]:
    data = load()[name]
    return {p["title"]: p["targets"][0]["rawSql"] for p in data["panels"] if "targets" in p}, data


def _rows(
    conn: psycopg.Connection[tuple[Any, ...]], sql: str, rng: TimeRange, district_sql: str
) -> list[tuple[Any, ...]]:
    variables = {"city": CITY.slug}
    districts = conn.execute(expand(district_sql, rng, variables, timescaledb=False)).fetchall()
    variables["district"] = ",".join(quote(str(d)) for (d,) in districts)
    return conn.execute(expand(sql, rng, variables, timescaledb=False)).fetchall()


@pytest.mark.slow
async def test_rollup_panels_equal_the_kpis_for_the_same_local_days(database_url: str) -> None:
    now = datetime.now(UTC)
    fill(database_url, now, Fleet())
    rng = TimeRange(now - timedelta(days=7), now)
    first = rng.start.astimezone(CITY.tz).date()
    last = rng.end.astimezone(CITY.tz).date()
    day_start = datetime.combine(first, datetime.min.time(), CITY.tz)
    day_end = datetime.combine(last + timedelta(days=1), datetime.min.time(), CITY.tz)

    light, light_data = _panels("energy-lighting.json")
    meter, meter_data = _panels("energy-metering.json")
    with psycopg.connect(database_url) as conn:

        def lighting(title: str) -> list[tuple[Any, ...]]:
            return _rows(conn, light[title], rng, light_data["templating"]["list"][1]["query"])

        def metering(title: str) -> list[tuple[Any, ...]]:
            return _rows(conn, meter[title], rng, meter_data["templating"]["list"][1]["query"])

        per_lamp = lighting("Energy per lamp per night")[0][0]
        saved_kwh = lighting("Saved by dimming")[0][0]
        saved_pct = lighting("Saved by dimming, %")[0][0]
        burn_h = lighting("Burn hours")[0][0]
        table = {r[0]: r for r in lighting("Per district")}
        by_district = dict(lighting("Energy by district"))
        per_night = lighting("Energy per night by district")
        night_flow = {r[0]: r[1:] for r in metering("Night flow (leak indicator)")}
        rate = dict(metering("Meter reporting rate"))
        electricity = dict(metering("Electricity by district"))
        water = dict(metering("Water by district"))
        hourly_kwh = metering("Electricity by district and hour")
        peak = dict(metering("Peak demand by district"))
        city_peak = metering("City peak demand")[0][0]
        raw_kwh = conn.execute(
            "SELECT sum(d) FROM (SELECT energy_import_kwh - lag(energy_import_kwh) OVER "
            "(PARTITION BY meter_id ORDER BY ts) AS d FROM meter_readings "
            "WHERE energy_import_kwh IS NOT NULL) x"
        ).fetchone()

    async with await psycopg.AsyncConnection.connect(database_url) as aconn:
        want_per_lamp = await kpis.energy_per_lamp_night_kwh(aconn, CITY.slug, first, last)
        totals, _ = await lighting_totals(aconn, CITY.slug, day_start, day_end, by_district=True)
        want_night = await kpis.water_night_flow(aconn, CITY.slug, first, last)
        want_rate = await kpis.meter_reporting_rate(aconn, CITY.slug, first, last)

    # Lighting: the history holds a night, so there is energy, burn time and a saving.
    assert want_per_lamp is not None
    assert want_per_lamp > 0
    assert math.isclose(per_lamp, want_per_lamp, rel_tol=1e-9)
    full = sum(t.full_power_energy_wh for t in totals)
    energy = sum(t.energy_wh for t in totals)
    assert full > energy > 0
    assert math.isclose(saved_kwh, (full - energy) / 1000, rel_tol=1e-9)
    assert math.isclose(saved_pct, 100 * (full - energy) / full, rel_tol=1e-9)
    assert math.isclose(burn_h, sum(t.burn_h for t in totals), rel_tol=1e-9)
    assert burn_h > 0
    assert sorted(table) == sorted(t.key for t in totals) == sorted(by_district)
    for t in totals:
        row = table[t.key]
        assert math.isclose(row[1], t.energy_wh / 1000, rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(row[2], t.full_power_energy_wh / 1000, rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(row[6], t.burn_h, rel_tol=1e-9, abs_tol=1e-9)
        assert t.availability_pct is not None
        assert math.isclose(row[8], t.availability_pct, rel_tol=1e-9)
        assert math.isclose(by_district[t.key], t.energy_wh / 1000, rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(sum(v for _, _, v in per_night), energy / 1000, rel_tol=1e-9)

    # Metering: the KPIs per district / kind, and consumption equal to the raw register deltas.
    assert {n.district: (n.night_m3_per_h, n.mean_m3_per_h) for n in want_night} == {
        k: pytest.approx(v[:2], rel=1e-9) for k, v in night_flow.items()
    }
    for n in want_night:
        assert night_flow[n.district][2] == pytest.approx(n.ratio, rel=1e-9)
    assert sorted(rate) == ["electricity", "water"]
    assert rate == pytest.approx(want_rate, rel=1e-9)
    assert raw_kwh is not None
    assert raw_kwh[0] > 0
    assert sum(electricity.values()) == pytest.approx(raw_kwh[0], rel=1e-9)
    assert sum(v for _, _, v in hourly_kwh) == pytest.approx(raw_kwh[0], rel=1e-9)
    assert sum(water.values()) > 0
    # Demand: a district's peak hour is at most the city's (kW = kWh in one hour).
    assert 0 < max(peak.values()) <= city_peak
    assert city_peak == pytest.approx(max(v for _, _, v in hourly_kwh_city(hourly_kwh)))


def hourly_kwh_city(rows: list[tuple[Any, ...]]) -> list[tuple[Any, str, float]]:
    """The city's kWh per hour from the district rows (their sum, one row per hour)."""
    per_hour: dict[Any, float] = {}
    for ts, _, value in rows:
        per_hour[ts] = per_hour.get(ts, 0.0) + value
    return [(ts, "city", v) for ts, v in per_hour.items()]
