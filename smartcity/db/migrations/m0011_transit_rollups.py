"""Transit rollups, hourly (UTC hours) and daily (the city's local day), and ETA samples.

`transit_hourly` / `transit_daily` hold one row per (route, stop, previous stop of the trip)
and bucket — the stop visit's arrival hour, or its local day — so that one table answers the
route figures (sum over stops), the segment figures (from_stop_id → stop_id) and the dwells
(per stop). `from_stop_id` is '' for a visit without an earlier observed visit of its trip.
Everything is a count or a sum, so any range of buckets adds up (docs/kpis.md, "Transit").
`hour_of_week` (hourly rows) is the bucket's hour of the week in the city's local time,
0 = Monday 00:00, as in `transit_segment_stats` (migration 33).

`transit_eta_samples` keeps a bounded sample of the tracker's predictions: for a sampled
share of trips, one prediction per stop visit and horizon bucket (the one made nearest the
bucket's middle). `transit_eta_hourly` / `_daily` score them against the observed arrival.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from smartcity.db.storage import StorageMode, create_rollup_table

VERSION = 11
DESCRIPTION = "transit rollups (arrivals, headways, runs, dwells, ETA accuracy), ETA samples"

_STOP_MEASURES = """
    city                 text             NOT NULL,
    feed_id              text             NOT NULL,
    route_id             text             NOT NULL,
    stop_id              text             NOT NULL,
    from_stop_id         text             NOT NULL,
    arrivals             integer          NOT NULL,
    early                integer          NOT NULL,
    on_time              integer          NOT NULL,
    late                 integer          NOT NULL,
    delay_sum_s          double precision NOT NULL,
    headways             integer          NOT NULL,
    headways_regular     integer          NOT NULL,
    headways_bunched     integer          NOT NULL,
    headways_gap         integer          NOT NULL,
    headway_sum_s        double precision NOT NULL,
    headway_sched_sum_s  double precision NOT NULL,
    headway_dev_sum_s    double precision NOT NULL,
    headway_dev_sq_sum_s double precision NOT NULL,
    dwells               integer          NOT NULL,
    dwell_sum_s          double precision NOT NULL,
    dwell_sq_sum_s       double precision NOT NULL,
    runs                 integer          NOT NULL,
    run_sum_s            double precision NOT NULL,
    run_sq_sum_s         double precision NOT NULL,
    lost_sum_s           double precision NOT NULL,
    dist_m               double precision
"""

_ETA_MEASURES = """
    city          text             NOT NULL,
    feed_id       text             NOT NULL,
    route_id      text             NOT NULL,
    horizon       text             NOT NULL,
    samples       integer          NOT NULL,
    accurate      integer          NOT NULL,
    err_sum_s     double precision NOT NULL,
    abs_err_sum_s double precision NOT NULL
"""


def apply(conn: psycopg.Connection[tuple[object, ...]], mode: StorageMode) -> None:
    for table, time_col, time_type, measures, key in (
        (
            "transit_hourly",
            "bucket",
            "timestamptz",
            _STOP_MEASURES + ", hour_of_week smallint NOT NULL",
            "city, feed_id, route_id, stop_id, from_stop_id",
        ),
        (
            "transit_daily",
            "day",
            "date",
            _STOP_MEASURES,
            "city, feed_id, route_id, stop_id, from_stop_id",
        ),
        (
            "transit_eta_hourly",
            "bucket",
            "timestamptz",
            _ETA_MEASURES,
            "city, feed_id, route_id, horizon",
        ),
        ("transit_eta_daily", "day", "date", _ETA_MEASURES, "city, feed_id, route_id, horizon"),
    ):
        body = sql.SQL("{} {} NOT NULL, {}, PRIMARY KEY ({}, {})").format(
            sql.Identifier(time_col),
            sql.SQL(time_type),
            sql.SQL(measures),
            sql.SQL(key),
            sql.Identifier(time_col),
        )
        create_rollup_table(conn, mode, table, body, time_column=time_col)
        # Dashboards and KPIs read one city's routes over a time range.
        conn.execute(
            sql.SQL("CREATE INDEX ON {} (city, route_id, {})").format(
                sql.Identifier(table), sql.Identifier(time_col)
            )
        )

    # `horizon` is the bucket label the prediction was made in (predicted arrival − made_at);
    # the rollup scores it by the real horizon (arrival − made_at), as `smartcity bench eta`.
    conn.execute(
        """
        CREATE TABLE transit_eta_samples (
            feed_id           text        NOT NULL,
            trip_id           text        NOT NULL,
            start_date        date        NOT NULL,
            stop_sequence     integer     NOT NULL,
            horizon           text        NOT NULL,
            city              text        NOT NULL,
            route_id          text        NOT NULL,
            made_at           timestamptz NOT NULL,
            predicted_arrival timestamptz NOT NULL,
            PRIMARY KEY (feed_id, trip_id, start_date, stop_sequence, horizon)
        )
        """
    )
    conn.execute("CREATE INDEX ON transit_eta_samples (made_at)")
