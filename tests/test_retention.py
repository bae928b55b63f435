"""Partition maintenance and retention with short ages remove exactly the expired data."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg

from smartcity.db import storage
from smartcity.rollups.maintain import run_once
from smartcity.settings import Settings
from tests.rollup_reference import CITY, Row, write_lamps

NOW = datetime(2026, 5, 20, 9, 30, tzinfo=UTC)


def _rows(start: datetime = datetime(2026, 5, 14, tzinfo=UTC)) -> list[Row]:
    rows: list[Row] = []
    for h in range(6 * 24 + 9):  # 14 May 00:00 to 20 May 08:00, hourly, three lamps
        ts = start + timedelta(hours=h)
        for lamp in range(3):
            e = 1000.0 + 50 * h
            rows.append(
                (ts, f"ret-lamp-{lamp:06d}", CITY.slug, "esil", "cab-1", True, 100.0, 50.0,
                 230.0, 0.2, 0.95, e, e / 50, False)
            )  # fmt: skip
    return rows


def _settings(database_url: str, raw: int, hourly: int, daily: int) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=database_url,
        rollup_safety_lag_s=0,
        partitions_ahead_days=3,
        retention_raw_days=raw,
        retention_hourly_days=hourly,
        retention_daily_days=daily,
    )


def _snapshot(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, list[tuple[object, ...]]]:
    return {
        "raw": conn.execute("SELECT lamp_id, ts FROM lighting_readings ORDER BY 1, 2").fetchall(),
        "hourly": conn.execute(
            "SELECT level, key, bucket, energy_wh FROM lighting_hourly ORDER BY 1, 2, 3"
        ).fetchall(),
        "daily": conn.execute(
            "SELECT level, key, day, energy_wh FROM lighting_daily ORDER BY 1, 2, 3"
        ).fetchall(),
    }


def test_retention_drops_exactly_the_expired_partitions_and_rollup_rows(
    database_url: str,
) -> None:
    write_lamps(database_url, _rows())
    run_once(_settings(database_url, 0, 0, 0), now=NOW)  # rollups, nothing expires
    with psycopg.connect(database_url, autocommit=True) as conn:
        before = _snapshot(conn)
        assert storage.existing_partition_days(conn, "lighting_readings") >= {
            date(2026, 5, 14) + timedelta(days=i) for i in range(10)
        }

    run_once(_settings(database_url, 2, 3, 4), now=NOW)

    raw_cut = datetime(2026, 5, 18, tzinfo=UTC)  # start of the UTC day 2 days before NOW
    hourly_cut = datetime(2026, 5, 17, tzinfo=UTC)
    daily_cut = date(2026, 5, 16)
    with psycopg.connect(database_url, autocommit=True) as conn:
        after = _snapshot(conn)
        days = storage.existing_partition_days(conn, "lighting_readings")
        meter_days = storage.existing_partition_days(conn, "meter_readings")
    assert after["raw"] == [r for r in before["raw"] if r[1] >= raw_cut]  # type: ignore[operator]
    assert after["hourly"] == [r for r in before["hourly"] if r[2] >= hourly_cut]  # type: ignore[operator]
    assert after["daily"] == [r for r in before["daily"] if r[2] >= daily_cut]  # type: ignore[operator]
    assert len(after["raw"]) < len(before["raw"])
    assert len(after["hourly"]) < len(before["hourly"])
    assert len(after["daily"]) < len(before["daily"])
    # Kept: the partitions from the cutoff day on, and today plus three days ahead.
    assert min(days) == raw_cut.date()
    ahead = {date(2026, 5, 20) + timedelta(days=i) for i in range(4)}
    assert ahead <= days
    assert ahead <= meter_days


def test_maintain_once_from_the_command_line(database_url: str) -> None:
    import structlog
    from typer.testing import CliRunner

    from smartcity.cli import app

    write_lamps(database_url, _rows()[:30])
    env = {"SMARTCITY_DATABASE_URL": database_url, "SMARTCITY_ROLLUP_SAFETY_LAG_S": "0"}
    try:
        result = CliRunner().invoke(app, ["maintain", "--once"], env=env)
    finally:
        # The command configured logging onto CliRunner's stream, which is closed now.
        structlog.reset_defaults()
    assert result.exit_code == 0, result.output
    assert "rollups refreshed" in result.output
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM lighting_hourly WHERE level = 'lamp'").fetchone()
        state = conn.execute("SELECT source FROM rollup_state ORDER BY 1").fetchall()
    assert row is not None
    assert row[0] == 30  # ten hours × three lamps, one reading each
    assert state == [("lighting_readings",), ("meter_readings",), ("stop_arrivals",)]


def test_the_maintain_loop_keeps_folding_in_and_stops_when_told(database_url: str) -> None:
    import threading

    from smartcity.rollups.maintain import run
    from tests.helpers import wait_until

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=database_url, rollup_safety_lag_s=0, maintain_interval_s=0.2
    )
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(settings, stop), name="test-maintain")
    thread.start()
    try:
        # Recent readings: the loop applies the default retention to the real clock, which
        # would drop fixed dates once they are older than it (and race the folding).
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        rows = _rows(today - timedelta(days=2))
        write_lamps(database_url, rows[:3])

        def lamp_rows() -> int:
            with psycopg.connect(database_url) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM lighting_hourly WHERE level = 'lamp'"
                ).fetchone()
            return int(row[0]) if row else 0

        wait_until(lambda: lamp_rows() == 3, timeout_s=20, what="the first hour rolled up")
        write_lamps(database_url, rows[3:9])
        wait_until(lambda: lamp_rows() == 9, timeout_s=20, what="the next hours rolled up")
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive()
