"""Bus tracking: each GPS fix to a distance along the trip's shape, and stop events from them.

The model (docs/transit.md, "Tracking"): a vehicle on a trip has one state — how far along the
trip's shape it was at its last good fix, its speed, the first stop it has not reached yet and
the stop it stands at, if any. A new fix is projected onto the shape only within a window
ahead of the last distance (`BACKWARD_TOLERANCE_M` behind it to `MAX_SPEED_MPS` × elapsed
time ahead), so a shape that loops, or a stop served twice, is matched on the pass the bus is
on, and a wild jump cannot move it. A fix farther than `OFF_ROUTE_M` from that part of the shape
is off route (a detour, or a bad fix): it moves nothing, and the next fix back on the shape
picks up from the last good one; so does a stale fix (exactly the last position again while
the reported speed says the bus moves). Distances never decrease.

Stop events come from pairs of consecutive good fixes: a stop whose distance lies between them
was reached in between. When it was reached is interpolated by distance, using the speed
before (arrival) and after (departure) rather than "the first fix near the stop", which would
be up to one reporting interval late. When several stops fall between two fixes (a dropout, a
detour), the time between them is shared out: moving at the observed speed, the rest spread as
equal dwells. Pure logic: no database (see `tracking_store`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from smartcity.transit.trips import TripPlan

# Farther than this from the shape (in the window) is off route: GPS noise is a few metres,
# urban canyons give tens; a detour is a street or more away (150 m and up).
OFF_ROUTE_M = 60.0
# A fix may project this far behind the last distance without it counting as moving back
# (noise while standing): the distance stays.
BACKWARD_TOLERANCE_M = 30.0
# No bus covers more than this between two fixes (108 km/h), plus slack for noise.
MAX_SPEED_MPS = 30.0
JUMP_SLACK_M = 80.0
# Within this distance before a stop the vehicle has reached it (GPS noise along the shape is
# ≤ 12 m); beyond this distance after it, it has left.
ARRIVE_M = 15.0
DEPART_M = 15.0
# Below this the vehicle is standing (m/s).
STANDING_MPS = 0.5
# A fix at exactly the last position but reporting more than this speed is a stale repeat.
STALE_SPEED_MPS = 1.0
# Points of the shape this much farther from a fix than the nearest are as good a match (GPS
# noise); where the shape passes the same place twice, the earliest along it wins.
FIRST_FIX_AMBIGUITY_M = 20.0
# On a change of trip, the old trip's last stops are completed by extrapolation only if the
# change comes within this long after the last good fix.
FINISH_WINDOW_S = 600.0


@dataclass(frozen=True, slots=True)
class Fix:
    ts: float  # epoch seconds
    lat: float
    lon: float
    speed_mps: float | None = None


@dataclass(frozen=True, slots=True)
class StopEvent:
    """A stop reached (arrived_at) and maybe left (departed_at), by index in the plan."""

    index: int
    arrived_at: float
    departed_at: float | None


@dataclass(slots=True)
class VehicleState:
    """Where one vehicle is along its current trip (one row of transit_vehicle_state)."""

    trip_id: str
    start_date: str  # YYYYMMDD
    last_ts: float
    fix_ts: float | None = None
    dist_m: float | None = None
    speed_mps: float = 0.0
    next_stop: int = 0
    at_stop: int | None = None
    at_stop_since: float | None = None
    last_dep_stop: int | None = None
    last_dep_ts: float | None = None
    off_route: bool = False
    trip_factor: float = 1.0
    trip_factor_var: float = 0.01
    # The last fix's distance from the shape (in the window), and the run of consecutive fixes
    # off route with the first one's time: the off-route alert reads these numbers.
    off_route_m: float | None = None
    off_route_fixes: int = 0
    off_route_since: float | None = None
    # Not stored: the segment run times (from index, seconds) completed by this step.
    runs: list[tuple[int, float, float]] = field(default_factory=list)


def first_position(plan: TripPlan, fix: Fix) -> tuple[float, float]:
    """(along_m, offset_m) of a vehicle seen for the first time on a trip: among the points of
    the shape about as close as the nearest, the earliest along it (a bus starting a loop is
    at its start, not its end)."""
    return plan.line.project_window(
        fix.lat, fix.lon, 0.0, plan.line.length_m, ambiguity_m=FIRST_FIX_AMBIGUITY_M
    )


def start(
    plan: TripPlan, trip_id: str, start_date: str, fix: Fix
) -> tuple[VehicleState, list[StopEvent]]:
    """The state of a vehicle first seen on a trip at `fix`."""
    state = VehicleState(trip_id=trip_id, start_date=start_date, last_ts=fix.ts)
    return state, _place(state, plan, fix)


def _place(state: VehicleState, plan: TripPlan, fix: Fix) -> list[StopEvent]:
    along, offset = first_position(plan, fix)
    if _off_route(state, fix, offset):
        return []
    state.dist_m, state.fix_ts = along, fix.ts
    state.speed_mps = fix.speed_mps or 0.0
    d = plan.stop_dist
    nxt = int(np.searchsorted(d, along - ARRIVE_M, side="left"))
    if nxt == 0 and along <= d[0] + DEPART_M:
        # Standing at the first stop: the trip has not begun. Its "arrival" is when it was
        # first seen there; its departure is what counts.
        state.next_stop, state.at_stop, state.at_stop_since = 1, 0, fix.ts
        return [StopEvent(0, fix.ts, None)]
    # Joined mid-trip (a restart without state, a late log-on): nothing is known of the stops
    # behind, and a stop it stands at now was reached at an unknown time, so start after it.
    state.next_stop = nxt + 1 if nxt < plan.stops and along >= d[nxt] - ARRIVE_M else nxt
    return []


def step(state: VehicleState, plan: TripPlan, fix: Fix) -> list[StopEvent]:
    """Advance `state` by one newer fix on the same trip; the stop events it reveals."""
    state.runs = []
    if fix.ts <= state.last_ts and state.dist_m is not None:
        return []  # a repeat or an older fix: the state has moved past it
    state.last_ts = max(state.last_ts, fix.ts)
    if state.dist_m is None or state.fix_ts is None:
        return _place(state, plan, fix)
    dt = fix.ts - state.fix_ts
    lo = state.dist_m - BACKWARD_TOLERANCE_M
    hi = state.dist_m + MAX_SPEED_MPS * dt + JUMP_SLACK_M
    along, offset = plan.line.project_window(
        fix.lat, fix.lon, lo, hi, ambiguity_m=FIRST_FIX_AMBIGUITY_M
    )
    if _off_route(state, fix, offset):
        return []
    if along == state.dist_m and (fix.speed_mps or 0.0) > STALE_SPEED_MPS:
        # The very same position again while the device says it moves: a frozen receiver
        # repeating its last fix. Treat it as no fix, so that the next real one is matched
        # against the time the bus was last truly seen.
        return []
    d1 = max(along, state.dist_m)
    v_pair = (d1 - state.dist_m) / dt if dt > 0 else 0.0
    v1 = fix.speed_mps if fix.speed_mps is not None else v_pair
    events = _advance(state, plan, state.fix_ts, state.dist_m, state.speed_mps, fix.ts, d1, v1)
    state.dist_m, state.fix_ts, state.speed_mps = d1, fix.ts, v1
    return events


def _off_route(state: VehicleState, fix: Fix, offset_m: float) -> bool:
    """Record the fix's distance from the shape; True (and counted) when it is off route."""
    state.off_route_m = offset_m
    state.off_route = offset_m > OFF_ROUTE_M
    if state.off_route:
        state.off_route_fixes += 1
        state.off_route_since = state.off_route_since or fix.ts
    else:
        state.off_route_fixes, state.off_route_since = 0, None
    return state.off_route


def finish(state: VehicleState, plan: TripPlan, until_ts: float) -> list[StopEvent]:
    """The vehicle moved on to another trip at `until_ts`: complete this trip's last stops if
    its last good fix was close enough (in distance at its speed, and in time) to reach them."""
    state.runs = []
    if state.dist_m is None or state.fix_ts is None or state.next_stop >= plan.stops:
        return []
    dt = until_ts - state.fix_ts
    end = float(plan.stop_dist[-1])
    remaining = end - state.dist_m
    speed = max(state.speed_mps, STANDING_MPS)
    if dt <= 0 or dt > FINISH_WINDOW_S or remaining > speed * dt + ARRIVE_M:
        return []
    t_end = min(until_ts, state.fix_ts + max(remaining, 0.0) / speed)
    return _advance(state, plan, state.fix_ts, state.dist_m, speed, t_end, end, 0.0)


def _advance(
    state: VehicleState,
    plan: TripPlan,
    t0: float,
    d0: float,
    v0: float,
    t1: float,
    d1: float,
    v1: float,
) -> list[StopEvent]:
    """Stop events between the good fixes (t0, d0, v0) and (t1, d1, v1)."""
    events: list[StopEvent] = []
    d = plan.stop_dist
    span = t1 - t0
    v_pair = (d1 - d0) / span if span > 0 else 0.0
    if state.at_stop is not None:
        a = state.at_stop
        if d1 <= d[a] + DEPART_M:
            return events  # still standing there
        # Left between the fixes: the distance beyond the stop at the speed after.
        v_after = max(v1, v_pair, STANDING_MPS)
        dep = min(max(t1 - (d1 - d[a]) / v_after, t0), t1)
        assert state.at_stop_since is not None
        events.append(StopEvent(a, state.at_stop_since, dep))
        state.last_dep_stop, state.last_dep_ts = a, dep
        state.at_stop = state.at_stop_since = None
        t0, d0, v0 = dep, float(d[a]), v_after
        span = t1 - t0
        v_pair = (d1 - d0) / span if span > 0 else v_after
    reached = []
    j = state.next_stop
    while j < plan.stops and d[j] <= d1 + ARRIVE_M:
        reached.append(j)
        j += 1
    if not reached:
        return events
    state.next_stop = j
    last = reached[-1]
    standing = d1 <= d[last] + DEPART_M
    v_before = max(v0, v_pair, STANDING_MPS)
    t_first = min(max(t0 + (d[reached[0]] - d0) / v_before, t0), t1)
    if standing:
        t_last = t1
    else:
        v_after = max(v1, v_pair, STANDING_MPS)
        t_last = min(max(t1 - (d1 - d[last]) / v_after, t_first), t1)
    moving = max(0.5 * (v_before + max(v1, v_pair)), STANDING_MPS)
    times = _share(t_first, t_last, [float(d[k]) for k in reached], moving, standing)
    for k, (arr, dep) in zip(reached, times, strict=True):
        if state.last_dep_stop == k - 1 and state.last_dep_ts is not None:
            state.runs.append((k - 1, state.last_dep_ts, arr))
        if dep is None:
            state.at_stop, state.at_stop_since = k, arr
        else:
            state.last_dep_stop, state.last_dep_ts = k, dep
        events.append(StopEvent(k, arr, dep))
    return events


def _share(
    t_first: float, t_last: float, dists: list[float], speed: float, standing: bool
) -> list[tuple[float, float | None]]:
    """(arrival, departure) for stops at `dists` passed between arriving at the first at
    `t_first` and leaving the last at `t_last` (or, if `standing`, standing at the last then):
    moving at `speed`, the time left over shared equally as dwells."""
    shares = len(dists)
    total = t_last - t_first
    run = (dists[-1] - dists[0]) / speed
    if run <= total:
        dwell, rate = (total - run) / shares, speed
    else:
        dwell = 0.0
        rate = (dists[-1] - dists[0]) / total if total > 0 else float("inf")
    out: list[tuple[float, float | None]] = []
    t = t_first
    for i, s in enumerate(dists):
        if i > 0:
            t += (s - dists[i - 1]) / rate if rate != float("inf") else 0.0
        arr = t
        if standing and i == shares - 1:
            out.append((arr, None))
        else:
            t += dwell
            out.append((arr, t))
    if not standing:
        # Rounding: the last departure is the one measured.
        arr, _ = out[-1]
        out[-1] = (min(arr, t_last), t_last)
    return out
