"""The bus tracker's off-route numbers per vehicle, for the `off_route` alert.

The tracker already measures each fix's distance from the trip's shape; it keeps here the last
one (`off_route_m`) and the run of consecutive off-route fixes (`off_route_fixes`, the first
one's time in `off_route_since`), written in the transaction that writes the vehicle's state,
so the alert rule reads the tracker's numbers instead of projecting the fixes again. A table
of its own (one row per vehicle, beside `transit_vehicle_state`) because this migration's
number comes before that table's.
"""

from __future__ import annotations

import psycopg

from smartcity.db.storage import StorageMode

VERSION = 23
DESCRIPTION = "transit_off_route: the tracker's off-route numbers per vehicle"


def apply(conn: psycopg.Connection[tuple[object, ...]], mode: StorageMode) -> None:
    del mode  # an ordinary table: the same in both storage modes
    conn.execute(
        """
        CREATE TABLE transit_off_route (
            city            text             NOT NULL,
            vehicle_id      text             NOT NULL,
            off_route_m     double precision,
            off_route_fixes integer          NOT NULL DEFAULT 0,
            off_route_since timestamptz,
            PRIMARY KEY (city, vehicle_id)
        )
        """
    )
