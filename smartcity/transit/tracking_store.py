"""The tracker against the database: a batch of positions in, stop arrivals and predictions out.

`Tracker.process` runs one transaction per batch:

1. lock the state rows of the batch's vehicles (`transit_vehicle_state`, migration 32) —
   `SELECT … FOR UPDATE` in (city, vehicle) order, so ingest workers sharing a subscription
   take turns on a vehicle instead of losing each other's updates, and a restarted worker goes
   on where the last one stopped;
2. advance each vehicle with its fixes in time order (`tracking.step`; a fix no newer than the
   state is a repeat — a redelivered batch changes nothing);
3. upsert the stop events into `stop_arrivals` (ON CONFLICT on the stop visit: the same visit
   seen twice keeps one row), add the observed run and dwell times to the learned sums;
4. replace the vehicles' rows in `transit_predictions` by fresh predictions (`predict`), and
   keep a sample of them for the ETA-accuracy KPI (`transit_eta_samples`, migration 11: for
   `eta_sample_pct` % of trips, chosen by a hash of the trip, one prediction per stop visit
   and horizon bucket — the one made nearest the bucket's middle — so at most four rows per
   sampled visit);
5. write the states back.

Readers therefore never see arrivals without the state that produced them, or a trip's
predictions half replaced. A vehicle's trip comes from its fixes (`trip_id`, `start_date`);
its feed is the one named after its city (the active version).
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import psycopg
import structlog
from psycopg import sql

from smartcity.transit import segment_stats
from smartcity.transit.eta_accuracy import BUCKETS, bucket_middle_s, bucket_of
from smartcity.transit.predict import predict, update_factor
from smartcity.transit.segment_stats import StatsCache
from smartcity.transit.tracking import Fix, StopEvent, VehicleState, finish, start, step
from smartcity.transit.trips import TripCache, TripPlan

log = structlog.get_logger("smartcity.transit.tracking")

# A fix without start_date belongs to the service day on which its trip runs at that time,
# with this much slack before the first departure and after the last arrival (s).
_SERVICE_DAY_SLACK_S = 3600.0

_STATE_COLUMNS = (
    "city, vehicle_id, feed_id, trip_id, start_date, route_id, last_ts, fix_ts, dist_m,"
    " speed_mps, next_stop, at_stop, at_stop_since, last_dep_stop, last_dep_ts, off_route,"
    " trip_factor, trip_factor_var"
)

# A departure found later fills in the visit's row; a visit seen again (the same fixes twice)
# keeps its first departure rather than losing it. detected_at marks the row for the rollups.
ARRIVALS_UPSERT = """
    INSERT INTO stop_arrivals AS a (feed_id, trip_id, start_date, stop_sequence,
        stop_id, route_id, vehicle_id, city, arrived_at, departed_at, scheduled_arrival)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (feed_id, trip_id, start_date, stop_sequence) DO UPDATE SET
        vehicle_id = EXCLUDED.vehicle_id,
        arrived_at = EXCLUDED.arrived_at,
        departed_at = coalesce(EXCLUDED.departed_at, a.departed_at),
        detected_at = now()
"""

# Keeps, per visit and horizon bucket, the prediction made nearest the bucket's middle.
_HORIZON = "extract(epoch FROM {t}.predicted_arrival - {t}.made_at)"
_MIDDLE = sql.SQL("CASE EXCLUDED.horizon {} END").format(
    sql.SQL(" ").join(
        sql.SQL("WHEN {} THEN {}").format(sql.Literal(b[0]), sql.Literal(bucket_middle_s(b[0])))
        for b in BUCKETS
    )
)
ETA_SAMPLE_UPSERT = sql.SQL(
    """
    INSERT INTO transit_eta_samples AS s (feed_id, trip_id, start_date, stop_sequence, horizon,
        city, route_id, made_at, predicted_arrival)
    SELECT * FROM unnest(%s::text[], %s::text[], %s::date[], %s::int[], %s::text[], %s::text[],
                         %s::text[], %s::timestamptz[], %s::timestamptz[])
    ON CONFLICT (feed_id, trip_id, start_date, stop_sequence, horizon) DO UPDATE SET
        made_at = EXCLUDED.made_at, predicted_arrival = EXCLUDED.predicted_arrival
    WHERE abs({new} - {mid}) < abs({old} - {mid})
    """
).format(
    new=sql.SQL(_HORIZON.format(t="EXCLUDED")), old=sql.SQL(_HORIZON.format(t="s")), mid=_MIDDLE
)


def sampled(trip_id: str, start_date: date, pct: float) -> bool:
    """Whether the trip's predictions are sampled: a stable hash, so every worker agrees."""
    return zlib.crc32(f"{trip_id}/{start_date:%Y%m%d}".encode()) % 10_000 < pct * 100


@dataclass(frozen=True, slots=True)
class Position:
    """A committed GPS fix, as the tracker needs it."""

    vehicle_id: str
    city: str
    ts: float  # epoch seconds
    trip_id: str | None
    start_date: str | None  # YYYYMMDD
    lat: float
    lon: float
    speed_mps: float | None = None


@dataclass(slots=True)
class TrackResult:
    fixes: int = 0
    stop_events: int = 0
    predictions: int = 0
    unknown_trips: int = 0


def _epoch(value: object) -> float | None:
    return value.timestamp() if isinstance(value, datetime) else None


def _instant(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _ymd(day: date) -> str:
    return day.strftime("%Y%m%d")


def _day(ymd: str) -> date:
    return date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:8]))


class Tracker:
    """Trip plans and learned stats cached in memory; state in the database. One per ingest
    worker (not thread-safe)."""

    def __init__(self, *, stats_reload_s: float = 300.0, eta_sample_pct: float = 10.0) -> None:
        self.trips = TripCache()
        self.stats = StatsCache(stats_reload_s)
        self.eta_sample_pct = eta_sample_pct

    def process(
        self,
        conn: psycopg.Connection[tuple[object, ...]],
        positions: Sequence[Position],
        now: float,
    ) -> TrackResult:
        """Track `positions` (any order, any vehicles) in one transaction; `now` (epoch s) is
        the predictions' `made_at`."""
        result = TrackResult()
        by_vehicle: dict[tuple[str, str], list[Position]] = defaultdict(list)
        for p in positions:
            by_vehicle[(p.city, p.vehicle_id)].append(p)
        if not by_vehicle:
            return result
        keys = sorted(by_vehicle)
        with conn.transaction():
            states = self._lock(conn, keys)
            arrivals: list[tuple[object, ...]] = []
            runs: dict[str, dict[tuple[str, str, int], list[float]]] = defaultdict(dict)
            dwells: dict[str, dict[tuple[str, int], list[float]]] = defaultdict(dict)
            saved: list[tuple[object, ...]] = []
            predicted: list[tuple[object, ...]] = []
            for city, vehicle_id in keys:
                state = states.get((city, vehicle_id))
                plan = self.trips.plan(conn, city, state.trip_id) if state else None
                for p in sorted(by_vehicle[(city, vehicle_id)], key=lambda p: p.ts):
                    result.fixes += 1
                    if p.trip_id is None:
                        continue  # not in service
                    fix = Fix(p.ts, p.lat, p.lon, p.speed_mps)
                    new_plan = plan
                    if state is None or plan is None or state.trip_id != p.trip_id:
                        new_plan = self.trips.plan(conn, city, p.trip_id)
                        if new_plan is None:
                            result.unknown_trips += 1
                            continue
                    assert new_plan is not None
                    day = p.start_date or self._service_day(new_plan, p.ts)
                    if (
                        state is not None
                        and plan is not None
                        and (
                            state.trip_id,
                            state.start_date,
                        )
                        == (p.trip_id, day)
                    ):
                        events = step(state, plan, fix)
                    else:
                        if state is not None and p.ts <= state.last_ts:
                            continue  # older than what the vehicle did since
                        if state is not None and plan is not None:
                            events = finish(state, plan, p.ts)
                            self._collect(state, plan, events, city, vehicle_id, arrivals)
                            self._learn(conn, state, plan, events, runs, dwells)
                        state, events = start(new_plan, p.trip_id, day, fix)
                        plan = new_plan
                    self._collect(state, plan, events, city, vehicle_id, arrivals)
                    self._learn(conn, state, plan, events, runs, dwells)
                if state is None or plan is None:
                    continue
                saved.append(self._row(state, plan, city, vehicle_id))
                origin = plan.origin(_day(state.start_date))
                stats = self.stats.get(conn, plan.feed_id)
                for pr in predict(state, plan, origin, stats, now):
                    predicted.append(
                        (
                            plan.feed_id,
                            plan.trip_id,
                            _day(state.start_date),
                            plan.stop_seq[pr.index],
                            plan.stop_ids[pr.index],
                            plan.route_id,
                            vehicle_id,
                            city,
                            _instant(pr.arrival),
                            pr.uncertainty_s,
                            _instant(pr.scheduled),
                            _instant(now),
                            _instant(state.fix_ts),
                        )
                    )
            self._write(conn, keys, arrivals, runs, dwells, saved, predicted)
            self._sample(conn, predicted)
        result.stop_events = len(arrivals)
        result.predictions = len(predicted)
        return result

    # -- steps ------------------------------------------------------------------------------------

    def _lock(
        self, conn: psycopg.Connection[tuple[object, ...]], keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], VehicleState]:
        rows = conn.execute(
            f"""
            SELECT {_STATE_COLUMNS}, o.off_route_m, coalesce(o.off_route_fixes, 0),
                   o.off_route_since
            FROM transit_vehicle_state LEFT JOIN transit_off_route o USING (city, vehicle_id)
            WHERE (city, vehicle_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
            ORDER BY city, vehicle_id
            FOR UPDATE OF transit_vehicle_state
            """,  # noqa: S608 - a constant column list
            ([k[0] for k in keys], [k[1] for k in keys]),
        ).fetchall()
        out: dict[tuple[str, str], VehicleState] = {}
        for r in rows:
            start_date = r[4]
            assert isinstance(start_date, date)
            last_ts = _epoch(r[6])
            assert last_ts is not None
            out[(str(r[0]), str(r[1]))] = VehicleState(
                trip_id=str(r[3]),
                start_date=_ymd(start_date),
                last_ts=last_ts,
                fix_ts=_epoch(r[7]),
                dist_m=None if r[8] is None else float(r[8]),  # type: ignore[arg-type]
                speed_mps=float(r[9]),  # type: ignore[arg-type]
                next_stop=int(r[10]),  # type: ignore[call-overload]
                at_stop=None if r[11] is None else int(r[11]),  # type: ignore[call-overload]
                at_stop_since=_epoch(r[12]),
                last_dep_stop=None if r[13] is None else int(r[13]),  # type: ignore[call-overload]
                last_dep_ts=_epoch(r[14]),
                off_route=bool(r[15]),
                trip_factor=float(r[16]),  # type: ignore[arg-type]
                trip_factor_var=float(r[17]),  # type: ignore[arg-type]
                off_route_m=None if r[18] is None else float(r[18]),  # type: ignore[arg-type]
                off_route_fixes=int(r[19]),  # type: ignore[call-overload]
                off_route_since=_epoch(r[20]),
            )
        return out

    @staticmethod
    def _service_day(plan: TripPlan, ts: float) -> str:
        local = datetime.fromtimestamp(ts, plan.tz).date()
        for day in (local, local - timedelta(days=1)):
            origin = plan.origin(day)
            first = origin + float(plan.dep_s[0]) - _SERVICE_DAY_SLACK_S
            last = origin + float(plan.arr_s[-1]) + _SERVICE_DAY_SLACK_S
            if first <= ts <= last:
                return _ymd(day)
        return _ymd(local)

    @staticmethod
    def _collect(
        state: VehicleState,
        plan: TripPlan,
        events: list[StopEvent],
        city: str,
        vehicle_id: str,
        out: list[tuple[object, ...]],
    ) -> None:
        if not events:
            return
        day = _day(state.start_date)
        origin = plan.origin(day)
        for e in events:
            out.append(
                (
                    plan.feed_id,
                    plan.trip_id,
                    day,
                    plan.stop_seq[e.index],
                    plan.stop_ids[e.index],
                    plan.route_id,
                    vehicle_id,
                    city,
                    _instant(e.arrived_at),
                    _instant(e.departed_at),
                    _instant(origin + float(plan.arr_s[e.index])),
                )
            )

    def _learn(
        self,
        conn: psycopg.Connection[tuple[object, ...]],
        state: VehicleState,
        plan: TripPlan,
        events: list[StopEvent],
        runs: dict[str, dict[tuple[str, str, int], list[float]]],
        dwells: dict[str, dict[tuple[str, int], list[float]]],
    ) -> None:
        feed_runs, feed_dwells = runs[plan.feed_id], dwells[plan.feed_id]
        for k_from, dep, arr in state.runs:
            key = (plan.stop_ids[k_from], plan.stop_ids[k_from + 1], plan.hour_of_week(dep))
            feed_runs.setdefault(key, []).append(arr - dep)
        for e in events:
            if e.departed_at is not None and 0 < e.index < plan.stops - 1:
                dkey = (plan.stop_ids[e.index], plan.hour_of_week(e.arrived_at))
                feed_dwells.setdefault(dkey, []).append(e.departed_at - e.arrived_at)
        if state.runs:
            update_factor(state, plan, self.stats.get(conn, plan.feed_id))

    def _sample(
        self, conn: psycopg.Connection[tuple[object, ...]], predicted: list[tuple[object, ...]]
    ) -> None:
        """Keep the predictions of sampled trips that fall in a horizon bucket (the rows of
        `predicted`, one per stop visit: see `_write`)."""
        cols: list[list[object]] = [[] for _ in range(9)]
        seen: set[tuple[object, ...]] = set()
        for r in reversed(predicted):  # `_write` keeps the last of a trip's duplicates
            trip_id, start_date, arrival, made_at = r[1], r[2], r[8], r[11]
            assert isinstance(start_date, date)
            assert isinstance(arrival, datetime)
            assert isinstance(made_at, datetime)
            label = bucket_of((arrival - made_at).total_seconds())
            if label is None or not sampled(str(trip_id), start_date, self.eta_sample_pct):
                continue
            key = (r[0], trip_id, start_date, r[3])
            if key in seen:
                continue  # a trip claimed by two vehicles: `_write` kept one of them
            seen.add(key)
            for col, value in zip(
                cols,
                (r[0], trip_id, start_date, r[3], label, r[7], r[5], made_at, arrival),
                strict=True,
            ):
                col.append(value)
        if cols[0]:
            conn.execute(ETA_SAMPLE_UPSERT, cols)

    @staticmethod
    def _row(state: VehicleState, plan: TripPlan, city: str, vehicle_id: str) -> tuple[object, ...]:
        return (
            city,
            vehicle_id,
            plan.feed_id,
            state.trip_id,
            _day(state.start_date),
            plan.route_id,
            _instant(state.last_ts),
            _instant(state.fix_ts),
            state.dist_m,
            state.speed_mps,
            state.next_stop,
            state.at_stop,
            _instant(state.at_stop_since),
            state.last_dep_stop,
            _instant(state.last_dep_ts),
            state.off_route,
            state.trip_factor,
            state.trip_factor_var,
            # transit_off_route (the off-route alert's numbers), split off in `_write`
            state.off_route_m,
            state.off_route_fixes,
            _instant(state.off_route_since),
        )

    @staticmethod
    def _write(
        conn: psycopg.Connection[tuple[object, ...]],
        keys: list[tuple[str, str]],
        arrivals: list[tuple[object, ...]],
        runs: dict[str, dict[tuple[str, str, int], list[float]]],
        dwells: dict[str, dict[tuple[str, int], list[float]]],
        saved: list[tuple[object, ...]],
        predicted: list[tuple[object, ...]],
    ) -> None:
        with conn.cursor() as cur:
            if arrivals:
                # A departure found later fills in the visit's row; a visit seen again (the
                # same fixes twice) keeps its first departure rather than losing it.
                cur.executemany(ARRIVALS_UPSERT, arrivals)
            for feed_id in sorted(set(runs) | set(dwells)):
                segment_stats.add(conn, feed_id, runs.get(feed_id, {}), dwells.get(feed_id, {}))
            if saved:
                cur.executemany(
                    f"""
                    INSERT INTO transit_vehicle_state ({_STATE_COLUMNS})
                    VALUES ({", ".join(["%s"] * 18)})
                    ON CONFLICT (city, vehicle_id) DO UPDATE SET
                        feed_id = EXCLUDED.feed_id, trip_id = EXCLUDED.trip_id,
                        start_date = EXCLUDED.start_date, route_id = EXCLUDED.route_id,
                        last_ts = EXCLUDED.last_ts, fix_ts = EXCLUDED.fix_ts,
                        dist_m = EXCLUDED.dist_m, speed_mps = EXCLUDED.speed_mps,
                        next_stop = EXCLUDED.next_stop, at_stop = EXCLUDED.at_stop,
                        at_stop_since = EXCLUDED.at_stop_since,
                        last_dep_stop = EXCLUDED.last_dep_stop,
                        last_dep_ts = EXCLUDED.last_dep_ts, off_route = EXCLUDED.off_route,
                        trip_factor = EXCLUDED.trip_factor,
                        trip_factor_var = EXCLUDED.trip_factor_var, updated_at = now()
                    """,  # noqa: S608 - constant column list and placeholders
                    [row[:18] for row in saved],
                )
                cur.executemany(
                    """
                    INSERT INTO transit_off_route (city, vehicle_id, off_route_m,
                        off_route_fixes, off_route_since)
                    VALUES (%s, %s, %s, %s, %s)
                    ON CONFLICT (city, vehicle_id) DO UPDATE SET
                        off_route_m = EXCLUDED.off_route_m,
                        off_route_fixes = EXCLUDED.off_route_fixes,
                        off_route_since = EXCLUDED.off_route_since
                    """,
                    [(row[0], row[1], *row[18:]) for row in saved],
                )
            # Replace the vehicles' predictions: a vehicle that changed trip or finished one
            # loses the old trip's rows in the same transaction.
            cur.execute(
                """
                DELETE FROM transit_predictions
                WHERE (city, vehicle_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
                """,
                ([k[0] for k in keys], [k[1] for k in keys]),
            )
            # A trip claimed by two vehicles (a swap mid-trip) keeps the newer prediction.
            unique = {(r[0], r[1], r[2], r[3]): r for r in predicted}
            cur.execute(
                """
                DELETE FROM transit_predictions WHERE (feed_id, trip_id, start_date) IN
                    (SELECT * FROM unnest(%s::text[], %s::text[], %s::date[]))
                """,
                ([k[0] for k in unique], [k[1] for k in unique], [k[2] for k in unique]),
            )
            if unique:
                with cur.copy(
                    """
                    COPY transit_predictions (feed_id, trip_id, start_date, stop_sequence,
                        stop_id, route_id, vehicle_id, city, predicted_arrival, uncertainty_s,
                        scheduled_arrival, made_at, position_ts) FROM STDIN
                    """
                ) as copy:
                    for row in unique.values():
                        copy.write_row(row)
