"""Transit rollups: stop visits per route, stop and previous stop; ETA accuracy per route.

Built from `stop_arrivals` (the tracker's observed stop visits, migration 31), hourly by the
UTC hour of the arrival and daily by the city's local day, like the lighting and metering
rollups. Figures per bucket (formulas in docs/kpis.md, "Transit"):

* arrivals early / on time / late against the schedule, with the on-time window of the
  settings (`SMARTCITY_TRANSIT_ON_TIME_EARLY_S` / `_LATE_S`) applied when a bucket is built;
* headways: each arrival against the previous arrival of the same route and direction at the
  same stop (observed) and the schedule of those two trips (scheduled), classed regular /
  bunched / gap by `HEADWAY_BAND`;
* runs (segment travel times): from the departure at the trip's previous observed stop to this
  arrival, with the distance along the shape and the time lost against the schedule;
* dwells at intermediate stops of the trip (not its first or last stop in the schedule).

Runs and dwells are defined as for the predictor's learned sums (`smartcity.transit.
segment_stats`, migration 33), which keep one all-time sum per stop pair and hour of week for
the predictor; the rollups add the time buckets and the route, so a dashboard or a KPI can ask
about any range, and late arrivals reach their buckets.

Only the arrivals of the cities in `smartcity.cities` are rolled up (their local days are
known; the (city, arrived_at) index serves the reads). A neighbour is looked for at most
`transit_rollup_lookback_s` back (a longer gap is a break in service, not a headway or a
run), so rebuilding a bucket reads the arrivals of the bucket and of that much before it.

ETA accuracy: the sampled predictions (`transit_eta_samples`, written by the tracker) of the
visits arriving in the bucket, each scored in the horizon bucket of `smartcity.transit.
eta_accuracy` that holds its real horizon (arrival − made_at).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import psycopg
from psycopg import sql

from smartcity.cities import CITIES
from smartcity.settings import Settings
from smartcity.transit.eta_accuracy import BUCKETS
from smartcity.transit.segment_stats import hour_of_week

# An observed headway from half to one and a half times the scheduled one is regular; below
# that the buses are bunched, above it there is a gap (the usual bunching/gap thresholds).
HEADWAY_BAND = (0.5, 1.5)

Conn = psycopg.Connection[tuple[object, ...]]


@dataclass(frozen=True, slots=True)
class TransitRollupConfig:
    on_time_early_s: float
    on_time_late_s: float
    lookback: timedelta

    @classmethod
    def of(cls, settings: Settings) -> TransitRollupConfig:
        return cls(
            on_time_early_s=settings.transit_on_time_early_s,
            on_time_late_s=settings.transit_on_time_late_s,
            lookback=timedelta(seconds=settings.transit_rollup_lookback_s),
        )


_FIGURES = (
    "arrivals, early, on_time, late, delay_sum_s, headways, headways_regular, "
    "headways_bunched, headways_gap, headway_sum_s, headway_sched_sum_s, headway_dev_sum_s, "
    "headway_dev_sq_sum_s, dwells, dwell_sum_s, dwell_sq_sum_s, runs, run_sum_s, run_sq_sum_s, "
    "lost_sum_s"
)
_KEYS = "city, feed_id, route_id, stop_id, from_stop_id"

# The hours touched by arrivals recorded (or updated: a departure filled in) since the
# watermark: their own, the next visit of the same trip (its run starts at this departure) and
# the next arrival at the same stop on the same route (its headway starts at this arrival).
DIRTY_SQL = sql.SQL(
    """
WITH new AS (
    SELECT feed_id, trip_id, start_date, stop_sequence, route_id, stop_id, arrived_at
    FROM stop_arrivals WHERE detected_at > %(wm)s AND detected_at <= %(up)s
)
SELECT date_trunc('hour', arrived_at, 'UTC') FROM new
UNION
SELECT date_trunc('hour', n.arrived_at, 'UTC') FROM new CROSS JOIN LATERAL (
    SELECT s.arrived_at FROM stop_arrivals s
    WHERE s.feed_id = new.feed_id AND s.trip_id = new.trip_id
      AND s.start_date = new.start_date AND s.stop_sequence > new.stop_sequence
    ORDER BY s.stop_sequence LIMIT 1
) n
UNION
SELECT date_trunc('hour', n.arrived_at, 'UTC') FROM new CROSS JOIN LATERAL (
    SELECT s.arrived_at FROM stop_arrivals s
    WHERE s.feed_id = new.feed_id AND s.stop_id = new.stop_id AND s.route_id = new.route_id
      AND s.arrived_at > new.arrived_at AND s.arrived_at <= new.arrived_at + %(lookback)s
    ORDER BY s.arrived_at LIMIT 1
) n
"""
)

# Each arrival in [a, b) with its neighbours: the previous arrival at its stop (route and
# direction) and the previous observed visit of its trip, both within the lookback.
_VISITS = sql.SQL(
    """
    z AS (SELECT * FROM unnest(%(zc)s::text[], %(zt)s::text[]) AS z(city, tz)),
    s AS (
        SELECT s.feed_id, s.trip_id, s.start_date, s.stop_sequence, s.stop_id, s.route_id,
               s.city, s.arrived_at, s.departed_at, s.scheduled_arrival, s.delay_s,
               coalesce(t.direction_id, -1) AS direction, st.dist_m AS shape_m,
               EXISTS (SELECT 1 FROM gtfs_stop_times e WHERE e.version_id = v.version_id
                       AND e.trip_id = s.trip_id AND e.stop_sequence < s.stop_sequence)
               AND EXISTS (SELECT 1 FROM gtfs_stop_times e WHERE e.version_id = v.version_id
                           AND e.trip_id = s.trip_id AND e.stop_sequence > s.stop_sequence)
               AS intermediate
        FROM stop_arrivals s
        LEFT JOIN gtfs_active_versions v ON v.feed_id = s.feed_id
        LEFT JOIN gtfs_trips t ON t.version_id = v.version_id AND t.trip_id = s.trip_id
        LEFT JOIN gtfs_stop_times st ON st.version_id = v.version_id AND st.trip_id = s.trip_id
             AND st.stop_sequence = s.stop_sequence
        WHERE s.city = ANY(%(zc)s) AND s.arrived_at >= %(a)s::timestamptz - %(lookback)s
          AND s.arrived_at < %(b)s
    ),
    w AS (
        SELECT s.*,
               lag(arrived_at) OVER h AS h_prev_arr, lag(scheduled_arrival) OVER h AS h_prev_sched,
               lag(stop_id) OVER r AS r_prev_stop, lag(arrived_at) OVER r AS r_prev_arr,
               lag(departed_at) OVER r AS r_prev_dep, lag(scheduled_arrival) OVER r AS r_prev_sched,
               lag(shape_m) OVER r AS r_prev_shape_m
        FROM s
        WINDOW h AS (PARTITION BY feed_id, route_id, direction, stop_id
                     ORDER BY arrived_at, trip_id, start_date),
               r AS (PARTITION BY feed_id, trip_id, start_date ORDER BY stop_sequence)
    ),
    x AS (
        SELECT w.*, coalesce(z.tz, 'UTC') AS tz,
               date_trunc('hour', arrived_at, 'UTC') AS bucket,
               CASE WHEN hw_ok THEN extract(epoch FROM arrived_at - h_prev_arr) END AS hw,
               CASE WHEN hw_ok THEN extract(epoch FROM scheduled_arrival - h_prev_sched) END
                   AS hs,
               CASE WHEN r_ok THEN r_prev_stop ELSE '' END AS from_stop_id,
               CASE WHEN r_ok AND arrived_at > r_prev_dep
                    THEN extract(epoch FROM arrived_at - r_prev_dep) END AS run,
               CASE WHEN r_ok AND arrived_at > r_prev_dep
                    THEN extract(epoch FROM (arrived_at - r_prev_arr)
                                          - (scheduled_arrival - r_prev_sched)) END AS lost,
               CASE WHEN r_ok THEN shape_m - r_prev_shape_m END AS seg_m,
               CASE WHEN intermediate AND departed_at >= arrived_at
                    THEN extract(epoch FROM departed_at - arrived_at) END AS dwell
        FROM w LEFT JOIN z USING (city)
        CROSS JOIN LATERAL (SELECT
            h_prev_arr >= arrived_at - %(lookback)s
                AND scheduled_arrival > h_prev_sched AS hw_ok,
            coalesce(r_prev_arr >= arrived_at - %(lookback)s, false) AS r_ok) ok
        WHERE arrived_at >= %(a)s
    )
    """
)

_HOURLY = sql.SQL(
    """
    INSERT INTO transit_hourly (bucket, hour_of_week, {keys}, {figures}, dist_m)
    WITH {visits}
    SELECT bucket, {how}, {keys},
           count(*), count(*) FILTER (WHERE delay_s < -%(early)s),
           count(*) FILTER (WHERE delay_s BETWEEN -%(early)s AND %(late)s),
           count(*) FILTER (WHERE delay_s > %(late)s), sum(delay_s),
           count(hw), count(hw) FILTER (WHERE hw BETWEEN %(low)s * hs AND %(high)s * hs),
           count(hw) FILTER (WHERE hw < %(low)s * hs), count(hw) FILTER (WHERE hw > %(high)s * hs),
           coalesce(sum(hw), 0), coalesce(sum(hs), 0), coalesce(sum(hw - hs), 0),
           coalesce(sum((hw - hs) ^ 2), 0),
           count(dwell), coalesce(sum(dwell), 0), coalesce(sum(dwell ^ 2), 0),
           count(run), coalesce(sum(run), 0), coalesce(sum(run ^ 2), 0), coalesce(sum(lost), 0),
           max(seg_m) FILTER (WHERE seg_m > 0)
    FROM x GROUP BY bucket, tz, {keys}
    """
)

_DAILY = sql.SQL(
    """
    INSERT INTO transit_daily (day, {keys}, {figures}, dist_m)
    SELECT (bucket AT TIME ZONE %(tz)s)::date, {keys}, {sums}, max(dist_m)
    FROM transit_hourly
    WHERE city = ANY(%(cities)s) AND bucket >= %(a)s AND bucket < %(b)s
    GROUP BY 1, {keys}
    """
)

_ETA_HOURLY = sql.SQL(
    """
    INSERT INTO transit_eta_hourly (bucket, city, feed_id, route_id, horizon, samples, accurate,
                                    err_sum_s, abs_err_sum_s)
    WITH hb(label, lo, hi, early, late) AS (VALUES {buckets}),
    e AS (
        SELECT s.arrived_at, s.city, s.feed_id, s.route_id,
               extract(epoch FROM s.arrived_at - p.made_at) AS ahead,
               extract(epoch FROM s.arrived_at - p.predicted_arrival) AS err
        FROM stop_arrivals s
        JOIN transit_eta_samples p ON p.feed_id = s.feed_id AND p.trip_id = s.trip_id
             AND p.start_date = s.start_date AND p.stop_sequence = s.stop_sequence
        WHERE s.city = ANY(%(zc)s) AND s.arrived_at >= %(a)s AND s.arrived_at < %(b)s
    )
    SELECT date_trunc('hour', arrived_at, 'UTC'), city, feed_id, route_id, hb.label, count(*),
           count(*) FILTER (WHERE err BETWEEN -hb.early AND hb.late), sum(err), sum(abs(err))
    FROM e JOIN hb ON e.ahead >= hb.lo AND e.ahead < hb.hi
    GROUP BY 1, city, feed_id, route_id, hb.label
    """
)

_ETA_DAILY = sql.SQL(
    """
    INSERT INTO transit_eta_daily (day, city, feed_id, route_id, horizon, samples, accurate,
                                   err_sum_s, abs_err_sum_s)
    SELECT (bucket AT TIME ZONE %(tz)s)::date, city, feed_id, route_id, horizon, sum(samples),
           sum(accurate), sum(err_sum_s), sum(abs_err_sum_s)
    FROM transit_eta_hourly
    WHERE city = ANY(%(cities)s) AND bucket >= %(a)s AND bucket < %(b)s
    GROUP BY 1, city, feed_id, route_id, horizon
    """
)


def _buckets_values() -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("({}, {}, {}, {}, {})").format(*map(sql.Literal, b)) for b in BUCKETS
    )


def refresh_hourly(conn: Conn, start: datetime, end: datetime, cfg: TransitRollupConfig) -> None:
    """Rebuild the transit hourly buckets in [start, end) (hour-aligned) from the arrivals."""
    cities = list(CITIES.values())
    params = {
        "a": start,
        "b": end,
        "lookback": cfg.lookback,
        "early": cfg.on_time_early_s,
        "late": cfg.on_time_late_s,
        "low": HEADWAY_BAND[0],
        "high": HEADWAY_BAND[1],
        "zc": [c.slug for c in cities],
        "zt": [c.tz_name for c in cities],
    }
    for table in ("transit_hourly", "transit_eta_hourly"):
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE bucket >= %(a)s AND bucket < %(b)s").format(
                sql.Identifier(table)
            ),
            params,
        )
    conn.execute(
        _HOURLY.format(
            keys=sql.SQL(_KEYS),
            figures=sql.SQL(_FIGURES),
            visits=_VISITS,
            how=hour_of_week(sql.Identifier("bucket"), sql.Identifier("tz")),
        ),
        params,
    )
    conn.execute(_ETA_HOURLY.format(buckets=_buckets_values()), params)


def refresh_daily(
    conn: Conn,
    tz: str,
    cities: list[str],
    first: date,
    last: date,
    start: datetime,
    end: datetime,
) -> None:
    """Rebuild local days first..last of `cities` (all in zone `tz`) from the hourly rows;
    [start, end) is the same span in UTC."""
    params = {"tz": tz, "cities": cities, "d0": first, "d1": last, "a": start, "b": end}
    for table in ("transit_daily", "transit_eta_daily"):
        conn.execute(
            sql.SQL(
                "DELETE FROM {} WHERE city = ANY(%(cities)s) AND day >= %(d0)s AND day <= %(d1)s"
            ).format(sql.Identifier(table)),
            params,
        )
    sums = sql.SQL(", ").join(
        sql.SQL("sum({})").format(sql.Identifier(f.strip())) for f in _FIGURES.split(",")
    )
    conn.execute(_DAILY.format(keys=sql.SQL(_KEYS), figures=sql.SQL(_FIGURES), sums=sums), params)
    conn.execute(_ETA_DAILY, params)
