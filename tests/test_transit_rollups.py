"""Transit rollups against numpy: every figure of every hourly and daily row equals the same
figure computed in Python from the raw stop arrivals (repeated visits, missing departures,
skipped stops, local days across the UTC day boundary); late arrivals and their samples reach
their buckets after `maintain`."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from smartcity.queries import kpis
from smartcity.rollups.maintain import run_once
from smartcity.settings import Settings
from smartcity.transit.eta_accuracy import BUCKETS
from smartcity.transit.eta_accuracy import overall as score_of
from tests.transit_reference import (
    CITY,
    ETA_FIGURES,
    STOP_FIGURES,
    eta_reference,
    import_network,
    read_arrivals,
    read_gtfs,
    read_samples,
    stop_reference,
    transit_data,
    write,
)

Rows = dict[tuple[Any, ...], dict[str, float]]


def _settings(database_url: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "rollup_safety_lag_s": 0,
        "retention_raw_days": 0,
        "retention_hourly_days": 0,
    }
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        **(values | changes),
    )


def _now() -> datetime:
    return datetime(2026, 3, 12, tzinfo=UTC)


def _rollups(conninfo: str) -> Rows:
    out: Rows = {}
    keys = "city, feed_id, route_id, stop_id, from_stop_id"
    with psycopg.connect(conninfo) as conn:
        for tier, table, col, extra in (
            ("hourly", "transit_hourly", "bucket", ", hour_of_week"),
            ("daily", "transit_daily", "day", ""),
        ):
            names = (*STOP_FIGURES, "dist_m", *extra.strip(", ").split())
            cur = conn.execute(
                f"SELECT {keys}, {col}, {', '.join(names)} FROM {table}"  # noqa: S608
            )
            for row in cur:
                out[(tier, *row[:6])] = {
                    k: float("nan") if v is None else float(v)
                    for k, v in zip(names, row[6:], strict=True)
                }
        for tier, table, col in (
            ("eta_hourly", "transit_eta_hourly", "bucket"),
            ("eta_daily", "transit_eta_daily", "day"),
        ):
            cur = conn.execute(
                f"SELECT city, feed_id, route_id, horizon, {col}, {', '.join(ETA_FIGURES)} "  # noqa: S608
                f"FROM {table}"
            )
            for row in cur:
                out[(tier, *row[:5])] = {
                    k: float(v) for k, v in zip(ETA_FIGURES, row[5:], strict=True)
                }
    return out


def _reference(conninfo: str, settings: Settings) -> Rows:
    arrivals = read_arrivals(conninfo)
    want = stop_reference(
        arrivals,
        read_gtfs(conninfo),
        lookback_s=settings.transit_rollup_lookback_s,
        early_s=settings.transit_on_time_early_s,
        late_s=settings.transit_on_time_late_s,
    )
    return want | eta_reference(arrivals, read_samples(conninfo))


def _assert_same(got: Rows, want: Rows) -> None:
    assert set(got) == set(want), (
        f"missing {sorted(map(str, set(want) - set(got)))[:5]}, "
        f"extra {sorted(map(str, set(got) - set(want)))[:5]}"
    )
    for key, figures in want.items():
        for name, value in figures.items():
            if math.isnan(value):
                assert math.isnan(got[key][name]), (key, name, got[key][name])
                continue
            assert math.isclose(got[key][name], value, rel_tol=1e-9, abs_tol=1e-6), (
                f"{key} {name}: rollup {got[key][name]!r}, numpy {value!r}"
            )


def test_transit_rollups_equal_numpy_and_late_arrivals_update_their_buckets(
    database_url: str, tmp_path: Path
) -> None:
    settings = _settings(database_url)
    net = import_network(database_url, tmp_path)
    data = transit_data(net)
    assert len(data.late) > 10
    assert len(data.early_samples) > 100
    write(database_url, data.early, data.early_samples)
    run_once(settings, now=_now())
    before = _rollups(database_url)
    _assert_same(before, _reference(database_url, settings))

    # Every kind of figure occurs (the comparison above is not over zeros).
    totals = {
        name: sum(f[name] for k, f in before.items() if k[0] == "daily")
        for name in (
            "early",
            "on_time",
            "late",
            "headways_regular",
            "headways_bunched",
            "headways_gap",
            "dwells",
            "runs",
        )
    }
    assert all(v > 0 for v in totals.values()), totals
    assert sum(f["accurate"] for k, f in before.items() if k[0] == "eta_daily") > 0

    # The visits held back arrive late; one maintain pass brings both tiers up to date.
    write(database_url, data.late, data.late_samples)
    report = run_once(settings, now=_now())
    assert report.hours_refreshed["stop_arrivals"] > 0
    after = _rollups(database_url)
    _assert_same(after, _reference(database_url, settings))

    late = data.late[0]
    hour = late[8].astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    day = hour.astimezone(CITY.tz).date()
    for tier, t in (("hourly", hour), ("daily", day)):
        got = sum(f["arrivals"] for k, f in after.items() if k[0] == tier and k[-1] == t)
        had = sum(f["arrivals"] for k, f in before.items() if k[0] == tier and k[-1] == t)
        assert got > had, (tier, t)

    # Two local days, across the UTC day boundary (local midnight is 19:00 UTC).
    days = sorted({k[-1] for k in after if k[0] == "daily"})
    assert days == [date(2026, 3, 10), date(2026, 3, 11)]
    hours = sorted({k[-1] for k in after if k[0] == "hourly"})
    assert hours[0].date() == date(2026, 3, 10)
    assert hours[-1].date() == date(2026, 3, 10)


def test_the_on_time_window_comes_from_the_settings(database_url: str, tmp_path: Path) -> None:
    settings = _settings(database_url, transit_on_time_early_s=0, transit_on_time_late_s=60)
    data = transit_data(import_network(database_url, tmp_path))
    write(database_url, data.early, [])
    run_once(settings, now=_now())
    got = _rollups(database_url)
    _assert_same(got, _reference(database_url, settings))
    default = _reference(database_url, _settings(database_url))
    assert sum(f["on_time"] for k, f in got.items() if k[0] == "daily") < sum(
        f["on_time"] for k, f in default.items() if k[0] == "daily"
    )


async def test_transit_kpis_follow_their_documented_formulas(
    database_url: str, tmp_path: Path
) -> None:
    settings = _settings(database_url)
    data = transit_data(import_network(database_url, tmp_path))
    write(database_url, data.early + data.late, data.early_samples + data.late_samples)
    run_once(settings, now=_now())
    ref = _reference(database_url, settings)
    days = (date(2026, 3, 10), date(2026, 3, 11))
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        got = await kpis.transit_kpis(conn, CITY.slug, *days)
        first_only = await kpis.transit_kpis(conn, CITY.slug, days[0], days[0])

    daily = [f for k, f in ref.items() if k[0] == "daily"]
    n = sum(f["arrivals"] for f in daily)
    assert got.arrivals == n
    assert got.on_time_pct is not None
    assert math.isclose(got.on_time_pct, 100 * sum(f["on_time"] for f in daily) / n)
    assert first_only.arrivals < n  # the second local day holds the trips after midnight

    # Headways straight from the raw arrivals' numpy figures: (observed − scheduled) per pair.
    hw = sum(f["headways"] for f in daily)
    assert got.headways == hw
    assert got.headway_adherence_pct is not None
    assert math.isclose(
        got.headway_adherence_pct, 100 * sum(f["headways_regular"] for f in daily) / hw
    )
    dev = sum(f["headway_dev_sum_s"] for f in daily) / hw
    dev_sq = sum(f["headway_dev_sq_sum_s"] for f in daily) / hw
    sched = sum(f["headway_sched_sum_s"] for f in daily) / hw
    assert got.cv_h is not None
    assert math.isclose(got.cv_h, math.sqrt(dev_sq - dev**2) / sched, rel_tol=1e-9)

    # ETA accuracy per bucket, and the score as `smartcity bench eta` computes it.
    eta = [(k[4], f) for k, f in ref.items() if k[0] == "eta_daily"]
    want = {
        label: sum(f["accurate"] for b, f in eta if b == label)
        / sum(f["samples"] for b, f in eta if b == label)
        for label, *_ in BUCKETS
    }
    assert got.eta_accuracy == pytest.approx(want)
    assert got.eta_samples == sum(f["samples"] for _, f in eta)
    assert got.eta_score is not None
    assert got.eta_score == pytest.approx(score_of(want))
    assert 0 < got.eta_score < 1


def test_retention_removes_exactly_the_expired_transit_rows(
    database_url: str, tmp_path: Path
) -> None:
    data = transit_data(import_network(database_url, tmp_path))
    write(database_url, data.early, data.early_samples)
    run_once(_settings(database_url), now=_now())
    before = _rollups(database_url)
    # Cutoff: the start of the UTC day before `now`, 2026-03-11 00:00 UTC, for every tier.
    expiring = _settings(
        database_url, retention_raw_days=1, retention_hourly_days=1, retention_daily_days=1
    )
    report = run_once(expiring, now=datetime(2026, 3, 12, 5, tzinfo=UTC))
    after = _rollups(database_url)
    daily = ("daily", "eta_daily")
    kept = {k: f for k, f in before.items() if k[0] in daily and k[-1] >= date(2026, 3, 11)}
    assert kept
    _assert_same(after, kept)
    assert report.removed["transit_hourly"] == sum(1 for k in before if k[0] == "hourly")
    assert report.removed["transit_eta_samples"] == len(data.early_samples)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM transit_eta_samples").fetchone() == (0,)
        arrivals = conn.execute("SELECT count(*) FROM stop_arrivals").fetchone()
    assert arrivals is not None
    assert arrivals[0] == len({v[:4] for v in data.early})
