"""The transit rules, swept on the schedule from what the bus tracker wrote.

The tracker (the ingest's after-commit hook, `smartcity.transit.tracking_store`) already turns
each fix into a distance along the trip's shape and an offset from it, and each stop visit into
a `stop_arrivals` row; these rules read its numbers instead of projecting fixes again. They run
in `smartcity alerts run` (`loop.one_pass`) because stale GPS needs the clock, and the others
need the tracker's result of the batch (the alert hook runs before the transit hook).

    stale_gps     a bus on an active trip whose last usable fix (the tracker's `fix_ts`: frozen
                  repeats and off-route fixes do not count) is older than STALE_GPS_FACTOR × its
                  reporting interval. Not near the end of its trip (a bus that finished its last
                  trip switches off), not while off route (that is `off_route`).
    off_route     OFF_ROUTE_MIN_FIXES consecutive fixes farther than the tracker's OFF_ROUTE_M
                  from the trip's shape.
    bus_bunching  at a stop, the observed headway (this arrival − the previous arrival of the
                  same route and direction) ≤ BUNCHING_MAX_RATIO × the scheduled headway
                  (the difference of the two visits' scheduled arrivals).
    headway_gap   the observed headway ≥ GAP_MIN_RATIO × the scheduled one and at least
                  GAP_MIN_EXCESS_S longer.

Headway alerts are about a route and direction (device id `{route_id}/{direction_id}`): a
bunched pair shows at every stop they pass together, and that is one problem. The vehicle
rules are about the vehicle. Verdicts go through `engine.apply_runs`: one open alert per device
+ rule, hold-off, occurrence count and the per-rule rate limit, like every other rule.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

import psycopg

from smartcity.alerts import engine, store
from smartcity.alerts.offline import EXPECTED_INTERVAL_S
from smartcity.alerts.rules import RULES_BY_NAME
from smartcity.transit.tracking import OFF_ROUTE_M

Conn = psycopg.Connection[tuple[object, ...]]

BUS_INTERVAL_S = EXPECTED_INTERVAL_S["transit"]
# Three missed fixes: one lost fix is common (a tunnel, a radio gap), three in a row are not.
STALE_GPS_FACTOR = 3.0
# A bus whose last fix lies this close to its trip's last stop has most likely arrived and
# switched off (fixes come every 10 s, so the last one is up to ~100 m before the terminus).
STALE_GPS_END_M = 300.0
# Three consecutive fixes (30 s) off the shape: one wild fix (multipath near tall buildings)
# is not a detour.
OFF_ROUTE_MIN_FIXES = 3
# A bus within a quarter of the scheduled headway of the one ahead is bunched: at a 10-minute
# headway, 2.5 minutes. Ordinary running (starts −1…+4 min, ±10 % run times, longer dwells at
# rush hours) keeps consecutive buses well apart.
BUNCHING_MAX_RATIO = 0.25
# A gap is at least 1.75 × the scheduled headway and at least 5 minutes more than it: at a
# 10-minute headway, 17.5 minutes without a bus (a bus missing altogether makes 2 ×); at a
# 5-minute rush headway, 10 minutes (the excess, not the ratio, decides there).
GAP_MIN_RATIO = 1.75
GAP_MIN_EXCESS_S = 300.0
# Headways are compared only where the schedule has at least this frequency: on a route with a
# bus every 40 minutes, "the previous bus" is a timetable question, not a headway one.
HEADWAY_MAX_SCHEDULED_S = 30 * 60.0
# Each pass looks at the arrivals of this window (event time) before `now`: several passes see
# each arrival (re-applying a verdict is harmless), and a tracker that records an arrival up to
# a few fixes late still has it seen.
HEADWAY_LOOKBACK_S = 10 * 60.0
# Vehicles whose newest fix is older than this are left to `offline`.
ACTIVE_WITHIN_S = 2 * 3600.0


def sweep(conn: Conn, now: datetime, *, max_new_per_min: int = 0) -> engine.Outcome:
    """Evaluate the transit rules at `now` (event time) and apply them in one transaction."""
    outcome = engine.Outcome()
    with conn.transaction():
        for rule_name, runs_by_device in (
            *_vehicle_runs(conn, now).items(),
            *_headway_runs(conn, now).items(),
        ):
            rule = RULES_BY_NAME[rule_name]
            open_now = store.open_keys(conn, "transit", sorted(d for d, _ in runs_by_device))
            for (device_id, city), runs in sorted(runs_by_device.items()):
                engine.apply_runs(
                    conn,
                    rule,
                    store.Key("transit", device_id, rule_name),
                    city,
                    runs,
                    open_now,
                    outcome,
                    max_new_per_min,
                )
    return outcome


_VEHICLES = """
    SELECT s.city, s.vehicle_id, s.route_id, s.last_ts, s.fix_ts, s.dist_m, s.next_stop,
           coalesce(o.off_route_fixes, 0), o.off_route_m, o.off_route_since, e.end_m, e.stops
    FROM transit_vehicle_state s
    LEFT JOIN transit_off_route o USING (city, vehicle_id)
    JOIN gtfs_active_versions v ON v.feed_id = s.feed_id
    CROSS JOIN LATERAL (
        SELECT max(t.dist_m) AS end_m, count(*) AS stops FROM gtfs_stop_times t
        WHERE t.version_id = v.version_id AND t.trip_id = s.trip_id
    ) e
    WHERE s.last_ts > %(now)s - make_interval(secs => %(active)s) AND s.last_ts <= %(now)s
"""

Runs = dict[tuple[str, str], list[engine.Run]]


def _vehicle_runs(conn: Conn, now: datetime) -> dict[str, Runs]:
    stale: Runs = {}
    off: Runs = {}
    stale_after = timedelta(seconds=STALE_GPS_FACTOR * BUS_INTERVAL_S)
    for row in conn.execute(_VEHICLES, {"now": now, "active": ACTIVE_WITHIN_S}).fetchall():
        city, vehicle, route, last_ts, fix_ts, dist, nxt, n_off, off_m, off_since, end_m, stops = (
            row
        )
        assert isinstance(last_ts, datetime)
        key = (str(vehicle), str(city))
        if int(n_off) > 0:  # type: ignore[call-overload]
            assert isinstance(off_since, datetime)
            firing = int(n_off) >= OFF_ROUTE_MIN_FIXES  # type: ignore[call-overload]
            message = (
                f"bus on route {route} is {float(off_m):.0f} m from its route's shape "  # type: ignore[arg-type]
                f"({n_off} fixes since {off_since:%H:%M:%S} UTC over {OFF_ROUTE_M:g} m)"
            )
            # Too few fixes yet: says nothing (neither raises nor starts the hold-off).
            if firing:
                off[key] = [engine.Run(True, last_ts, last_ts, message)]
            continue
        if isinstance(fix_ts, datetime):
            off[key] = [engine.Run(False, fix_ts, fix_ts, "")]
        # Stale GPS: only on an active trip, away from its end.
        if fix_ts is None or int(nxt) >= int(stops):  # type: ignore[call-overload]
            continue
        assert isinstance(fix_ts, datetime)
        if end_m is not None and dist is not None and float(end_m) - float(dist) < STALE_GPS_END_M:  # type: ignore[arg-type]
            continue
        age = now - fix_ts
        if age > stale_after:
            how = (
                "fixes keep coming but the position is frozen"
                if last_ts - fix_ts > stale_after
                else "no fix since"
            )
            message = (
                f"bus on route {route}: last usable GPS fix {age.total_seconds():.0f} s ago "
                f"(expected every {BUS_INTERVAL_S:g} s; {how} {fix_ts:%H:%M:%S} UTC)"
            )
            stale[key] = [engine.Run(True, now, now, message)]
        else:
            stale[key] = [engine.Run(False, fix_ts, fix_ts, "")]
    return {"stale_gps": stale, "off_route": off}


# Each arrival in the window with the previous arrival at the same stop of the same route and
# direction (within the largest headway compared, by arrival time). A trip's first stop is left
# out: its "arrival" is when the bus was first seen waiting there.
_HEADWAYS = """
    SELECT a.city, a.route_id, coalesce(ta.direction_id, 0), a.stop_id, a.arrived_at,
           extract(epoch FROM a.arrived_at - p.arrived_at),
           extract(epoch FROM a.scheduled_arrival - p.scheduled_arrival),
           a.vehicle_id, p.vehicle_id
    FROM stop_arrivals a
    JOIN gtfs_active_versions v ON v.feed_id = a.feed_id
    JOIN gtfs_trips ta ON ta.version_id = v.version_id AND ta.trip_id = a.trip_id
    CROSS JOIN LATERAL (
        SELECT b.arrived_at, b.scheduled_arrival, b.vehicle_id FROM stop_arrivals b
        JOIN gtfs_trips tb ON tb.version_id = v.version_id AND tb.trip_id = b.trip_id
        WHERE b.feed_id = a.feed_id AND b.stop_id = a.stop_id AND b.route_id = a.route_id
          AND tb.direction_id IS NOT DISTINCT FROM ta.direction_id
          AND b.arrived_at <= a.arrived_at
          AND b.arrived_at > a.arrived_at - make_interval(secs => %(horizon)s)
          AND (b.trip_id, b.start_date) <> (a.trip_id, a.start_date)
        ORDER BY b.arrived_at DESC LIMIT 1
    ) p
    WHERE a.city = ANY(%(cities)s)  -- the index stop_arrivals (city, arrived_at)
      AND a.arrived_at > %(now)s - make_interval(secs => %(lookback)s)
      AND a.arrived_at <= %(now)s
      AND a.stop_sequence > (SELECT min(st.stop_sequence) FROM gtfs_stop_times st
                             WHERE st.version_id = v.version_id AND st.trip_id = a.trip_id)
    ORDER BY a.arrived_at
"""


def _headway_runs(conn: Conn, now: datetime) -> dict[str, Runs]:
    bunching: Runs = defaultdict(list)
    gap: Runs = defaultdict(list)
    cities = [str(c) for (c,) in conn.execute("SELECT DISTINCT city FROM transit_vehicle_state")]
    rows = conn.execute(
        _HEADWAYS,
        {
            "cities": cities,
            "now": now,
            "lookback": HEADWAY_LOOKBACK_S,
            # a gap can be up to GAP_MIN_RATIO × the largest compared headway + slack
            "horizon": 3 * HEADWAY_MAX_SCHEDULED_S,
        },
    ).fetchall()
    for city, route, direction, stop, at, observed, scheduled, vehicle, ahead in rows:
        assert isinstance(at, datetime)
        obs, sched = float(observed), float(scheduled)  # type: ignore[arg-type]
        if not 0 < sched <= HEADWAY_MAX_SCHEDULED_S:
            continue  # overtaken (the schedule says the other way round), or infrequent
        key = (f"{route}/{direction}", str(city))
        ratio = obs / sched
        head = f"route {route} direction {direction} at stop {stop}"
        _add(
            bunching[key],
            ratio <= BUNCHING_MAX_RATIO,
            at,
            f"{head}: bus {vehicle} arrived {obs:.0f} s after bus {ahead}, scheduled "
            f"{sched:.0f} s apart ({ratio:.0%} of the headway): bunching",
        )
        _add(
            gap[key],
            ratio >= GAP_MIN_RATIO and obs - sched >= GAP_MIN_EXCESS_S,
            at,
            f"{head}: {obs / 60:.0f} min between bus {ahead} and bus {vehicle}, scheduled "
            f"{sched / 60:.0f} min: headway gap",
        )
    return {"bus_bunching": dict(bunching), "headway_gap": dict(gap)}


def _add(runs: list[engine.Run], firing: bool, at: datetime, message: str) -> None:
    if runs and runs[-1].firing == firing:
        runs[-1].last, runs[-1].message = at, message
    else:
        runs.append(engine.Run(firing, at, at, message))
