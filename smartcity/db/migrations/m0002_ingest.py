"""Ingest additions: the GTFS-Realtime service date of a bus position's trip; room for
in-place updates of the device registry."""

from __future__ import annotations

import psycopg

from smartcity.db.storage import StorageMode

VERSION = 2
DESCRIPTION = "vehicle_positions.start_date, devices fillfactor"


def apply(conn: psycopg.Connection[tuple[object, ...]], mode: StorageMode) -> None:
    # `VehiclePosition.start_date` (YYYYMMDD) tells two runs of the same trip_id apart, which a
    # trip-matching tracker needs; nullable because most feeds leave it out. ALTER on the
    # parent reaches every partition (plain mode) or chunk (TimescaleDB) alike.
    del mode
    conn.execute("ALTER TABLE vehicle_positions ADD COLUMN start_date text")
    # Every batch moves devices.last_seen forward for the devices it saw. With free space on
    # each page (and no index on last_seen) PostgreSQL updates those rows in place (HOT
    # updates) instead of writing new index entries for each.
    conn.execute("ALTER TABLE devices SET (fillfactor = 70)")
