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

TimescaleDB is not installable on the development machines, so its branch is written against
the documented API and kept here, apart, to be exercised wherever the extension exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

import psycopg
from psycopg import sql

from smartcity.errors import MigrationError
from smartcity.settings import StorageModeSetting

# One day per chunk/partition: at city scale (50k lamps each minute, ~72 M rows a day) a day
# fits comfortably in memory for its indexes, and retention drops whole days.
PARTITION_INTERVAL = timedelta(days=1)

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
