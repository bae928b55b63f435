"""Transit: where the buses are now, how many run per route, and how well they keep time.

Live panels read `vehicle_positions` over the last few minutes only (an index range scan on
(city, ts)). Punctuality, regularity, segment and ETA-accuracy panels read the transit hourly
rollups (`transit_hourly`, `transit_eta_hourly`; `smartcity.rollups.transit`, kept current
by `smartcity maintain` from the tracker's `stop_arrivals`) for the hours that start in the
dashboard's range, so they add up a few rows per route, stop and hour instead of scanning
arrivals. Two panels still read `stop_arrivals` through its (city, arrived_at) index, because
no sum answers them: the median delay and the distinct vehicles serving each route. The KPI
formulas are in docs/kpis.md "Transit".
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
from smartcity.rollups.transit import HEADWAY_BAND
from smartcity.settings import Settings
from smartcity.transit.eta_accuracy import BUCKETS

UID = "smartcity-transit"

# On time = arriving from 1 min early to 5 min late by default. The window is the setting
# SMARTCITY_TRANSIT_ON_TIME_EARLY_S / _LATE_S, applied by the rollups as they are built; the
# dashboard counts their on-time arrivals and names the default window in its descriptions.
ON_TIME_EARLY_S = int(Settings.model_fields["transit_on_time_early_s"].default)
ON_TIME_LATE_S = int(Settings.model_fields["transit_on_time_late_s"].default)
# A bus whose newest fix is older than this is not on the live map: buses report every 10 to
# 30 s (GTFS-Realtime feeds; the simulator every 10 s), so this is four missed reports.
LIVE_WINDOW = "2 minutes"
# A vehicle counts as active on a route when it reported on it within this window.
ACTIVE_WINDOW = "5 minutes"
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

MEDIAN_DELAY = (
    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s.delay_s) AS median_delay_s "
    f"FROM stop_arrivals s WHERE {_ARRIVALS}"
)

# The hourly transit rollup rows of the selected routes whose hour starts in the range.
_HOURS = "h.city = '$city' AND h.route_id IN ($route) AND $__timeFilter(h.bucket)"
_PCT = "100.0 * sum({}) / nullif(sum({}), 0)"

ON_TIME_PCT = (
    f"SELECT {_PCT.format('h.on_time', 'h.arrivals')} AS on_time_pct "
    f"FROM transit_hourly h WHERE {_HOURS}"
)
PUNCTUALITY_OVER_TIME = (
    "WITH b AS (SELECT $__timeGroupAlias(h.bucket, '1h'), sum(h.arrivals) AS n, "
    "sum(h.early) AS early, sum(h.on_time) AS on_time, sum(h.late) AS late "
    f"FROM transit_hourly h WHERE {_HOURS} GROUP BY 1) "
    'SELECT b."time", c.metric, 100.0 * c.hits / b.n AS value FROM b '
    "CROSS JOIN LATERAL (VALUES ('early', b.early), ('on time', b.on_time), "
    "('late', b.late)) AS c(metric, hits) WHERE b.n > 0 ORDER BY 1, 2"
)
ON_TIME_BY_ROUTE = (
    f"SELECT h.route_id AS route, {_PCT.format('h.on_time', 'h.arrivals')} AS on_time_pct "
    f"FROM transit_hourly h WHERE {_HOURS} GROUP BY 1 ORDER BY 1"
)

_LOW, _HIGH = HEADWAY_BAND
HEADWAY_ADHERENCE = (
    f"SELECT {_PCT.format('h.headways_regular', 'h.headways')} AS adherence_pct "
    f"FROM transit_hourly h WHERE {_HOURS}"
)
HEADWAY_BY_ROUTE = (
    "SELECT route, headways, sched / headways / 60 AS scheduled_min, "
    "observed / headways / 60 AS observed_min, 100.0 * regular / headways AS adherence_pct, "
    "100.0 * bunched / headways AS bunched_pct, 100.0 * gap / headways AS gap_pct, "
    "sqrt(greatest(dev_sq / headways - (dev / headways) ^ 2, 0)) / nullif(sched / headways, 0) "
    "AS cv_h FROM (SELECT h.route_id AS route, sum(h.headways) AS headways, "
    "sum(h.headway_sched_sum_s) AS sched, sum(h.headway_sum_s) AS observed, "
    "sum(h.headways_regular) AS regular, sum(h.headways_bunched) AS bunched, "
    "sum(h.headways_gap) AS gap, sum(h.headway_dev_sum_s) AS dev, "
    "sum(h.headway_dev_sq_sum_s) AS dev_sq "
    f"FROM transit_hourly h WHERE {_HOURS} GROUP BY 1) r WHERE headways > 0 ORDER BY route"
)

# The active GTFS version of the city's feed (a city's buses run the trips of the feed named
# after it, migration 31), computed once, so the stop-name joins are primary-key lookups.
_VERSION = "(SELECT version_id FROM gtfs_active_versions WHERE feed_id = '$city')"

# Stop-to-stop runs (leaving one stop to reaching the next observed stop of the trip), summed
# per route and stop pair; the pair's distance along the shape is in the rollup.
SLOWEST = (
    "WITH seg AS (SELECT h.route_id, h.from_stop_id, h.stop_id, sum(h.runs) AS runs, "
    "sum(h.run_sum_s) AS run_sum_s, sum(h.lost_sum_s) AS lost_sum_s, max(h.dist_m) AS dist_m "
    f"FROM transit_hourly h WHERE {_HOURS} AND h.from_stop_id <> '' "
    "GROUP BY 1, 2, 3 HAVING sum(h.runs) > 0 AND max(h.dist_m) IS NOT NULL) "
    "SELECT seg.route_id AS route, coalesce(f.stop_name, seg.from_stop_id) AS from_stop, "
    "coalesce(t.stop_name, seg.stop_id) AS to_stop, seg.runs, "
    "3.6 * seg.dist_m * seg.runs / seg.run_sum_s AS speed_kmh, "
    "seg.run_sum_s / seg.runs AS run_s, seg.lost_sum_s / seg.runs AS lost_s FROM seg "
    f"LEFT JOIN gtfs_stops f ON f.version_id = {_VERSION} AND f.stop_id = seg.from_stop_id "
    f"LEFT JOIN gtfs_stops t ON t.version_id = {_VERSION} AND t.stop_id = seg.stop_id "
    f"ORDER BY speed_kmh LIMIT {SLOWEST_SEGMENTS}"
)

# Sampled predictions scored against the observed arrival, per horizon bucket (the buckets of
# `smartcity bench eta`, in their order).
_ETA_ORDER = "ARRAY[" + ", ".join(f"'{b[0]}'" for b in BUCKETS) + "]"
ETA_BY_BUCKET = (
    "SELECT replace(h.horizon, '_', '–') || ' min' AS horizon, "
    f"{_PCT.format('h.accurate', 'h.samples')} AS accurate_pct, sum(h.samples) AS samples, "
    "sum(h.abs_err_sum_s) / sum(h.samples) AS mae_s, sum(h.err_sum_s) / sum(h.samples) AS bias_s "
    f"FROM transit_eta_hourly h WHERE {_HOURS} "
    f"GROUP BY h.horizon ORDER BY array_position({_ETA_ORDER}, h.horizon)"
)
# The score of `smartcity bench eta`: the mean of the four bucket accuracies (an empty bucket
# counts as 0).
ETA_SCORE = (
    f"SELECT sum(acc) / {len(BUCKETS)} AS eta_score_pct FROM (SELECT "
    f"{_PCT.format('h.accurate', 'h.samples')} AS acc FROM transit_eta_hourly h "
    f"WHERE {_HOURS} GROUP BY h.horizon) b HAVING count(*) > 0"
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
            description=f"Observed stop arrivals in the hours of the range from {window} "
            "(the configured window; docs/kpis.md).",
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
            "Early, on time, late (hourly)",
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
            description="Stop-to-stop runs in the hours of the range, slowest mean speed "
            "first: distance along the shape ÷ time from leaving one stop to reaching the "
            "next; lost_s is the mean arrival-to-arrival time beyond the schedule's.",
        ),
        width=24,
        height=10,
    )

    board.row("Arrival predictions")
    buckets = ", ".join(
        f"{lo // 60}–{hi // 60} min: {early} s early to {late} s late"
        for _, lo, hi, early, late in BUCKETS
    )
    board.add(
        stat_panel(
            "ETA score",
            ETA_SCORE,
            unit="percent",
            description="Mean of the four bucket accuracies of the sampled predictions "
            "(as `smartcity bench eta`; docs/kpis.md).",
        ),
        width=4,
        height=8,
    )
    board.add(
        table_panel(
            "ETA accuracy by bucket",
            ETA_BY_BUCKET,
            description="Sampled arrival predictions, by how long before the bus arrived they "
            f"were made, scored against the observed arrival. Accurate within: {buckets}. "
            "mae_s: mean absolute error; bias_s: mean of arrival − predicted.",
        ),
        width=20,
        height=8,
    )
    return board.build()
