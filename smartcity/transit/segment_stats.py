"""Learned run and dwell times (tables of migration 33): read, added to, rebuilt.

The tracker adds each segment it sees a vehicle run (departure from one stop to arrival at
the next) and each dwell, in the transaction that records them (`add`). `rebuild` recomputes a
feed's sums from `stop_arrivals` (after loading history, or to forget old behaviour). The
predictor reads them through `StatsCache`, which reloads a feed's sums every `reload_s`.

Lookup falls back from the most specific to the schedule: the segment at this hour of the
week (≥ `MIN_SAMPLES` observations), the segment at this hour of any day, then the schedule.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import psycopg
from psycopg import sql

from smartcity.transit.trips import TripPlan

# Fewer observations than this are not trusted as a mean (one odd trip would be the answer).
MIN_SAMPLES = 3
# Spread of a run time the schedule gives (no history): 15 % of it, one sigma.
SCHEDULE_RUN_REL_SD = 0.15
# Spread of a dwell without history (s, one sigma).
SCHEDULE_DWELL_SD_S = 12.0
# The smallest relative spread believed for a learned run time (a few samples can agree by
# chance).
MIN_RUN_REL_SD = 0.05

Sums = tuple[float, float, float]  # n, sum, sum of squares
_K = TypeVar("_K", tuple[str, int], tuple[str, str, int])


@dataclass(frozen=True, slots=True)
class Expected:
    mean_s: float
    var_s2: float
    learned: bool


def _moments(s: Sums) -> tuple[float, float]:
    n, total, sq = s
    mean = total / n
    return mean, max(sq / n - mean * mean, 0.0)


class SegmentStats:
    """One feed's sums, indexed for lookup by hour of week and by hour of day."""

    def __init__(
        self,
        runs: dict[tuple[str, str, int], Sums],
        dwells: dict[tuple[str, int], Sums],
    ) -> None:
        self.runs = runs
        self.dwells = dwells
        self.runs_hod: dict[tuple[str, str, int], Sums] = _by_hour_of_day(runs)
        self.dwells_hod: dict[tuple[str, int], Sums] = _by_hour_of_day(dwells)

    @classmethod
    def empty(cls) -> SegmentStats:
        return cls({}, {})

    def run(self, plan: TripPlan, k: int, how: int) -> Expected:
        """Run time from stop k-1 to stop k of `plan`, leaving at hour of week `how`."""
        a, b = plan.stop_ids[k - 1], plan.stop_ids[k]
        for sums in (self.runs.get((a, b, how)), self.runs_hod.get((a, b, how % 24))):
            if sums is not None and sums[0] >= MIN_SAMPLES:
                mean, var = _moments(sums)
                return Expected(mean, max(var, (MIN_RUN_REL_SD * mean) ** 2), True)
        sched = max(float(plan.arr_s[k] - plan.dep_s[k - 1]), 1.0)
        return Expected(sched, (SCHEDULE_RUN_REL_SD * sched) ** 2, False)

    def dwell(self, plan: TripPlan, k: int, how: int) -> Expected:
        """Dwell at stop k of `plan`, arriving at hour of week `how`."""
        stop = plan.stop_ids[k]
        for sums in (self.dwells.get((stop, how)), self.dwells_hod.get((stop, how % 24))):
            if sums is not None and sums[0] >= MIN_SAMPLES:
                mean, var = _moments(sums)
                return Expected(mean, var, True)
        sched = max(float(plan.dep_s[k] - plan.arr_s[k]), 0.0)
        return Expected(sched, SCHEDULE_DWELL_SD_S**2, False)


def _by_hour_of_day(sums: dict[_K, Sums]) -> dict[_K, Sums]:
    """The same sums with the hour of week folded into the hour of day (the key's last part)."""
    out: dict[tuple[object, ...], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for key, (n, total, sq) in sums.items():
        parts: tuple[object, ...] = key
        acc = out[(*parts[:-1], int(str(parts[-1])) % 24)]
        acc[0] += n
        acc[1] += total
        acc[2] += sq
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}  # type: ignore[misc]


def load(conn: psycopg.Connection[tuple[object, ...]], feed_id: str) -> SegmentStats:
    runs = {
        (str(r[0]), str(r[1]), int(r[2])): (float(r[3]), float(r[4]), float(r[5]))  # type: ignore[arg-type, call-overload]
        for r in conn.execute(
            """
            SELECT from_stop_id, to_stop_id, hour_of_week, n, run_sum_s, run_sq_sum_s
            FROM transit_segment_stats WHERE feed_id = %s
            """,
            (feed_id,),
        )
    }
    dwells = {
        (str(r[0]), int(r[1])): (float(r[2]), float(r[3]), float(r[4]))  # type: ignore[arg-type, call-overload]
        for r in conn.execute(
            """
            SELECT stop_id, hour_of_week, n, dwell_sum_s, dwell_sq_sum_s
            FROM transit_dwell_stats WHERE feed_id = %s
            """,
            (feed_id,),
        )
    }
    return SegmentStats(runs, dwells)


class StatsCache:
    """Each feed's stats, reloaded when older than `reload_s` (the sums change slowly: a few
    more observations per segment per hour)."""

    def __init__(self, reload_s: float) -> None:
        self.reload_s = reload_s
        self._cache: dict[str, tuple[SegmentStats, float]] = {}

    def get(self, conn: psycopg.Connection[tuple[object, ...]], feed_id: str) -> SegmentStats:
        hit = self._cache.get(feed_id)
        now = time.monotonic()
        if hit is None or now - hit[1] >= self.reload_s:
            hit = (load(conn, feed_id), now)
            self._cache[feed_id] = hit
        return hit[0]


def add(
    conn: psycopg.Connection[tuple[object, ...]],
    feed_id: str,
    runs: dict[tuple[str, str, int], list[float]],
    dwells: dict[tuple[str, int], list[float]],
) -> None:
    """Add observed run times (from stop, to stop, hour of week) and dwells (stop, hour)."""
    with conn.cursor() as cur:
        if runs:
            cur.executemany(
                """
                INSERT INTO transit_segment_stats AS s VALUES (%s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (feed_id, from_stop_id, to_stop_id, hour_of_week) DO UPDATE SET
                    n = s.n + EXCLUDED.n,
                    run_sum_s = s.run_sum_s + EXCLUDED.run_sum_s,
                    run_sq_sum_s = s.run_sq_sum_s + EXCLUDED.run_sq_sum_s
                """,
                [
                    (feed_id, a, b, how, len(v), sum(v), sum(x * x for x in v))
                    for (a, b, how), v in sorted(runs.items())
                ],
            )
        if dwells:
            cur.executemany(
                """
                INSERT INTO transit_dwell_stats AS s VALUES (%s, %s, %s, %s, %s, %s)
                ON CONFLICT (feed_id, stop_id, hour_of_week) DO UPDATE SET
                    n = s.n + EXCLUDED.n,
                    dwell_sum_s = s.dwell_sum_s + EXCLUDED.dwell_sum_s,
                    dwell_sq_sum_s = s.dwell_sq_sum_s + EXCLUDED.dwell_sq_sum_s
                """,
                [
                    (feed_id, stop, how, len(v), sum(v), sum(x * x for x in v))
                    for (stop, how), v in sorted(dwells.items())
                ],
            )


def hour_of_week(t: sql.Composable, tz: sql.Composable | None = None) -> sql.Composable:
    """SQL: hour of week (0 = Monday 00:00 local) of the instant `t` in time zone `tz`
    (default: the parameter %(tz)s). The transit rollups use it too (`smartcity.rollups`)."""
    return sql.SQL(
        "((extract(isodow FROM {t} AT TIME ZONE {tz}) - 1) * 24"
        " + extract(hour FROM {t} AT TIME ZONE {tz}))::smallint"
    ).format(t=t, tz=sql.Placeholder("tz") if tz is None else tz)


# A feed's arrivals since %(since)s, each with the next stop of its trip visit.
_ORDERED = sql.SQL(
    """
    SELECT stop_id, arrived_at, departed_at,
           lead(stop_id) OVER w AS next_stop, lead(arrived_at) OVER w AS next_arrival,
           row_number() OVER w AS nth
    FROM stop_arrivals
    WHERE feed_id = %(feed)s AND arrived_at >= %(since)s
    WINDOW w AS (PARTITION BY trip_id, start_date ORDER BY stop_sequence)
    """
)


def rebuild(
    conn: psycopg.Connection[tuple[object, ...]], feed_id: str, tz: str, since: datetime
) -> None:
    """Recompute `feed_id`'s sums from its stop arrivals since `since` (in the caller's
    transaction). `tz` is the feed's agency time zone, for the hour of week."""
    params = {"feed": feed_id, "tz": tz, "since": since}
    conn.execute("DELETE FROM transit_segment_stats WHERE feed_id = %(feed)s", params)
    conn.execute("DELETE FROM transit_dwell_stats WHERE feed_id = %(feed)s", params)
    conn.execute(
        sql.SQL(
            """
            INSERT INTO transit_segment_stats
            SELECT %(feed)s, stop_id, next_stop, {how}, count(*), sum(run), sum(run * run)
            FROM (SELECT *, extract(epoch FROM next_arrival - departed_at) AS run
                  FROM ({ordered}) o) r
            WHERE next_stop IS NOT NULL AND departed_at IS NOT NULL AND run > 0
            GROUP BY 2, 3, 4
            """
        ).format(how=hour_of_week(sql.Identifier("departed_at")), ordered=_ORDERED),
        params,
    )
    # Dwells at intermediate stops only: at the first the bus waits for its time, at the last
    # it does not leave on this trip.
    conn.execute(
        sql.SQL(
            """
            INSERT INTO transit_dwell_stats
            SELECT %(feed)s, stop_id, {how}, count(*), sum(dwell), sum(dwell * dwell)
            FROM (SELECT *, extract(epoch FROM departed_at - arrived_at) AS dwell
                  FROM ({ordered}) o) r
            WHERE nth > 1 AND next_stop IS NOT NULL AND departed_at IS NOT NULL AND dwell >= 0
            GROUP BY 2, 3
            """
        ).format(how=hour_of_week(sql.Identifier("arrived_at")), ordered=_ORDERED),
        params,
    )
