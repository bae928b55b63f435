"""An index on `stop_arrivals.detected_at`, the transit rollups' watermark column: each
`maintain` pass looks for the visits the tracker wrote or changed since its last pass, which
without it reads the whole table."""

from __future__ import annotations

import psycopg

from smartcity.db.storage import StorageMode

VERSION = 35
DESCRIPTION = "index on stop_arrivals (detected_at) for the transit rollups' watermark"


def apply(conn: psycopg.Connection[tuple[object, ...]], mode: StorageMode) -> None:
    del mode  # an ordinary table: the same in both storage modes
    conn.execute("CREATE INDEX stop_arrivals_detected_at ON stop_arrivals (detected_at)")
