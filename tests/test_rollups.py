"""Rollups against numpy: every figure of every level and tier equals the same figure computed
in Python from the raw rows (gaps, register resets, faults, late and duplicate readings, local
days across the UTC day boundary); late readings reach their buckets after `maintain`."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest

from smartcity.rollups.maintain import run_once
from smartcity.settings import Settings
from tests.rollup_reference import (
    CITY,
    START,
    lamp_data,
    lighting_reference,
    meter_data,
    metering_reference,
    write_lamps,
    write_meters,
)

_LIGHTING_FIGURES = (
    "readings",
    "lamps_reporting",
    "lamps_on",
    "lamps_faulty",
    "lamp_hours_reporting",
    "lamp_hours_faulty",
    "energy_wh",
    "full_power_energy_wh",
    "burn_h",
    "dim_pct_sum",
    "on_readings",
)


def _settings(database_url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        rollup_safety_lag_s=0,
        rollup_lookback_h=168,
        retention_raw_days=0,
        retention_hourly_days=0,
    )


def _now() -> datetime:
    # Retention is off here; partitions ahead are made for this day.
    return datetime(2026, 3, 12, tzinfo=UTC)


def _lighting_rows(conninfo: str) -> dict[tuple[Any, ...], dict[str, float]]:
    out: dict[tuple[Any, ...], dict[str, float]] = {}
    with psycopg.connect(conninfo) as conn:
        for tier, table, col in (
            ("hourly", "lighting_hourly", "bucket"),
            ("daily", "lighting_daily", "day"),
        ):
            cur = conn.execute(
                f"SELECT level, key, {col}, {', '.join(_LIGHTING_FIGURES)} FROM {table}"  # noqa: S608
            )
            for level, key, t, *figs in cur:
                out[(tier, str(level), str(key), t)] = {
                    k: float(v) for k, v in zip(_LIGHTING_FIGURES, figs, strict=True)
                }
    return out


def _assert_same(
    got: dict[tuple[Any, ...], dict[str, float]], want: dict[tuple[Any, ...], dict[str, float]]
) -> None:
    assert set(got) == set(want), (
        f"missing {sorted(map(str, set(want) - set(got)))[:5]}, "
        f"extra {sorted(map(str, set(got) - set(want)))[:5]}"
    )
    for key, figures in want.items():
        for name, value in figures.items():
            assert math.isclose(got[key][name], value, rel_tol=1e-9, abs_tol=1e-6), (
                f"{key} {name}: rollup {got[key][name]!r}, numpy {value!r}"
            )


def test_lighting_rollups_equal_numpy_and_late_readings_update_their_buckets(
    database_url: str,
) -> None:
    settings = _settings(database_url)
    data = lamp_data()
    write_lamps(database_url, data.early)
    run_once(settings, now=_now())
    before = _lighting_rows(database_url)
    _assert_same(before, lighting_reference(data.early))

    # The readings held back arrive hours late; one maintain pass brings every tier up to date.
    write_lamps(database_url, data.late)
    report = run_once(settings, now=_now())
    assert 0 < report.hours_refreshed["lighting_readings"] <= 3
    after = _lighting_rows(database_url)
    _assert_same(after, lighting_reference(data.rows))

    late_lamp = str(data.late[0][1])
    late_hour = data.late[0][0].replace(minute=0)
    late_day = late_hour.astimezone(CITY.tz).date()
    for key in (
        ("hourly", "lamp", late_lamp, late_hour),
        ("daily", "lamp", late_lamp, late_day),
        ("daily", "city", CITY.slug, late_day),
    ):
        assert after[key]["readings"] > before[key]["readings"], key

    # The data covers two local days and three UTC days; daily rows are local days.
    days = sorted({k[3] for k in after if k[0] == "daily"})
    assert days == [date(2026, 3, 10), date(2026, 3, 11), date(2026, 3, 12)]
    assert START.astimezone(CITY.tz).date() == date(2026, 3, 10)


def test_metering_rollups_equal_numpy(database_url: str) -> None:
    settings = _settings(database_url)
    data = meter_data()
    write_meters(database_url, data.rows)
    run_once(settings, now=_now())
    got: dict[tuple[Any, ...], dict[str, float]] = {}
    with psycopg.connect(database_url) as conn:
        for tier, table, col in (
            ("hourly", "meter_hourly", "bucket"),
            ("daily", "meter_daily", "day"),
        ):
            cur = conn.execute(
                f"SELECT level, key, kind, {col}, readings, meters_reporting, "  # noqa: S608
                f"energy_kwh, volume_m3, peak_power_w, peak_flow_lph FROM {table}"
            )
            for level, key, kind, t, readings, reporting, kwh, m3, pw, fl in cur:
                electric = kind == "electricity"
                assert (m3 if electric else kwh) == 0
                got[(tier, str(level), str(key), str(kind), t)] = {
                    "readings": float(readings),
                    "meters_reporting": float(reporting),
                    "consumption": float(kwh if electric else m3),
                    "peak": float(pw if electric else fl),
                }
    want = metering_reference(data.rows)
    _assert_same(got, want)
    # Electricity and water both present, at every level.
    assert {k[3] for k in got if k[1] == "city"} == {"electricity", "water"}


@pytest.mark.parametrize("pieces", [1, 5])
def test_refreshing_in_pieces_gives_the_same_numbers(database_url: str, pieces: int) -> None:
    """Whatever the watermark cuts, the buckets come out the same (deltas look back across)."""
    settings = _settings(database_url)
    data = lamp_data(count=6, seed=11)
    rows = sorted(data.rows, key=lambda r: str(r[1]))  # arrive lamp by lamp, out of time order
    size = math.ceil(len(rows) / pieces)
    for i in range(pieces):
        write_lamps(database_url, rows[i * size : (i + 1) * size])
        run_once(settings, now=_now())
    _assert_same(_lighting_rows(database_url), lighting_reference(data.rows))
