"""Feed versions in the database: write one with binary COPY, list them, remove one.

`write_version` runs inside the caller's transaction: nothing of a version is visible until
the whole import commits, and a failure anywhere rolls all of it back, leaving the active
version (the newest committed one, view `gtfs_active_versions`) as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson
import psycopg
from psycopg import sql

from smartcity.transit.errors import FeedVersionNotFoundError, GtfsError
from smartcity.transit.gtfs_model import Feed, ProgressFn, Row
from smartcity.transit.trip_layout import Layout

# Rows between progress reports while copying.
_PROGRESS_EVERY_ROWS = 20_000

# Table → (column, PostgreSQL type) in the order of the rows we build; version_id comes first.
TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "gtfs_agencies": (
        ("agency_id", "text"),
        ("agency_name", "text"),
        ("agency_url", "text"),
        ("agency_timezone", "text"),
        ("agency_lang", "text"),
        ("agency_phone", "text"),
    ),
    "gtfs_stops": (
        ("stop_id", "text"),
        ("stop_code", "text"),
        ("stop_name", "text"),
        ("stop_desc", "text"),
        ("stop_lat", "float8"),
        ("stop_lon", "float8"),
        ("zone_id", "text"),
        ("location_type", "int2"),
        ("parent_station", "text"),
        ("wheelchair_boarding", "int2"),
        ("platform_code", "text"),
    ),
    "gtfs_routes": (
        ("route_id", "text"),
        ("agency_id", "text"),
        ("route_short_name", "text"),
        ("route_long_name", "text"),
        ("route_desc", "text"),
        ("route_type", "int4"),
        ("route_url", "text"),
        ("route_color", "text"),
        ("route_text_color", "text"),
        ("route_sort_order", "int4"),
    ),
    "gtfs_calendar": (
        ("service_id", "text"),
        ("monday", "bool"),
        ("tuesday", "bool"),
        ("wednesday", "bool"),
        ("thursday", "bool"),
        ("friday", "bool"),
        ("saturday", "bool"),
        ("sunday", "bool"),
        ("start_date", "date"),
        ("end_date", "date"),
    ),
    "gtfs_calendar_dates": (
        ("service_id", "text"),
        ("date", "date"),
        ("exception_type", "int2"),
    ),
    "gtfs_shapes": (
        ("shape_id", "text"),
        ("shape_pt_sequence", "int4"),
        ("shape_pt_lat", "float8"),
        ("shape_pt_lon", "float8"),
        ("dist_m", "float8"),
    ),
    "gtfs_trips": (
        ("trip_id", "text"),
        ("route_id", "text"),
        ("service_id", "text"),
        ("trip_headsign", "text"),
        ("trip_short_name", "text"),
        ("direction_id", "int2"),
        ("block_id", "text"),
        ("shape_id", "text"),
        ("wheelchair_accessible", "int2"),
        ("bikes_allowed", "int2"),
        ("length_m", "float8"),
    ),
    "gtfs_stop_times": (
        ("trip_id", "text"),
        ("stop_sequence", "int4"),
        ("stop_id", "text"),
        ("arrival_s", "int4"),
        ("departure_s", "int4"),
        ("time_interpolated", "bool"),
        ("stop_headsign", "text"),
        ("pickup_type", "int2"),
        ("drop_off_type", "int2"),
        ("timepoint", "int2"),
        ("dist_m", "float8"),
        ("offset_m", "float8"),
    ),
    "gtfs_frequencies": (
        ("trip_id", "text"),
        ("start_s", "int4"),
        ("end_s", "int4"),
        ("headway_s", "int4"),
        ("exact_times", "int2"),
    ),
    "gtfs_translations": (
        ("table_name", "text"),
        ("field_name", "text"),
        ("language", "text"),
        ("translation", "text"),
        ("record_id", "text"),
        ("record_sub_id", "text"),
        ("field_value", "text"),
    ),
}


@dataclass(frozen=True, slots=True)
class FeedVersion:
    version_id: int
    feed_id: str
    imported_at: datetime
    source_name: str
    active: bool
    row_counts: dict[str, int]


def write_version(
    conn: psycopg.Connection[tuple[object, ...]],
    *,
    feed_id: str,
    source_name: str,
    source_sha256: str,
    feed: Feed,
    layout: Layout,
    progress: ProgressFn | None = None,
) -> tuple[int, dict[str, int]]:
    """Insert a feed version and all its rows; returns (version_id, rows per table)."""
    rows: dict[str, Sequence[Row]] = {
        "gtfs_agencies": feed.agencies,
        "gtfs_stops": feed.stops,
        "gtfs_routes": feed.routes,
        "gtfs_calendar": feed.calendar,
        "gtfs_calendar_dates": feed.calendar_dates,
        "gtfs_shapes": layout.shape_rows,
        "gtfs_trips": layout.trip_rows,
        "gtfs_stop_times": layout.stop_time_rows,
        "gtfs_frequencies": feed.frequencies,
        "gtfs_translations": feed.translations,
    }
    counts = {table: len(table_rows) for table, table_rows in rows.items()}
    info = feed.info
    row = conn.execute(
        "INSERT INTO gtfs_feed_versions (feed_id, source_name, source_sha256, publisher_name, "
        "feed_version, feed_start_date, feed_end_date, row_counts) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb) RETURNING version_id",
        (
            feed_id,
            source_name,
            source_sha256,
            info.publisher_name,
            info.feed_version,
            info.start_date,
            info.end_date,
            orjson.dumps(counts).decode(),
        ),
    ).fetchone()
    assert row is not None
    version_id = int(str(row[0]))
    for table, table_rows in rows.items():
        _copy(conn, table, version_id, table_rows, progress)
    return version_id, counts


def _copy(
    conn: psycopg.Connection[tuple[object, ...]],
    table: str,
    version_id: int,
    rows: Sequence[Row],
    progress: ProgressFn | None,
) -> None:
    columns = TABLES[table]
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table),
        sql.SQL(", ").join(sql.Identifier(c) for c in ("version_id", *(c for c, _ in columns))),
    )
    task = f"write {table}"
    total = len(rows)
    with conn.cursor().copy(statement) as copy:
        copy.set_types(["int8", *(t for _, t in columns)])
        for done, values in enumerate(rows, start=1):
            copy.write_row((version_id, *values))
            if progress is not None and done % _PROGRESS_EVERY_ROWS == 0:
                progress(task, done, total)
    if progress is not None:
        progress(task, total, total)


_LIST_SQL = """
SELECT v.version_id, v.feed_id, v.imported_at, v.source_name,
       a.version_id IS NOT NULL AS active, v.row_counts
FROM gtfs_feed_versions v
LEFT JOIN gtfs_active_versions a ON a.version_id = v.version_id
WHERE %(feed_id)s::text IS NULL OR v.feed_id = %(feed_id)s
ORDER BY v.feed_id, v.version_id DESC
"""


def list_versions(
    conn: psycopg.Connection[tuple[object, ...]], feed_id: str | None = None
) -> list[FeedVersion]:
    """Every stored version (newest first within each feed), marking the active ones."""
    try:
        rows = conn.execute(_LIST_SQL, {"feed_id": feed_id}).fetchall()
    except psycopg.errors.UndefinedTable:
        raise GtfsError(
            "the database has no GTFS tables yet; run 'smartcity db migrate' first"
        ) from None
    return [
        FeedVersion(
            version_id=int(str(r[0])),
            feed_id=str(r[1]),
            imported_at=r[2],  # type: ignore[arg-type]  # timestamptz → datetime
            source_name=str(r[3]),
            active=bool(r[4]),
            row_counts={str(k): int(v) for k, v in dict(r[5]).items()},  # type: ignore[call-overload]
        )
        for r in rows
    ]


def remove_version(conn: psycopg.Connection[tuple[object, ...]], version_id: int) -> FeedVersion:
    """Delete one version and all its rows. If it was active, the one before becomes active."""
    found = [v for v in list_versions(conn) if v.version_id == version_id]
    if not found:
        raise FeedVersionNotFoundError(
            f"there is no GTFS feed version {version_id}; 'smartcity gtfs list' shows them"
        )
    conn.execute("DELETE FROM gtfs_feed_versions WHERE version_id = %s", (version_id,))
    return found[0]
