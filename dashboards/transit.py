"""Transit: where the buses are now, how many run per route, and how well they keep time.

Live panels read `vehicle_positions` over the last few minutes only (an index range scan on
(city, ts)). Punctuality panels read `stop_arrivals` (migration 31; written by the bus tracker:
one row per observed stop visit, with `delay_s` against the schedule) over the dashboard's
range, through its (city, arrived_at) index, and join the active GTFS version of the city's
feed (`feed_id` = city) by primary key for directions, stop names and distances. The KPI
formulas are in docs/kpis.md "Transit".

ETA accuracy by bucket is not on this dashboard: `transit_predictions` holds only the current
prediction of each downstream stop and the tracker replaces it as the bus moves, so once a
stop is reached nothing records what was predicted for it 3, 6 or 10 minutes earlier. Scoring
predictions against `stop_arrivals` needs the tracker to keep samples of its predictions by
horizon; until then ETA accuracy is scored against the simulator's ground-truth arrivals
(DESIGN.md, Targets), not in Grafana.
"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import (
    Board,
    State,
    bar_panel,
    points_map,
    query_variable,
    stat_panel,
    table_panel,
    timeseries_panel,
)

UID = "smartcity-transit"

# On time = arriving from ON_TIME_EARLY_S early to ON_TIME_LATE_S late (1 min early to 5 min
# late, the window most agencies publish). The same values are the defaults of
# SMARTCITY_TRANSIT_ON_TIME_EARLY_S / _LATE_S (a test keeps them equal); the dashboard is
# built once, so a deployment that changes the settings rebuilds it with these changed too.
ON_TIME_EARLY_S = 60
ON_TIME_LATE_S = 300
# A bus whose newest fix is older than this is not on the live map: buses report every 10 to
# 30 s (GTFS-Realtime feeds; the simulator every 10 s), so this is four missed reports.
LIVE_WINDOW = "2 minutes"
# A vehicle counts as active on a route when it reported on it within this window.
ACTIVE_WINDOW = "5 minutes"
# Headway adherence: an observed headway within this factor band of the scheduled one is
# regular; below the band the buses are bunched, above it there is a gap (docs/kpis.md).
HEADWAY_BAND = (0.5, 1.5)
SLOWEST_SEGMENTS = 15

CITY = "SELECT DISTINCT city FROM devices WHERE domain = 'transit' ORDER BY 1"
# Routes of the active version of the city's GTFS feed; Grafana shows __text, uses __value.
ROUTE = (
    "SELECT r.route_id AS __value, coalesce(r.route_short_name, r.route_id) AS __text "
    "FROM gtfs_routes r JOIN gtfs_active_versions v ON v.version_id = r.version_id "
    "WHERE v.feed_id = '$city' ORDER BY 1"
)

_POSITIONS = "p.city = '$city' AND p.route_id IN ($route)"
_ARRIVALS = "s.city = '$city' AND s.route_id IN ($route) AND $__timeFilter(s.arrived_at)"

# Occupancy (GTFS-Realtime OccupancyStatus) as the map colours it.
SEATS, STANDING, FULL, NO_DATA = 0, 1, 2, 3
OCCUPANCY_STATES = [
    State(SEATS, "seats free", "green"),
    State(STANDING, "standing", "yellow"),
    State(FULL, "full", "red"),
    State(NO_DATA, "no data", "blue"),
]
_OCCUPANCY = (
    "CASE WHEN p.occupancy IN ('EMPTY', 'MANY_SEATS_AVAILABLE', 'FEW_SEATS_AVAILABLE') "
    f"THEN {SEATS} WHEN p.occupancy = 'STANDING_ROOM_ONLY' THEN {STANDING} "
    "WHEN p.occupancy IN ('CRUSHED_STANDING_ROOM_ONLY', 'FULL', 'NOT_ACCEPTING_PASSENGERS') "
    f"THEN {FULL} ELSE {NO_DATA} END"
)

# The newest fix of each bus within LIVE_WINDOW ("newest" by event time).
LIVE_MAP = (
    "SELECT DISTINCT ON (p.vehicle_id) p.vehicle_id, p.route_id, p.trip_id, "
    "p.lat AS latitude, p.lon AS longitude, round((p.speed_mps * 3.6)::numeric, 1) AS speed_kmh, "
    f"{_OCCUPANCY} AS occupancy, extract(epoch FROM now() - p.ts) AS age_s "
    f"FROM vehicle_positions p WHERE {_POSITIONS} AND p.ts > now() - interval '{LIVE_WINDOW}' "
    "ORDER BY p.vehicle_id, p.ts DESC"
)
BUSES_LIVE = (
    "SELECT count(DISTINCT p.vehicle_id) AS buses FROM vehicle_positions p "
    f"WHERE {_POSITIONS} AND p.ts > now() - interval '{ACTIVE_WINDOW}'"
)
ACTIVE_PER_ROUTE = (
    "SELECT p.route_id AS route, count(DISTINCT p.vehicle_id) AS vehicles "
    f"FROM vehicle_positions p WHERE {_POSITIONS} "
    f"AND p.ts > now() - interval '{ACTIVE_WINDOW}' GROUP BY 1 ORDER BY 1"
)
# Over the range from the stop arrivals (a few rows per bus and stop, not a fix every 10 s).
SERVING_PER_ROUTE = (
    "SELECT $__timeGroupAlias(s.arrived_at, '15m'), s.route_id AS metric, "
    "count(DISTINCT s.vehicle_id) AS value "
    f"FROM stop_arrivals s WHERE {_ARRIVALS} GROUP BY 1, 2 ORDER BY 1, 2"
)

_ON_TIME = f"s.delay_s BETWEEN -{ON_TIME_EARLY_S} AND {ON_TIME_LATE_S}"
_EARLY = f"s.delay_s < -{ON_TIME_EARLY_S}"
_LATE = f"s.delay_s > {ON_TIME_LATE_S}"

ON_TIME_PCT = (
    f"SELECT 100.0 * count(*) FILTER (WHERE {_ON_TIME}) / nullif(count(*), 0) AS on_time_pct "
    f"FROM stop_arrivals s WHERE {_ARRIVALS}"
)
MEDIAN_DELAY = (
    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s.delay_s) AS median_delay_s "
    f"FROM stop_arrivals s WHERE {_ARRIVALS}"
)
# One pass over the arrivals (per 15 minutes), then one row per class for the time series.
PUNCTUALITY_OVER_TIME = (
    "WITH b AS (SELECT $__timeGroupAlias(s.arrived_at, '15m'), count(*) AS n, "
    f"count(*) FILTER (WHERE {_EARLY}) AS early, count(*) FILTER (WHERE {_ON_TIME}) AS on_time, "
    f"count(*) FILTER (WHERE {_LATE}) AS late FROM stop_arrivals s WHERE {_ARRIVALS} "
    'GROUP BY 1) SELECT b."time", c.metric, 100.0 * c.hits / b.n AS value FROM b '
    "CROSS JOIN LATERAL (VALUES ('early', b.early), ('on time', b.on_time), "
    "('late', b.late)) AS c(metric, hits) ORDER BY 1, 2"
)
ON_TIME_BY_ROUTE = (
    "SELECT s.route_id AS route, "
    f"100.0 * count(*) FILTER (WHERE {_ON_TIME}) / count(*) AS on_time_pct "
    f"FROM stop_arrivals s WHERE {_ARRIVALS} GROUP BY 1 ORDER BY 1"
)

# The active GTFS version of the city's feed (a city's buses run the trips of the feed named
# after it, migration 31), computed once, so the joins below are primary-key lookups.
_VERSION = "(SELECT version_id FROM gtfs_active_versions WHERE feed_id = '$city')"

# Consecutive arrivals of one route and direction at one stop, in the order observed; the
# scheduled headway is that of the same two trips (so a swap of two buses, a negative
# scheduled headway, is left out rather than counted twice).
_LOW, _HIGH = HEADWAY_BAND
_HEADWAYS = (
    "WITH a AS (SELECT s.route_id, t.direction_id, s.stop_id, s.arrived_at, s.scheduled_arrival "
    "FROM stop_arrivals s JOIN (SELECT trip_id, direction_id FROM gtfs_trips "
    f"WHERE version_id = {_VERSION}) AS t ON t.trip_id = s.trip_id WHERE {_ARRIVALS}), "
    "h AS (SELECT route_id, "
    "extract(epoch FROM arrived_at - lag(arrived_at) OVER w) AS observed_s, "
    "extract(epoch FROM scheduled_arrival - lag(scheduled_arrival) OVER w) AS scheduled_s "
    "FROM a WINDOW w AS (PARTITION BY route_id, direction_id, stop_id ORDER BY arrived_at)) "
)
_REGULAR = f"observed_s BETWEEN {_LOW} * scheduled_s AND {_HIGH} * scheduled_s"
HEADWAY_ADHERENCE = (
    _HEADWAYS + f"SELECT 100.0 * count(*) FILTER (WHERE {_REGULAR}) / nullif(count(*), 0) "
    "AS adherence_pct FROM h WHERE scheduled_s > 0"
)
HEADWAY_BY_ROUTE = (
    _HEADWAYS + "SELECT route_id AS route, count(*) AS headways, "
    "avg(scheduled_s) / 60 AS scheduled_min, avg(observed_s) / 60 AS observed_min, "
    f"100.0 * count(*) FILTER (WHERE {_REGULAR}) / count(*) AS adherence_pct, "
    f"100.0 * count(*) FILTER (WHERE observed_s < {_LOW} * scheduled_s) / count(*) "
    "AS bunched_pct, "
    f"100.0 * count(*) FILTER (WHERE observed_s > {_HIGH} * scheduled_s) / count(*) AS gap_pct, "
    "stddev_pop(observed_s - scheduled_s) / nullif(avg(scheduled_s), 0) AS cv_h "
    "FROM h WHERE scheduled_s > 0 GROUP BY route_id ORDER BY route_id"
)

# Stop-to-stop runs: from leaving one stop (arriving, if the departure was not seen) to
# arriving at the next stop of the same trip. Aggregated per route and stop pair first; the
# pair's distance along the shape then comes from the feed for one trip that runs it (the
# same for every trip of that route and direction), and the time lost against the schedule
# compares arrival-to-arrival times, observed and scheduled, so no per-run feed lookup.
SLOWEST = (
    "WITH r AS (SELECT s.trip_id, s.route_id, s.stop_sequence, s.stop_id, s.arrived_at, "
    "s.scheduled_arrival, lag(s.stop_sequence) OVER w AS prev_seq, "
    "lag(s.stop_id) OVER w AS prev_stop, lag(s.arrived_at) OVER w AS prev_arrived, "
    "lag(s.scheduled_arrival) OVER w AS prev_scheduled, "
    "lag(coalesce(s.departed_at, s.arrived_at)) OVER w AS prev_left "
    f"FROM stop_arrivals s WHERE {_ARRIVALS} "
    "WINDOW w AS (PARTITION BY s.feed_id, s.trip_id, s.start_date ORDER BY s.stop_sequence)), "
    "agg AS (SELECT route_id, prev_stop, stop_id, count(*) AS runs, "
    "sum(extract(epoch FROM arrived_at - prev_left)) AS run_sum_s, "
    "avg(extract(epoch FROM (arrived_at - prev_arrived) - (scheduled_arrival - prev_scheduled))) "
    "AS lost_s, min(trip_id) AS trip_id, min(stop_sequence) AS stop_sequence "
    "FROM r WHERE prev_seq = stop_sequence - 1 AND arrived_at > prev_left "
    "GROUP BY route_id, prev_stop, stop_id), "
    "seg AS (SELECT agg.*, (SELECT b.dist_m - a.dist_m FROM gtfs_stop_times a "
    "JOIN gtfs_stop_times b ON b.version_id = a.version_id AND b.trip_id = a.trip_id "
    "AND b.stop_sequence = a.stop_sequence + 1 "
    f"WHERE a.version_id = {_VERSION} AND a.trip_id = agg.trip_id "
    "AND a.stop_sequence = agg.stop_sequence - 1) AS dist_m FROM agg) "
    "SELECT seg.route_id AS route, coalesce(f.stop_name, seg.prev_stop) AS from_stop, "
    "coalesce(t.stop_name, seg.stop_id) AS to_stop, seg.runs, "
    "3.6 * seg.dist_m * seg.runs / seg.run_sum_s AS speed_kmh, "
    "seg.run_sum_s / seg.runs AS run_s, seg.lost_s FROM seg "
    f"LEFT JOIN gtfs_stops f ON f.version_id = {_VERSION} AND f.stop_id = seg.prev_stop "
    f"LEFT JOIN gtfs_stops t ON t.version_id = {_VERSION} AND t.stop_id = seg.stop_id "
    f"WHERE seg.dist_m IS NOT NULL ORDER BY speed_kmh LIMIT {SLOWEST_SEGMENTS}"
)


def build() -> dm.Dashboard:
    board = Board(
        uid=UID,
        title="Transit",
        description="Live buses, active vehicles per route, on-time performance, headway "
        "adherence and the slowest segments, from bus positions and observed stop arrivals.",
        tags=["smartcity", "transit"],
        default_from="now-3h",
        refresh="30s",
    )
    board.variable(query_variable("city", "City", CITY))
    board.variable(query_variable("route", "Route", ROUTE, multi=True, include_all=True))

    board.row("Live")
    board.add(
        points_map(
            "Live buses",
            LIVE_MAP,
            state_field="occupancy",
            states=OCCUPANCY_STATES,
            description=f"The newest position of each bus that reported within {LIVE_WINDOW}, "
            "coloured by occupancy.",
        ),
        width=16,
        height=12,
    )
    board.add(
        bar_panel(
            "Active vehicles per route",
            ACTIVE_PER_ROUTE,
            description=f"Vehicles that reported on each route within {ACTIVE_WINDOW}.",
        ),
        width=8,
        height=12,
    )
    board.add(
        stat_panel(
            "Buses reporting",
            BUSES_LIVE,
            description=f"Buses of the selected routes that reported within {ACTIVE_WINDOW}.",
            color="blue",
        ),
        width=4,
        height=8,
    )
    board.add(
        timeseries_panel(
            "Vehicles serving stops, per route (15 min)",
            SERVING_PER_ROUTE,
            description="Distinct vehicles with an observed stop arrival on each route in "
            "each 15 minutes.",
        ),
        width=20,
        height=8,
    )

    window = f"{ON_TIME_EARLY_S // 60} min early to {ON_TIME_LATE_S // 60} min late"
    board.row("Punctuality and regularity")
    board.add(
        stat_panel(
            "On time",
            ON_TIME_PCT,
            unit="percent",
            description=f"Observed stop arrivals from {window} (docs/kpis.md).",
        ),
        width=4,
        height=8,
    )
    board.add(
        stat_panel(
            "Median delay",
            MEDIAN_DELAY,
            unit="s",
            description="Median of arrival − scheduled arrival over observed stop arrivals.",
            color="orange",
        ),
        width=4,
        height=8,
    )
    board.add(
        timeseries_panel(
            "Early, on time, late (15 min)",
            PUNCTUALITY_OVER_TIME,
            unit="percent",
            description=f"Share of observed stop arrivals; on time is {window}.",
        ),
        width=10,
        height=8,
    )
    board.add(
        bar_panel("On time by route", ON_TIME_BY_ROUTE, unit="percent"),
        width=6,
        height=8,
    )
    board.add(
        stat_panel(
            "Headway adherence",
            HEADWAY_ADHERENCE,
            unit="percent",
            description=f"Observed headways within {_LOW:g}–{_HIGH:g} × the scheduled headway "
            "of the same two trips (docs/kpis.md).",
        ),
        width=4,
        height=8,
    )
    board.add(
        table_panel(
            "Headways by route",
            HEADWAY_BY_ROUTE,
            description=f"Regular: {_LOW:g}–{_HIGH:g} × scheduled; bunched: below; gap: "
            "above. cv_h: standard deviation of (observed − scheduled) ÷ mean scheduled "
            "headway (TCQSM).",
        ),
        width=20,
        height=8,
    )
    board.add(
        table_panel(
            "Slowest segments",
            SLOWEST,
            description="Stop-to-stop runs in the range, slowest mean speed first: distance "
            "along the shape ÷ time from leaving one stop to reaching the next; lost_s is the "
            "mean arrival-to-arrival time beyond the schedule's.",
        ),
        width=24,
        height=10,
    )
    return board.build()
