"""The TimescaleDB storage mode on a real TimescaleDB: PGlite built with the extension
(tests/support/pglite.py), against plain PostgreSQL on the same data.

Runs in `make test` wherever node and npm are present: it downloads the pinned packages once
(~25 MB) and takes a minute or two. Skipped, with the reason, when SMARTCITY_TEST_TIMESCALEDB=0
or the packages cannot be had. What it verifies and what it cannot is in docs/storage.md.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from dashboards.check import check_queries, load
from ingest.rows import LIGHTING, METERS
from smartcity.db import storage
from smartcity.db.migrate import migrate
from smartcity.queries.energy import LightingTotals, lighting_totals
from smartcity.queries.tiers import Segment, Tier
from smartcity.rollups.maintain import run_once
from smartcity.settings import Settings, StorageModeSetting
from tests.rollup_reference import (
    CITY,
    METER_COLUMNS,
    START,
    Row,
    energy_in_range,
    lamp_data,
    lighting_reference,
    meter_data,
)
from tests.support.pglite import PgliteTimescale, node_packages
from tests.test_rollups import _assert_same

OPT_IN = "SMARTCITY_TEST_TIMESCALEDB"
pytestmark = pytest.mark.slow

# Rollups are folded with `now` here (retention off unless a test sets it); the data is
# 2026-03-10 18:00 to 2026-03-12 06:00 UTC.
NOW = datetime(2026, 3, 12, 12, tzinfo=UTC)
ROLLUPS = {
    "lighting_hourly": ("level", "city", "key", "bucket"),
    "lighting_daily": ("level", "city", "key", "day"),
    "meter_hourly": ("level", "city", "key", "kind", "bucket"),
    "meter_daily": ("level", "city", "key", "kind", "day"),
}


@pytest.fixture(scope="module")
def packages() -> Path:
    if os.environ.get(OPT_IN, "1") == "0":
        pytest.skip(f"{OPT_IN}=0: the TimescaleDB mode in PGlite was not asked for")
    directory, why = node_packages()
    if directory is None:
        pytest.skip(f"no TimescaleDB in PGlite: {why}")
    return directory


@pytest.fixture
def tsdb(packages: Path) -> Iterator[PgliteTimescale]:
    with PgliteTimescale(packages) as server:
        yield server


def _settings(url: str, mode: StorageModeSetting, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "rollup_safety_lag_s": 0,
        "rollup_lookback_h": 168,
        "retention_raw_days": 0,
        "retention_hourly_days": 0,
        "retention_daily_days": 0,
        **overrides,
    }
    return Settings(_env_file=None, database_url=url, storage_mode=mode, **values)  # type: ignore[call-arg]


def _migrate_timescaledb(url: str) -> None:
    settings = _settings(url, StorageModeSetting.TIMESCALEDB)
    assert migrate(settings).storage_mode is storage.StorageMode.TIMESCALEDB


def _insert(
    url: str, table: str, columns: Sequence[str], types: Sequence[str], rows: list[Row]
) -> None:
    """INSERT … SELECT FROM unnest(arrays): one statement per call, the same in both modes
    (COPY, which the ingest uses, does not work over the PGlite socket)."""
    with psycopg.connect(url, autocommit=True) as conn:
        mode = storage.read_mode(conn)
        storage.ensure_partitions(conn, mode, table, {storage.day_of(r[0]) for r in rows})
        conn.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT * FROM unnest({}) ON CONFLICT DO NOTHING").format(
                sql.Identifier(table),
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join(sql.SQL("%s::{}[]").format(sql.SQL(t)) for t in types),
            ),
            [list(column) for column in zip(*rows, strict=True)],
        )


def _insert_lamps(url: str, rows: list[Row]) -> None:
    _insert(url, LIGHTING.table, LIGHTING.names, LIGHTING.types, rows)


def _insert_meters(url: str, rows: list[Row]) -> None:
    types = dict(METERS.columns)
    _insert(url, METERS.table, METER_COLUMNS, [types[c] for c in METER_COLUMNS], rows)


def _rollups(url: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Every row of every rollup table, by (table, primary key)."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    with psycopg.connect(url) as conn:
        for table, key in ROLLUPS.items():
            cur = conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
            names = [d.name for d in cur.description or ()]
            for values in cur:
                row = dict(zip(names, values, strict=True))
                out[(table, *(row.pop(k) for k in key))] = row
    return out


def _assert_same_rollups(
    got: dict[tuple[Any, ...], dict[str, Any]], want: dict[tuple[Any, ...], dict[str, Any]]
) -> None:
    assert set(got) == set(want), (
        f"only in TimescaleDB {sorted(map(str, set(got) - set(want)))[:5]}, "
        f"only in plain {sorted(map(str, set(want) - set(got)))[:5]}"
    )
    for key, row in want.items():
        for name, value in row.items():
            other = got[key][name]
            if isinstance(value, float) and isinstance(other, float):
                assert math.isclose(other, value, rel_tol=1e-9, abs_tol=1e-6), (key, name)
            else:
                assert other == value, (key, name, other, value)


def _lighting_figures(url: str) -> dict[tuple[Any, ...], dict[str, float]]:
    """The lighting rollups keyed as tests.rollup_reference keys its numpy figures."""
    out: dict[tuple[Any, ...], dict[str, float]] = {}
    for full_key, row in _rollups(url).items():
        table = full_key[0]
        if not table.startswith("lighting_"):
            continue
        _, level, _city, key, t = full_key
        tier = "hourly" if table == "lighting_hourly" else "daily"
        out[(tier, level, key, t)] = {
            k: float(v) for k, v in row.items() if k not in ("district", "cabinet_id")
        }
    return out


async def _totals(
    url: str, start: datetime, end: datetime
) -> tuple[list[LightingTotals], list[Segment]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        return await lighting_totals(conn, CITY.slug, start, end, by_district=True)


def _jobs(url: str) -> dict[tuple[str, str], dict[str, Any]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT proc_name, hypertable_name, config FROM timescaledb_information.jobs "
            "WHERE hypertable_name IS NOT NULL"
        ).fetchall()
    return {(str(p), str(h)): dict(c) for p, h, c in rows if isinstance(c, dict)}


def _run_jobs(url: str, proc_name: str) -> list[str]:
    """Run the policies of one kind now, in the foreground (`CALL run_job`): the WASM build
    has no background workers, so nothing runs them on their schedule."""
    with psycopg.connect(url, autocommit=True) as conn:
        jobs = conn.execute(
            "SELECT job_id, hypertable_name FROM timescaledb_information.jobs "
            "WHERE proc_name = %s ORDER BY job_id",
            (proc_name,),
        ).fetchall()
        for job_id, _ in jobs:
            conn.execute("CALL run_job(%s)", (job_id,))
    return [str(h) for _, h in jobs]


def test_hypertables_policies_and_rollups_equal_plain_postgresql(
    tsdb: PgliteTimescale, database_url: str
) -> None:
    _migrate_timescaledb(tsdb.conninfo)
    plain = _settings(database_url, StorageModeSetting.POSTGRESQL)
    with psycopg.connect(tsdb.conninfo) as conn:
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
        assert row is not None
        assert str(row[0]).startswith("2."), row
        dims = {
            str(t): (str(c), v)
            for t, c, v in conn.execute(
                "SELECT hypertable_name, column_name, time_interval "
                "FROM timescaledb_information.dimensions"
            )
        }
    day, month = storage.PARTITION_INTERVAL, storage.ROLLUP_CHUNK_INTERVAL
    assert dims == {
        "lighting_readings": ("ts", day),
        "meter_readings": ("ts", day),
        "vehicle_positions": ("ts", day),
        "lighting_hourly": ("bucket", month),
        "meter_hourly": ("bucket", month),
        "lighting_daily": ("day", month),
        "meter_daily": ("day", month),
        "transit_hourly": ("bucket", month),
        "transit_eta_hourly": ("bucket", month),
        "transit_daily": ("day", month),
        "transit_eta_daily": ("day", month),
    }

    lamps, meters = lamp_data(), meter_data()
    for url in (tsdb.conninfo, database_url):
        _insert_lamps(url, lamps.early)
        _insert_meters(url, meters.rows)
    with_policies = {
        "compress_after_days": 7,
        "retention_raw_days": 90,
        "retention_hourly_days": 730,
    }
    run_once(_settings(tsdb.conninfo, StorageModeSetting.TIMESCALEDB, **with_policies), now=NOW)
    run_once(plain, now=NOW)
    # Late readings, folded by a second pass that installs the policies again (a restart).
    for url in (tsdb.conninfo, database_url):
        _insert_lamps(url, lamps.late)
    report = run_once(
        _settings(tsdb.conninfo, StorageModeSetting.TIMESCALEDB, **with_policies), now=NOW
    )
    assert report.hours_refreshed["lighting_readings"] > 0
    run_once(plain, now=NOW)

    # The policies the settings ask for, on the tables they name.
    jobs = _jobs(tsdb.conninfo)
    want_jobs = {
        ("policy_compression", t): {"compress_after": "7 days"} for t in storage.RAW_TABLES
    }
    want_jobs |= {("policy_retention", t): {"drop_after": "90 days"} for t in storage.RAW_TABLES}
    want_jobs |= {
        ("policy_retention", t): {"drop_after": "730 days"}
        for t in (*storage.HOURLY_ROLLUPS, *storage.TRANSIT_HOURLY_ROLLUPS)
    }
    assert set(jobs) == set(want_jobs)
    for job, config in want_jobs.items():
        assert config.items() <= jobs[job].items(), (job, jobs[job])
    with psycopg.connect(tsdb.conninfo) as conn:
        segments = {
            (str(t), str(a))
            for t, a in conn.execute(
                "SELECT hypertable_name, attname FROM timescaledb_information.compression_settings "
                "WHERE segmentby_column_index IS NOT NULL"
            )
        }
    assert segments == set(storage.RAW_TABLES.items())

    # Every rollup row of both modes is the same, and lighting equals numpy.
    got = _rollups(tsdb.conninfo)
    assert got, "no rollups in TimescaleDB mode"
    _assert_same_rollups(got, _rollups(database_url))
    _assert_same(_lighting_figures(tsdb.conninfo), lighting_reference(lamps.rows))

    # The query layer over a range that needs all three tiers gives one answer in both modes.
    start, end = START + timedelta(minutes=25), START + timedelta(hours=35, minutes=35)
    ts_totals, ts_segments = asyncio.run(_totals(tsdb.conninfo, start, end))
    plain_totals, plain_segments = asyncio.run(_totals(database_url, start, end))
    assert {s.tier for s in ts_segments} == {Tier.RAW, Tier.HOURLY, Tier.DAILY}
    assert ts_segments == plain_segments
    assert [t.key for t in ts_totals] == [t.key for t in plain_totals]
    reference = energy_in_range(lamps.rows, start, end)
    for ts_row, plain_row in zip(ts_totals, plain_totals, strict=True):
        assert math.isclose(ts_row.energy_wh, plain_row.energy_wh, rel_tol=1e-9), ts_row.key
        assert math.isclose(ts_row.energy_wh, reference[ts_row.key], rel_tol=1e-9), ts_row.key
        assert ts_row.lamp_hours_reporting == plain_row.lamp_hours_reporting
        assert math.isclose(ts_row.burn_h, plain_row.burn_h, rel_tol=1e-9), ts_row.key

    # After the columnstore policy has compressed every raw chunk, the query layer still
    # agrees, and the dashboards' SQL in its TimescaleDB form (time_bucket) fails nowhere that
    # plain mode's does not (missing data, e.g. no transit feed, fails in both).
    assert sorted(_run_jobs(tsdb.conninfo, "policy_compression")) == sorted(storage.RAW_TABLES)
    compressed, _ = asyncio.run(_totals(tsdb.conninfo, start, end))
    assert [(t.key, t.lamp_hours_reporting) for t in compressed] == [
        (t.key, t.lamp_hours_reporting) for t in plain_totals
    ]
    for ts_row, plain_row in zip(compressed, plain_totals, strict=True):
        assert math.isclose(ts_row.energy_wh, plain_row.energy_wh, rel_tol=1e-9), ts_row.key
    failed: dict[str, set[str]] = {}
    for url in (tsdb.conninfo, database_url):
        with psycopg.connect(url, autocommit=True) as conn:
            for table, device, domain in (
                ("lighting_readings", "lamp_id", "lighting"),
                ("meter_readings", "meter_id", "metering"),
            ):
                conn.execute(
                    sql.SQL(
                        "INSERT INTO devices (domain, device_id, city, district, first_seen, "
                        "last_seen) SELECT DISTINCT ON ({d}) {domain}, {d}, city, district, ts, ts "
                        "FROM {t} ORDER BY {d}, ts DESC"
                    ).format(d=sql.Identifier(device), domain=domain, t=sql.Identifier(table))
                )
        failed[url] = {
            str(p) for p in check_queries(url, load(), now=NOW) if "query failed" in p.message
        }
    assert failed[tsdb.conninfo] == failed[database_url]


def test_columnstore_policy_compresses_and_late_readings_still_reach_their_buckets(
    tsdb: PgliteTimescale,
) -> None:
    _migrate_timescaledb(tsdb.conninfo)
    lamps = lamp_data(count=6, seed=11)
    _insert_lamps(tsdb.conninfo, lamps.early)
    policies = _settings(tsdb.conninfo, StorageModeSetting.TIMESCALEDB, compress_after_days=7)
    run_once(policies, now=NOW)

    # The data is months old: the columnstore policy, run now, compresses every chunk.
    assert sorted(_run_jobs(tsdb.conninfo, "policy_compression")) == sorted(storage.RAW_TABLES)
    with psycopg.connect(tsdb.conninfo) as conn:
        chunks = conn.execute(
            "SELECT chunk_name, is_compressed FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'lighting_readings'"
        ).fetchall()
    assert chunks
    assert all(compressed for _, compressed in chunks), chunks

    # Late readings (and replayed duplicates) land in compressed chunks; a pass that also
    # reinstalls the policies on the now compressed tables folds them in.
    _insert_lamps(tsdb.conninfo, lamps.late + lamps.early[:40])
    report = run_once(policies, now=NOW)
    assert report.hours_refreshed["lighting_readings"] > 0
    _assert_same(_lighting_figures(tsdb.conninfo), lighting_reference(lamps.rows))


def test_retention_policies_remove_what_plain_mode_removes(
    tsdb: PgliteTimescale, database_url: str
) -> None:
    _migrate_timescaledb(tsdb.conninfo)
    lamps = lamp_data(count=6, seed=5)
    for url in (tsdb.conninfo, database_url):
        _insert_lamps(url, lamps.rows)
    # A retention policy measures age from the server's clock, so the ages are chosen from
    # today's date to put every tier's cutoff at 2026-03-11 00:00 UTC, inside the data.
    now = datetime.now(UTC)
    cutoff = datetime(2026, 3, 11, tzinfo=UTC)
    days = (now.date() - cutoff.date()).days
    ages = {"retention_raw_days": days, "retention_hourly_days": days, "retention_daily_days": days}
    report = run_once(_settings(tsdb.conninfo, StorageModeSetting.TIMESCALEDB, **ages), now=now)
    assert report.removed["lighting_hourly"] > 0
    run_once(_settings(database_url, StorageModeSetting.POSTGRESQL, **ages), now=now)
    assert sorted(_run_jobs(tsdb.conninfo, "policy_retention")) == sorted(
        [
            *storage.RAW_TABLES,
            *storage.HOURLY_ROLLUPS,
            *storage.DAILY_ROLLUPS,
            *storage.TRANSIT_HOURLY_ROLLUPS,
            *storage.TRANSIT_DAILY_ROLLUPS,
        ]
    )

    kept = sorted((r[0], r[1]) for r in lamps.rows if r[0] >= cutoff)
    for url in (tsdb.conninfo, database_url):
        with psycopg.connect(url) as conn:
            raw = sorted(conn.execute("SELECT ts, lamp_id FROM lighting_readings").fetchall())
            assert raw == kept, url
            first = conn.execute(
                "SELECT (SELECT min(bucket) FROM lighting_hourly), "
                "(SELECT min(day) FROM lighting_daily)"
            ).fetchone()
            assert first == (cutoff, date(2026, 3, 11)), (url, first)
    _assert_same_rollups(_rollups(tsdb.conninfo), _rollups(database_url))
