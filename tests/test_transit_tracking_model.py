"""The tracking model alone (no database): a route out and back along one street, so every
point of it is passed twice and the same stop is served on both passes."""

from __future__ import annotations

import math
from zoneinfo import ZoneInfo

import numpy as np

from smartcity.transit.geometry import EARTH_RADIUS_M, Polyline
from smartcity.transit.tracking import Fix, StopEvent, start, step
from smartcity.transit.trips import TripPlan

LAT0, LON0 = 42.3, 69.6
SPEED_MPS = 10.0
DWELL_S = 20.0


def _lon(x_m: float) -> float:
    return LON0 + math.degrees(x_m / (EARTH_RADIUS_M * math.cos(math.radians(LAT0))))


def _plan() -> TripPlan:
    # East 1000 m, then back west along the same street: the stops at 500 m and 0 m are served
    # twice (distances 500 and 1500, 0 and 2000 along the shape).
    xs = [0.0, 250.0, 500.0, 750.0, 1000.0, 750.0, 500.0, 250.0, 0.0]
    line = Polyline([LAT0] * len(xs), [_lon(x) for x in xs])
    times = np.array([0.0, 60.0, 130.0, 200.0, 270.0])
    return TripPlan(
        feed_id="test",
        version_id=1,
        trip_id="loop",
        route_id="r",
        line=line,
        stop_ids=("A", "B", "C", "B", "A"),
        stop_seq=(1, 2, 3, 4, 5),
        stop_dist=line.cum_m[[0, 2, 4, 6, 8]].copy(),
        arr_s=times,
        dep_s=times,
        tz=ZoneInfo("Asia/Almaty"),
    )


def _truth() -> tuple[list[float], list[float]]:
    """Arrival and departure times at each stop: leave A at 0, 10 m/s, dwell 20 s."""
    arr, dep = [0.0], [0.0]
    for _ in range(4):
        arr.append(dep[-1] + 500.0 / SPEED_MPS)
        dep.append(arr[-1] + DWELL_S)
    return arr, dep


def _x_at(t: float, arr: list[float], dep: list[float]) -> tuple[float, float]:
    """(distance along, speed) at time t."""
    for k in range(4):
        if t < arr[k + 1]:
            if t < dep[k]:
                return 500.0 * k, 0.0
            return 500.0 * k + SPEED_MPS * (t - dep[k]), SPEED_MPS
    return 2000.0, 0.0


def _street_x(d: float) -> float:
    return d if d <= 1000.0 else 2000.0 - d


def test_out_and_back_on_one_street_matches_each_pass() -> None:
    plan = _plan()
    arr, dep = _truth()
    rng = np.random.default_rng(1)
    fixes = []
    for t in np.arange(0.0, arr[-1] + 15.0, 10.0):
        d, v = _x_at(float(t), arr, dep)
        noise = rng.normal(0, 3.0)
        fixes.append(Fix(float(t), LAT0, _lon(_street_x(d) + noise), v))
    state, events = start(plan, "loop", "20261123", fixes[0])
    for f in fixes[1:]:
        events += step(state, plan, f)
    reached = {e.index: e for e in events}
    assert sorted(reached) == [0, 1, 2, 3, 4]
    for k in range(1, 5):
        assert abs(reached[k].arrived_at - arr[k]) <= 3.0, (k, reached[k], arr[k])
    for k in range(1, 4):
        departed = reached[k].departed_at
        assert departed is not None
        assert abs(departed - dep[k]) <= 3.0
    # Stop B inbound (index 3) was not taken for B outbound, nor the other way round.
    assert reached[3].arrived_at - reached[1].arrived_at > 100.0


def test_a_jump_ahead_and_a_fix_behind_do_not_move_the_bus() -> None:
    plan = _plan()
    state, _ = start(plan, "loop", "20261123", Fix(0.0, LAT0, _lon(0.0), 0.0))
    step(state, plan, Fix(10.0, LAT0, _lon(100.0), SPEED_MPS))
    assert state.dist_m is not None
    assert abs(state.dist_m - 100.0) < 5.0
    # 10 s later the same street 900 m on: farther than a bus can go, so it is no match.
    events = step(state, plan, Fix(20.0, LAT0, _lon(1000.0), SPEED_MPS))
    assert events == []
    assert abs(state.dist_m - 100.0) < 5.0
    assert state.off_route
    # A fix a little behind (noise while standing) leaves the distance where it was.
    step(state, plan, Fix(30.0, LAT0, _lon(90.0), 0.0))
    assert abs(state.dist_m - 100.0) < 5.0
    assert not state.off_route


def test_a_dropout_over_a_stop_is_interpolated() -> None:
    plan = _plan()
    arr, dep = _truth()
    state, _ = start(plan, "loop", "20261123", Fix(0.0, LAT0, _lon(0.0), 0.0))
    step(state, plan, Fix(10.0, LAT0, _lon(100.0), SPEED_MPS))
    # Nothing from 10 s to 100 s: the bus reached B at 50, left it at 70, is at 800 m at 100.
    events = step(state, plan, Fix(100.0, LAT0, _lon(800.0), SPEED_MPS))
    assert events == [StopEvent(1, events[0].arrived_at, events[0].departed_at)]
    assert abs(events[0].arrived_at - arr[1]) <= 1.0
    assert events[0].departed_at is not None
    assert abs(events[0].departed_at - dep[1]) <= 1.0
