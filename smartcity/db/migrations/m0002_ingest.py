"""Ingest additions: the GTFS-Realtime service date of a bus position's trip."""

from __future__ import annotations

import psycopg

from smartcity.db.storage import StorageMode

VERSION = 2
DESCRIPTION = "vehicle_positions.start_date"


def apply(conn: psycopg.Connection[tuple[object, ...]], mode: StorageMode) -> None:
    # `VehiclePosition.start_date` (YYYYMMDD) tells two runs of the same trip_id apart, which a
    # trip-matching tracker needs; nullable because most feeds leave it out. ALTER on the
    # parent reaches every partition (plain mode) or chunk (TimescaleDB) alike.
    del mode
    conn.execute("ALTER TABLE vehicle_positions ADD COLUMN start_date text")
