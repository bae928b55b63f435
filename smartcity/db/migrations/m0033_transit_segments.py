"""Learned travel times: run time between consecutive stops and dwell at a stop, by hour of week.

Sums, not means, so the tracker can add each observed segment in the transaction that records
the arrival (and `smartcity.transit.segment_stats.rebuild` can recompute them from
`stop_arrivals`): mean = sum / n, variance = sum_sq / n − mean². `hour_of_week` is 0 for
Monday 00:00–01:00 in the feed's local time, up to 167; the hour is that of the departure from
the segment's first stop (for a dwell: of the arrival). Plain tables in both storage modes.
"""

from __future__ import annotations

import psycopg

from smartcity.db.storage import StorageMode

VERSION = 33
DESCRIPTION = "learned segment run times and stop dwell times by hour of week"


def apply(conn: psycopg.Connection[tuple[object, ...]], mode: StorageMode) -> None:
    del mode  # ordinary tables: the same in both storage modes
    conn.execute(
        """
        CREATE TABLE transit_segment_stats (
            feed_id      text             NOT NULL,
            from_stop_id text             NOT NULL,
            to_stop_id   text             NOT NULL,
            hour_of_week smallint         NOT NULL CHECK (hour_of_week BETWEEN 0 AND 167),
            n            bigint           NOT NULL,
            run_sum_s    double precision NOT NULL,
            run_sq_sum_s double precision NOT NULL,
            PRIMARY KEY (feed_id, from_stop_id, to_stop_id, hour_of_week)
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE transit_dwell_stats (
            feed_id        text             NOT NULL,
            stop_id        text             NOT NULL,
            hour_of_week   smallint         NOT NULL CHECK (hour_of_week BETWEEN 0 AND 167),
            n              bigint           NOT NULL,
            dwell_sum_s    double precision NOT NULL,
            dwell_sq_sum_s double precision NOT NULL,
            PRIMARY KEY (feed_id, stop_id, hour_of_week)
        )
        """
    )
