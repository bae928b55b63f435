"""Arrival predictions for a tracked trip: where the bus is now, plus what the rest takes.

For each stop ahead (docs/transit.md, "Prediction"):

    arrival(k) = position time + rest of the current segment (or of the current dwell)
                 + Σ f · run(j) over the segments up to k + Σ dwell(j) at the stops between

`run(j)` and `dwell(j)` are the learned means at the hour of the week the bus will be there
(`segment_stats`; the schedule's times when there is no history — then this is the schedule
shifted by the current delay, the delay carried forward whole). `f` is this trip's running
factor: how much slower or faster than expected it has run so far, a scalar Kalman filter
(`update_factor`) updated at every completed segment, so a trip caught in traffic is expected
to stay slow and the current delay grows or shrinks along the way instead of being copied.

Uncertainty (one sigma) adds, as independent parts: the variance of each run and dwell on the
way (so it grows with the number of stops ahead), the factor's own variance times the square of
the run time ahead (so it grows with distance), and the age of the position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from smartcity.transit.segment_stats import SegmentStats
from smartcity.transit.tracking import VehicleState
from smartcity.transit.trips import TripPlan

# The trip factor's prior: expected runs are right on average, ±10 % for a trip (one sigma).
FACTOR_PRIOR_VAR = 0.01
# How much the factor may drift between segments (variance added per update): traffic changes.
FACTOR_PROCESS_VAR = 0.0004
# A single segment's run relative to its mean varies by at least this (one sigma).
SEGMENT_REL_SD_MIN = 0.08
FACTOR_BOUNDS = (0.5, 2.5)
# Once the expected dwell has passed, the bus is expected to leave within this (s).
MIN_REMAINING_DWELL_S = 3.0
# A position this old (s) stops being trusted to the second: its age adds to the uncertainty.
FRESH_S = 20.0


@dataclass(frozen=True, slots=True)
class Prediction:
    index: int  # in the plan's stop order
    arrival: float  # epoch seconds
    uncertainty_s: float
    scheduled: float


def update_factor(state: VehicleState, plan: TripPlan, stats: SegmentStats) -> None:
    """Fold the segments the last step completed (`state.runs`) into the trip factor."""
    for k_from, dep, arr in state.runs:
        exp = stats.run(plan, k_from + 1, plan.hour_of_week(dep))
        if exp.mean_s <= 0:
            continue
        ratio = (arr - dep) / exp.mean_s
        rel_var = max(exp.var_s2 / exp.mean_s**2, SEGMENT_REL_SD_MIN**2)
        p = state.trip_factor_var + FACTOR_PROCESS_VAR
        gain = p / (p + rel_var)
        f = state.trip_factor + gain * (ratio - state.trip_factor)
        state.trip_factor = min(max(f, FACTOR_BOUNDS[0]), FACTOR_BOUNDS[1])
        state.trip_factor_var = (1.0 - gain) * p


def predict(
    state: VehicleState, plan: TripPlan, origin: float, stats: SegmentStats, now: float
) -> list[Prediction]:
    """Predicted arrival at every stop the vehicle has not reached; `origin` is the trip's
    service day time 00:00 in epoch seconds (`TripPlan.origin`)."""
    if state.dist_m is None or state.fix_ts is None:
        return []
    n = plan.stops
    d = plan.stop_dist
    f = state.trip_factor
    t = state.fix_ts
    var = 0.0
    run_ahead = 0.0  # expected run seconds between the position and the stop
    age = max(now - state.fix_ts, 0.0)
    age_var = max(age - FRESH_S, 0.0) ** 2
    out: list[Prediction] = []

    def emit(k: int) -> None:
        sd = math.sqrt(var + state.trip_factor_var * run_ahead**2 + age_var)
        out.append(Prediction(k, max(t, now), sd, origin + float(plan.arr_s[k])))

    if state.at_stop is not None:
        a = state.at_stop
        if a >= n - 1:
            return []  # at the last stop: the trip is over
        if a == 0:
            # At the first stop the bus leaves at its time, or now if it is already late.
            t = max(origin + float(plan.dep_s[0]), t)
        else:
            dwell = stats.dwell(plan, a, plan.hour_of_week(t))
            stood = t - (state.at_stop_since or t)
            t += max(dwell.mean_s - stood, MIN_REMAINING_DWELL_S)
            var += dwell.var_s2
        k = a + 1
    else:
        k = state.next_stop
        if k >= n:
            return []
        if k == 0:
            # Not yet at the first stop (pulling out of the depot): an assumed 8 m/s.
            t += max(float(d[0]) - state.dist_m, 0.0) / 8.0
        else:
            exp = stats.run(plan, k, plan.hour_of_week(t))
            seg = max(float(d[k] - d[k - 1]), 1.0)
            left = min(max((float(d[k]) - state.dist_m) / seg, 0.0), 1.0)
            rest = left * exp.mean_s * f
            if state.last_dep_stop == k - 1 and state.last_dep_ts is not None:
                # Part of the segment is behind: its pace says more than the average does.
                moving = state.fix_ts - state.last_dep_ts
                covered = seg * (1.0 - left)
                if moving > 5.0 and covered > 0.0:
                    observed = seg * left / (covered / moving)
                    rest = (1.0 - left) * observed + left * rest
            t += rest
            var += left**2 * exp.var_s2 * f**2
            run_ahead += left * exp.mean_s
        emit(k)
        if k < n - 1:
            dwell = stats.dwell(plan, k, plan.hour_of_week(t))
            t += dwell.mean_s
            var += dwell.var_s2
        k += 1
    for j in range(k, n):
        exp = stats.run(plan, j, plan.hour_of_week(t))
        t += exp.mean_s * f
        var += exp.var_s2 * f**2
        run_ahead += exp.mean_s
        emit(j)
        if j < n - 1:
            dwell = stats.dwell(plan, j, plan.hour_of_week(t))
            t += dwell.mean_s
            var += dwell.var_s2
    return out
