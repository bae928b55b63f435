"""The one module that knows whether we run on TimescaleDB or on plain PostgreSQL.

Both modes give the same table names and the same query results, so everything else (ingest,
API, dashboards) has one code path. What differs lives here:

* **TimescaleDB** (extension available): raw time-series tables are hypertables with one-day
  chunks, created with the documented TimescaleDB 2.x API (`create_hypertable` with
  `by_range`). Chunks appear by themselves as data arrives.
* **Plain PostgreSQL** (≥ 15): raw tables are declaratively partitioned by range on `ts`, one
  partition per UTC day. Partitions are created on demand by `ensure_partitions`, which the
  writer calls before a batch that touches a day it has not seen; there is deliberately no
  DEFAULT partition, because a default partition holding rows blocks creating the partition
  those rows belong to.

Rollups (hourly and daily, see `smartcity.rollups`) are ordinary tables in plain mode and
hypertables with 30-day chunks in TimescaleDB mode; in both they are filled by the same SQL run
by `smartcity maintain`, because their register deltas need the previous reading of each
device (a window over time) which a continuous aggregate cannot express (docs/storage.md).
Tiering differs: plain mode creates partitions ahead and drops expired ones itself
(`ensure_partitions_ahead`, `drop_expired`); TimescaleDB mode installs the documented
columnstore and retention policies once (`apply_timescale_policies`) and lets its job
scheduler run them.

TimescaleDB is not installable on the development machines, so its branch is written against
the documented API and kept here, apart; tests/test_storage_timescaledb.py (opt-in) runs it on
TimescaleDB 2.23 built into PGlite (WASM), see docs/storage.md for what that does not cover.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

import psycopg
from psycopg import sql

from smartcity.errors import MigrationError
from smartcity.settings import StorageModeSetting

# One day per chunk/partition: at city scale (50k lamps each minute, ~72 M rows a day) a day
# fits comfortably in memory for its indexes, and retention drops whole days.
PARTITION_INTERVAL = timedelta(days=1)

# Rollup hypertables are small (one row per device-hour at most): a month per chunk keeps the
# chunk count low while retention still drops whole months.
ROLLUP_CHUNK_INTERVAL = timedelta(days=30)

# Raw tables, with the column that segments their columnstore (one device's readings together,
# so a device's time range decompresses alone).
RAW_TABLES: dict[str, str] = {
    "lighting_readings": "lamp_id",
    "meter_readings": "meter_id",
    "vehicle_positions": "vehicle_id",
}
HOURLY_ROLLUPS = ("lighting_hourly", "meter_hourly")
DAILY_ROLLUPS = ("lighting_daily", "meter_daily")

# Serialises partition DDL between writers (several ingest workers may meet a new day at once).
_PARTITION_LOCK_KEY = 0x5C17_0001


class StorageMode(StrEnum):
    TIMESCALEDB = "timescaledb"
    POSTGRESQL = "postgresql"


def timescaledb_available(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    return row is not None


def choose_mode(
    conn: psycopg.Connection[tuple[object, ...]], requested: StorageModeSetting
) -> StorageMode:
    """The mode a fresh database gets, from the setting and what the server offers."""
    available = timescaledb_available(conn)
    if requested is StorageModeSetting.TIMESCALEDB and not available:
        raise MigrationError(
            "SMARTCITY_STORAGE_MODE=timescaledb but this PostgreSQL server has no timescaledb "
            "extension; install TimescaleDB or set SMARTCITY_STORAGE_MODE=auto"
        )
    if requested is StorageModeSetting.POSTGRESQL or not available:
        return StorageMode.POSTGRESQL
    return StorageMode.TIMESCALEDB


def prepare(conn: psycopg.Connection[tuple[object, ...]], mode: StorageMode) -> None:
    """Make the server ready for `mode` (loads the extension in TimescaleDB mode)."""
    if mode is StorageMode.TIMESCALEDB:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")


def create_time_series_table(
    conn: psycopg.Connection[tuple[object, ...]],
    mode: StorageMode,
    table: str,
    columns: sql.Composable,
    *,
    time_column: str = "ts",
) -> None:
    """Create a raw time-series table; `columns` is the body of CREATE TABLE (…)."""
    ident = sql.Identifier(table)
    if mode is StorageMode.TIMESCALEDB:
        conn.execute(sql.SQL("CREATE TABLE {} ({})").format(ident, columns))
        conn.execute(
            "SELECT create_hypertable(%s::regclass, by_range(%s, %s::interval))",
            (table, time_column, PARTITION_INTERVAL),
        )
    else:
        conn.execute(
            sql.SQL("CREATE TABLE {} ({}) PARTITION BY RANGE ({})").format(
                ident, columns, sql.Identifier(time_column)
            )
        )


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def day_of(ts: datetime) -> date:
    """The UTC day a timestamp's partition covers."""
    return ts.astimezone(UTC).date()


def ensure_partitions(
    conn: psycopg.Connection[tuple[object, ...]],
    mode: StorageMode,
    table: str,
    days: Iterable[date],
) -> None:
    """Create the daily partitions of `table` for `days` if they are missing (plain mode only).

    Runs its own short transaction: partition DDL locks the parent table, and holding that
    lock for the length of a data batch would stall every other writer.
    """
    if mode is StorageMode.TIMESCALEDB:
        return  # hypertables create their chunks themselves
    wanted = sorted(set(days))
    if not wanted:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PARTITION_LOCK_KEY,))
        for day in wanted:
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})"
                ).format(
                    sql.Identifier(partition_name(table, day)),
                    sql.Identifier(table),
                    sql.Literal(start),
                    sql.Literal(start + PARTITION_INTERVAL),
                )
            )


def existing_partition_days(conn: psycopg.Connection[tuple[object, ...]], table: str) -> set[date]:
    """Days that already have a partition of `table` (plain mode), read from the catalog."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %s::regclass",
        (table,),
    ).fetchall()
    prefix = f"{table}_p"
    days: set[date] = set()
    for (name,) in rows:
        text = str(name)
        if text.startswith(prefix):
            days.add(datetime.strptime(text[len(prefix) :], "%Y%m%d").replace(tzinfo=UTC).date())
    return days


def read_mode(conn: psycopg.Connection[tuple[object, ...]]) -> StorageMode:
    """The mode recorded by `db migrate` for this database."""
    try:
        row = conn.execute("SELECT value FROM schema_meta WHERE key = 'storage_mode'").fetchone()
    except psycopg.errors.UndefinedTable:
        raise MigrationError(
            "the database has no schema yet; run 'smartcity db migrate' first"
        ) from None
    if row is None:
        raise MigrationError("schema_meta has no storage_mode; run 'smartcity db migrate'")
    return StorageMode(str(row[0]))


def create_rollup_table(
    conn: psycopg.Connection[tuple[object, ...]],
    mode: StorageMode,
    table: str,
    columns: sql.Composable,
    *,
    time_column: str,
) -> None:
    """Create a rollup table: a hypertable (TimescaleDB) or an ordinary table (plain)."""
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(table), columns))
    if mode is StorageMode.TIMESCALEDB:
        # create_hypertable also indexes the time column (create_default_indexes).
        conn.execute(
            "SELECT create_hypertable(%s::regclass, by_range(%s, %s::interval))",
            (table, time_column, ROLLUP_CHUNK_INTERVAL),
        )
    else:
        # Maintenance rebuilds and retention delete by time range across all levels/cities.
        conn.execute(
            sql.SQL("CREATE INDEX ON {} ({})").format(
                sql.Identifier(table), sql.Identifier(time_column)
            )
        )


@dataclass(frozen=True, slots=True)
class Retention:
    """How long each tier is kept, in days; 0 keeps it forever."""

    raw_days: int
    hourly_days: int
    daily_days: int


def ensure_partitions_ahead(
    conn: psycopg.Connection[tuple[object, ...]], mode: StorageMode, today: date, ahead_days: int
) -> None:
    """Plain mode: partitions for today and the next `ahead_days` days of every raw table, so a
    writer seldom has to take the partition lock on its hot path."""
    days = [today + timedelta(days=i) for i in range(ahead_days + 1)]
    for table in RAW_TABLES:
        ensure_partitions(conn, mode, table, days)


def raw_cutoff(now: datetime, days: int) -> datetime:
    """Raw rows before this instant are expired: the start of the UTC day `days` ago, so
    retention always removes whole partitions and never splits one."""
    start = datetime.combine(day_of(now) - timedelta(days=days), datetime.min.time(), UTC)
    return start


def drop_expired(
    conn: psycopg.Connection[tuple[object, ...]],
    mode: StorageMode,
    now: datetime,
    retention: Retention,
) -> dict[str, int]:
    """Drop raw partitions wholly before the raw cutoff (plain mode) and delete expired rollup
    rows (both modes). Returns what went, per table (partitions for raw tables, rows for
    rollups).

    Hourly rollups expire by UTC hour bucket, daily ones by their (local) day: both before the
    UTC day `days` ago, like raw rows, so one cutoff rule holds for every tier.

    TimescaleDB mode: the retention policies drop raw chunks (one day each, so at the same
    cutoff). A policy drops only chunks wholly past `drop_after`, and a rollup chunk spans 30
    days, so expired rollup rows would outlive plain mode's by up to a month and the two modes
    would answer a query over that range differently; the rows are deleted here in both modes
    and the policies then drop the emptied chunks.
    """
    removed: dict[str, int] = {}
    if retention.raw_days > 0 and mode is StorageMode.POSTGRESQL:
        cutoff_day = day_of(raw_cutoff(now, retention.raw_days))
        for table in RAW_TABLES:
            expired = sorted(d for d in existing_partition_days(conn, table) if d < cutoff_day)
            for day in expired:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PARTITION_LOCK_KEY,))
                    conn.execute(
                        sql.SQL("DROP TABLE IF EXISTS {}").format(
                            sql.Identifier(partition_name(table, day))
                        )
                    )
            removed[table] = len(expired)
    tiers = [(t, "bucket", retention.hourly_days) for t in HOURLY_ROLLUPS]
    tiers += [(t, "day", retention.daily_days) for t in DAILY_ROLLUPS]
    removed.update(_delete_expired_rows(conn, now, tiers))
    return removed


def _delete_expired_rows(
    conn: psycopg.Connection[tuple[object, ...]],
    now: datetime,
    tiers: list[tuple[str, str, int]],
) -> dict[str, int]:
    """For each (table, column, days) with days > 0: delete the rows whose `column` is before
    the cutoff `days` ago (a `day` column compares with the cutoff's date). Rows removed per
    table."""
    removed: dict[str, int] = {}
    for table, column, days in tiers:
        if days <= 0:
            continue
        cutoff = raw_cutoff(now, days)
        bound: object = cutoff.date() if column == "day" else cutoff
        with conn.transaction():
            cur = conn.execute(
                sql.SQL("DELETE FROM {} WHERE {} < %s").format(
                    sql.Identifier(table), sql.Identifier(column)
                ),
                (bound,),
            )
        removed[table] = cur.rowcount
    return removed


def apply_timescale_policies(
    conn: psycopg.Connection[tuple[object, ...]],
    mode: StorageMode,
    retention: Retention,
    compress_after: timedelta,
) -> None:
    """TimescaleDB mode: (re)install the columnstore and retention policies from the settings.

    Documented TimescaleDB ≥ 2.18 API: `ALTER TABLE … SET (timescaledb.enable_columnstore,
    timescaledb.segmentby, timescaledb.orderby)`, `CALL add_columnstore_policy(…, after => …)`,
    `add_retention_policy(…, drop_after => …)` and their `remove_*` twins. Policies are removed
    and added again so that a changed setting takes effect (add_* with if_not_exists keeps an
    existing policy with a different interval). Plain mode: nothing to do here.
    """
    if mode is not StorageMode.TIMESCALEDB:
        return
    for table, segment in RAW_TABLES.items():
        conn.execute(
            sql.SQL(
                "ALTER TABLE {} SET (timescaledb.enable_columnstore = true, "
                "timescaledb.segmentby = {}, timescaledb.orderby = 'ts DESC')"
            ).format(sql.Identifier(table), sql.Literal(segment))
        )
        conn.execute("CALL remove_columnstore_policy(%s::regclass, if_exists => true)", (table,))
        conn.execute(
            "CALL add_columnstore_policy(%s::regclass, after => %s::interval)",
            (table, compress_after),
        )
    tiers = [(t, retention.raw_days) for t in RAW_TABLES]
    tiers += [(t, retention.hourly_days) for t in HOURLY_ROLLUPS]
    tiers += [(t, retention.daily_days) for t in DAILY_ROLLUPS]
    for table, days in tiers:
        conn.execute("SELECT remove_retention_policy(%s::regclass, if_exists => true)", (table,))
        if days > 0:
            conn.execute(
                "SELECT add_retention_policy(%s::regclass, drop_after => %s::interval)",
                (table, timedelta(days=days)),
            )


# --- Transit rollups (smartcity.rollups.transit, migration 11) ---------------------------------
#
# Built from `stop_arrivals`, which is an ordinary table in both modes (one row per stop
# visit, upserted by the tracker; migration 31), and needing each arrival's neighbours (the
# previous bus at the stop for a headway, the previous stop of the trip for a run) — window
# functions. A TimescaleDB continuous aggregate can be defined only on a hypertable and cannot
# use window functions, so in both modes these rollups are hypertables/tables filled by the
# same SQL from `smartcity maintain` (like the lighting and metering rollups), and expire like
# them: rows deleted by `maintain` in both modes, the emptied chunks then dropped by the
# retention policies in TimescaleDB mode. `transit_eta_samples` (ordinary table) expires with
# the raw tier in both modes.

TRANSIT_HOURLY_ROLLUPS = ("transit_hourly", "transit_eta_hourly")
TRANSIT_DAILY_ROLLUPS = ("transit_daily", "transit_eta_daily")


def drop_expired_transit(
    conn: psycopg.Connection[tuple[object, ...]],
    mode: StorageMode,
    now: datetime,
    retention: Retention,
) -> dict[str, int]:
    """Delete expired ETA samples and transit rollup rows (both modes, for the reason given in
    `drop_expired`), with its cutoffs. Returns the rows removed per table."""
    del mode  # the same in both modes
    tiers: list[tuple[str, str, int]] = [("transit_eta_samples", "made_at", retention.raw_days)]
    tiers += [(t, "bucket", retention.hourly_days) for t in TRANSIT_HOURLY_ROLLUPS]
    tiers += [(t, "day", retention.daily_days) for t in TRANSIT_DAILY_ROLLUPS]
    return _delete_expired_rows(conn, now, tiers)


def apply_transit_timescale_policies(
    conn: psycopg.Connection[tuple[object, ...]], mode: StorageMode, retention: Retention
) -> None:
    """TimescaleDB mode: retention policies on the transit rollup hypertables (documented
    `add_retention_policy(…, drop_after => …)` / `remove_retention_policy(…, if_exists => …)`),
    removed and added again so a changed setting takes effect. Plain mode: nothing to do."""
    if mode is not StorageMode.TIMESCALEDB:
        return
    tiers = [(t, retention.hourly_days) for t in TRANSIT_HOURLY_ROLLUPS]
    tiers += [(t, retention.daily_days) for t in TRANSIT_DAILY_ROLLUPS]
    for table, days in tiers:
        conn.execute("SELECT remove_retention_policy(%s::regclass, if_exists => true)", (table,))
        if days > 0:
            conn.execute(
                "SELECT add_retention_policy(%s::regclass, drop_after => %s::interval)",
                (table, timedelta(days=days)),
            )
