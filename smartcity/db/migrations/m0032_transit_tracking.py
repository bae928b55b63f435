"""Bus tracker state: where each vehicle is along its trip, one row per vehicle.

The tracker (an after-commit hook of the ingest, `smartcity.transit.tracking_store`) reads a
vehicle's row with `SELECT … FOR UPDATE`, advances it with the batch's fixes and writes it back
in the transaction that writes the stop arrivals those fixes revealed. So several ingest
workers, or a restarted one, continue from the same state, and a redelivered batch (fixes no
newer than `last_ts`) changes nothing. Plain table in both storage modes: one row per vehicle.
"""

from __future__ import annotations

import psycopg

from smartcity.db.storage import StorageMode

VERSION = 32
DESCRIPTION = "bus tracker state per vehicle"


def apply(conn: psycopg.Connection[tuple[object, ...]], mode: StorageMode) -> None:
    del mode  # an ordinary table: the same in both storage modes
    # `dist_m` and `fix_ts` are the last fix that lay on the trip's shape (NULL until one
    # did); `last_ts` the newest fix seen at all (off-route ones too). `next_stop` indexes the
    # trip's stops in stop_sequence order: the first not yet reached. `at_stop` is the stop the
    # vehicle stands at (reached, not left). `trip_factor` is the trip's running time relative
    # to the expected one, with its variance (the predictor's Kalman state).
    conn.execute(
        """
        CREATE TABLE transit_vehicle_state (
            city            text             NOT NULL,
            vehicle_id      text             NOT NULL,
            feed_id         text             NOT NULL,
            trip_id         text             NOT NULL,
            start_date      date             NOT NULL,
            route_id        text             NOT NULL,
            last_ts         timestamptz      NOT NULL,
            fix_ts          timestamptz,
            dist_m          double precision,
            speed_mps       double precision NOT NULL DEFAULT 0,
            next_stop       integer          NOT NULL DEFAULT 0,
            at_stop         integer,
            at_stop_since   timestamptz,
            last_dep_stop   integer,
            last_dep_ts     timestamptz,
            off_route       boolean          NOT NULL DEFAULT false,
            trip_factor     double precision NOT NULL DEFAULT 1,
            trip_factor_var double precision NOT NULL DEFAULT 0.01,
            updated_at      timestamptz      NOT NULL DEFAULT now(),
            PRIMARY KEY (city, vehicle_id)
        )
        """
    )
