"""Buses driving a GTFS network's trips: GPS fixes every 10 s and the ground-truth arrivals.

Each bus works one block (the chain of trips `simulators.gtfs` assigns to one vehicle) of the
service day. When a trip starts, the bus's actual timeline is drawn: a start delay, then for
each segment a run time (the scheduled one, scaled by how the planned speed at the actual time
of day compares with the scheduled one — rush hours are slower — by a per-trip traffic factor
and by per-segment noise, clipped to `RUN_FACTOR` of the schedule) and a dwell at each stop
within `DWELL_S`. Buses so run late or early. Between stops a bus moves along the trip's shape;
each fix adds GPS noise (about 3 m, never more than `GPS_NOISE_MAX_M`).

The ground truth — when each bus really reached and left each stop — goes to `ground_truth`
rows as the bus passes the stop (see `GROUND_TRUTH_FIELDS`; docs/simulators.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import orjson

from simulators.faults import FaultLog, FaultSchedule, iso_ms
from simulators.gtfs import Network, Projection, Trip, planned_speed_mps
from simulators.stream import Message
from smartcity import topics
from smartcity.cities import City

DEFAULT_INTERVAL_S = 10.0
DWELL_S = (8.0, 90.0)  # bounds of a dwell at an intermediate stop
RUN_FACTOR = (0.7, 1.8)  # bounds of actual / scheduled run time between two stops
START_DELAY_S = (-60.0, 240.0)  # a trip leaves its first stop up to 1 min early, 4 late
MIN_LAYOVER_S = 60.0  # a late bus still rests this long before its next trip
GPS_NOISE_M = 3.0
GPS_NOISE_MAX_M = 12.0
DETOUR_OFFSET_M = (150.0, 400.0)
# A bus reports from this long before its first trip (leaving the depot) to its last arrival.
PULL_OUT_S = 600.0
# The service day runs from 03:00 local to 03:00 the next day (GTFS times past 24:00).
SERVICE_DAY_OFFSET_S = 3 * 3600
GROUND_TRUTH_FIELDS = (
    "vehicle_id",
    "trip_id",
    "route_id",
    "start_date",
    "stop_sequence",
    "stop_id",
    "scheduled_arrival",
    "actual_arrival",
    "actual_departure",
)
GroundTruthSink = Callable[[dict[str, object]], None]


@dataclass
class ShapeXY:
    x: np.ndarray
    y: np.ndarray
    dist: np.ndarray
    heading_deg: np.ndarray  # per segment, clockwise from north

    def at(self, d: float) -> tuple[float, float, float]:
        """(x, y, bearing) at distance `d` along the shape."""
        d = min(max(d, 0.0), float(self.dist[-1]))
        seg = min(int(np.searchsorted(self.dist, d, side="right")) - 1, len(self.heading_deg) - 1)
        seg = max(seg, 0)
        span = float(self.dist[seg + 1] - self.dist[seg]) or 1.0
        f = (d - float(self.dist[seg])) / span
        x = float(self.x[seg]) + f * float(self.x[seg + 1] - self.x[seg])
        y = float(self.y[seg]) + f * float(self.y[seg + 1] - self.y[seg])
        return x, y, float(self.heading_deg[seg])


@dataclass
class Timeline:
    """One trip as actually driven: times in simulated seconds since the run's start."""

    trip: Trip
    start_date: str
    arr: np.ndarray
    dep: np.ndarray
    dist: np.ndarray
    sched_arr: np.ndarray
    reported: int = 0  # stops already written to the ground truth


@dataclass
class Duty:
    """One bus's work on one service day."""

    trips: list[Trip]
    day0_s: float  # simulated seconds of the service day's 00:00 local
    start_date: str
    current: Timeline | None = None
    next_trip: int = 0
    free_at_s: float = -math.inf


@dataclass
class Bus:
    vehicle_id: str
    duties: dict[date, Duty] = field(default_factory=dict)
    stale: tuple[float, float] | None = None


class BusFleet:
    """Buses on the network; `messages` is their fix stream."""

    def __init__(
        self,
        city: City,
        network: Network,
        count: int,
        seed: int,
        *,
        fault_rates: dict[str, float] | None = None,
        fault_log: FaultLog | None = None,
        ground_truth: GroundTruthSink | None = None,
    ) -> None:
        self.city = city
        self.net = network
        self.seed = seed
        # One generator per bus: a bus's fixes do not depend on which other buses run (shards).
        self.rngs = [np.random.default_rng([seed, 0xB05, i]) for i in range(count)]
        self.proj = Projection(city.lat, city.lon)
        self.buses = [Bus(f"{city.slug[:3]}-bus-{i:04d}") for i in range(count)]
        self.ground_truth = ground_truth
        self.shapes: dict[str, ShapeXY] = {}
        for shape_id, shape in network.shapes.items():
            x, y = self.proj.to_xy(shape.lat, shape.lon)
            heading = np.degrees(np.arctan2(np.diff(x), np.diff(y))) % 360
            self.shapes[shape_id] = ShapeXY(x, y, shape.dist_m, heading)
        self.blocks: dict[str, list[list[Trip]]] = {}
        for service in network.services:
            chains: dict[str, list[Trip]] = {}
            for trip in network.trips.values():
                if trip.service_id == service:
                    chains.setdefault(trip.block_id or trip.trip_id, []).append(trip)
            ordered = [sorted(c, key=lambda t: t.departure_s[0]) for _, c in sorted(chains.items())]
            # Busiest blocks first, spread over routes, so a small fleet still covers the city.
            ordered.sort(key=lambda c: (-len(c), c[0].route_id, c[0].departure_s[0]))
            self.blocks[service] = ordered
        self.faults = FaultSchedule(
            "transit",
            [b.vehicle_id for b in self.buses],
            fault_rates or {},
            seed=seed,
            start=datetime.fromtimestamp(0, UTC),
            log=fault_log,
        )
        self._start = datetime.fromtimestamp(0, UTC)

    def blocks_on(self, day: date) -> list[list[Trip]]:
        weekday = day.weekday()
        out: list[list[Trip]] = []
        for service, weekdays in self.net.services.items():
            if weekday in weekdays:
                out.extend(self.blocks.get(service, []))
        return out

    def _duty(self, bus_index: int, day: date) -> Duty | None:
        bus = self.buses[bus_index]
        if day not in bus.duties:
            for old in [d for d in bus.duties if d < day - timedelta(days=1)]:
                del bus.duties[old]
            blocks = self.blocks_on(day)
            if bus_index >= len(blocks):
                return None
            local_midnight = datetime(day.year, day.month, day.day, tzinfo=self.city.tz)
            day0 = (local_midnight - self._start).total_seconds()
            bus.duties[day] = Duty(blocks[bus_index], day0, day.strftime("%Y%m%d"))
        return bus.duties[day]

    def _block_end_s(self, bus_index: int, day: date) -> float:
        """When bus `bus_index`'s block of service day `day` is scheduled to end, with the
        latest start delay (simulated seconds; -inf when it has none)."""
        blocks = self.blocks_on(day)
        if bus_index >= len(blocks):
            return -math.inf
        midnight = datetime(day.year, day.month, day.day, tzinfo=self.city.tz)
        last = blocks[bus_index][-1]
        return (midnight - self._start).total_seconds() + last.arrival_s[-1] + START_DELAY_S[1]

    def _begin(self, bus_index: int, duty: Duty, trip: Trip) -> Timeline:
        rng = self.rngs[bus_index]
        sched_arr = duty.day0_s + np.array(trip.arrival_s, dtype=float)
        sched_dep = duty.day0_s + np.array(trip.departure_s, dtype=float)
        delay = float(np.clip(rng.normal(20, 50), *START_DELAY_S))
        fault = self.faults.active(bus_index, float(sched_dep[0]))
        if fault is not None and fault.kind == "bunching":
            # Held back until it leaves just ahead of the next trip of its route and direction.
            follower = self._next_departure(trip)
            if follower is not None:
                delay = max(delay, follower - trip.departure_s[0] - 60.0)
        start = max(float(sched_dep[0]) + delay, duty.free_at_s + MIN_LAYOVER_S)
        n = len(trip.stop_ids)
        arr, dep = np.empty(n), np.empty(n)
        arr[0] = dep[0] = start
        traffic = float(rng.lognormal(0, 0.08))
        for j in range(n - 1):
            sched_run = float(sched_arr[j + 1] - sched_dep[j])
            tod_sched = (sched_dep[j] - duty.day0_s) % 86400
            tod_now = (dep[j] - duty.day0_s) % 86400
            ratio = planned_speed_mps(tod_sched) / planned_speed_mps(tod_now)
            run = sched_run * float(np.clip(ratio * traffic * rng.lognormal(0, 0.1), *RUN_FACTOR))
            arr[j + 1] = dep[j] + max(run, 1.0)
            if j + 1 < n - 1:
                rush = 1.4 if planned_speed_mps(tod_now) < 5 else 1.0
                dwell = float(np.clip(rng.gamma(3.0, 8.0) * rush, *DWELL_S))
                dep[j + 1] = arr[j + 1] + dwell
            else:
                dep[j + 1] = arr[j + 1]
        return Timeline(trip, duty.start_date, arr, dep, np.array(trip.shape_dist_m), sched_arr)

    def _next_departure(self, trip: Trip) -> int | None:
        later = [
            t.departure_s[0]
            for t in self.net.trips.values()
            if t.route_id == trip.route_id
            and t.direction_id == trip.direction_id
            and t.service_id == trip.service_id
            and t.departure_s[0] > trip.departure_s[0]
        ]
        return min(later) if later else None

    def _report_arrivals(self, vehicle_id: str, tl: Timeline, upto_s: float) -> None:
        while tl.reported < len(tl.arr) and tl.arr[tl.reported] <= upto_s:
            j = tl.reported
            if self.ground_truth is not None:
                at = self._start.timestamp()
                self.ground_truth(
                    {
                        "vehicle_id": vehicle_id,
                        "trip_id": tl.trip.trip_id,
                        "route_id": tl.trip.route_id,
                        "start_date": tl.start_date,
                        "stop_sequence": j + 1,
                        "stop_id": tl.trip.stop_ids[j],
                        "scheduled_arrival": iso_ms(
                            datetime.fromtimestamp(at + tl.sched_arr[j], UTC)
                        ),
                        "actual_arrival": iso_ms(datetime.fromtimestamp(at + tl.arr[j], UTC)),
                        "actual_departure": iso_ms(datetime.fromtimestamp(at + tl.dep[j], UTC)),
                    }
                )
            tl.reported += 1

    def _where(
        self, bus_index: int, duty: Duty, t_s: float
    ) -> tuple[Timeline, float, float] | None:
        """(timeline, distance along its shape, speed) at `t_s`; None when off duty."""
        vehicle_id = self.buses[bus_index].vehicle_id
        while True:
            tl = duty.current
            if tl is not None and t_s < tl.arr[-1]:
                break
            if tl is not None:
                self._report_arrivals(vehicle_id, tl, math.inf)
                duty.free_at_s = float(tl.arr[-1])
                duty.current = None
            if duty.next_trip >= len(duty.trips):
                return None
            trip = duty.trips[duty.next_trip]
            first_dep = duty.day0_s + trip.departure_s[0]
            if duty.next_trip == 0 and t_s < first_dep - PULL_OUT_S:
                return None
            duty.current = self._begin(bus_index, duty, trip)
            duty.next_trip += 1
        self._report_arrivals(vehicle_id, tl, t_s)
        j = int(np.searchsorted(tl.dep, t_s, side="right")) - 1
        if j < 0:
            return tl, float(tl.dist[0]), 0.0  # waiting at the first stop
        if t_s < tl.dep[j]:
            return tl, float(tl.dist[j]), 0.0
        if j + 1 < len(tl.arr) and t_s < tl.arr[j + 1]:
            span = float(tl.arr[j + 1] - tl.dep[j])
            seg = float(tl.dist[j + 1] - tl.dist[j])
            return tl, float(tl.dist[j]) + seg * (t_s - float(tl.dep[j])) / span, seg / span
        # Arrived at stop j + 1 and not yet left it (its departure is past j's, so the search
        # above lands on j): dwelling there, not back at stop j.
        return tl, float(tl.dist[min(j + 1, len(tl.dist) - 1)]), 0.0

    def _where_on_duty(
        self, bus_index: int, day: date, t_s: float
    ) -> tuple[Timeline, float, float] | None:
        """Where the bus is at `t_s`, on service day `day`. A block of the previous service
        day that runs past the day boundary (a night service) is driven to its end first; the
        new day's block then starts no earlier than a layover after it."""
        bus = self.buses[bus_index]
        prev_day = day - timedelta(days=1)
        prev = bus.duties.get(prev_day)
        if prev is None and self._block_end_s(bus_index, prev_day) > t_s:
            prev = self._duty(bus_index, prev_day)  # a run started during a night block
        if prev is not None and (prev.current is not None or prev.next_trip < len(prev.trips)):
            where = self._where(bus_index, prev, t_s)
            if where is not None:
                return where
        duty = self._duty(bus_index, day)
        if duty is None:
            return None
        if prev is not None:
            duty.free_at_s = max(duty.free_at_s, prev.free_at_s)
        return self._where(bus_index, duty, t_s)

    def fix(self, bus_index: int, t_s: float) -> dict[str, object] | None:
        """The bus's GPS fix at `t_s`, or None if it is not in service (or its GPS is out)."""
        when = self._start + timedelta(seconds=t_s)
        local = when.astimezone(self.city.tz) - timedelta(seconds=SERVICE_DAY_OFFSET_S)
        where = self._where_on_duty(bus_index, local.date(), t_s)
        if where is None:
            return None
        tl, d, speed = where
        shape = self.shapes[tl.trip.shape_id]
        x, y, bearing = shape.at(d)
        fault = self.faults.active(bus_index, t_s) if self.faults else None
        kind = fault.kind if fault is not None else None
        bus = self.buses[bus_index]
        if kind == "gps_dropout":
            return None
        if kind == "off_route_detour" and fault is not None:
            off = DETOUR_OFFSET_M[0] + fault.magnitude * (DETOUR_OFFSET_M[1] - DETOUR_OFFSET_M[0])
            rad = math.radians(bearing + 90)
            x, y = x + off * math.sin(rad), y + off * math.cos(rad)
        rng = self.rngs[bus_index]
        noise = rng.normal(0, GPS_NOISE_M, size=2)
        norm = float(np.hypot(*noise))
        if norm > GPS_NOISE_MAX_M:
            noise *= GPS_NOISE_MAX_M / norm
        lat, lon = self.proj.to_latlon(np.array(x + noise[0]), np.array(y + noise[1]))
        position = (round(float(lat), 6), round(float(lon), 6))
        if kind == "stale_position":
            bus.stale = bus.stale or position
            position = bus.stale
        else:
            bus.stale = None
        hour = local.hour + 3
        rush = hour in (7, 8, 9, 17, 18, 19)
        load = float(rng.random()) + (0.5 if rush else 0.0)
        occupancy = (
            "MANY_SEATS_AVAILABLE"
            if load < 0.5
            else "FEW_SEATS_AVAILABLE"
            if load < 0.9
            else "STANDING_ROOM_ONLY"
            if load < 1.3
            else "CRUSHED_STANDING_ROOM_ONLY"
        )
        return {
            "vehicle_id": bus.vehicle_id,
            "ts": int(when.timestamp() * 1000),
            "trip_id": tl.trip.trip_id,
            "route_id": tl.trip.route_id,
            "start_date": tl.start_date,
            "lat": position[0],
            "lon": position[1],
            "bearing": round(bearing, 1) % 360,
            "speed_mps": round(min(speed, 59.0), 2),
            "occupancy": occupancy,
        }

    def messages(
        self,
        start: datetime,
        topic_root: str,
        interval_s: float = DEFAULT_INTERVAL_S,
        shard: tuple[int, int] = (0, 1),
    ) -> Iterator[Message]:
        """Every bus's fix every `interval_s` while in service (an endless stream); `shard`
        (k, n) keeps the buses whose index is k modulo n."""
        self._start = start.astimezone(UTC)
        self.faults._start = self._start
        n = len(self.buses)
        phase = np.random.default_rng([self.seed, 0xB05]).uniform(0, interval_s, size=n)
        order = [i for i in np.argsort(phase, kind="stable") if i % shard[1] == shard[0]]
        bus_topics = [
            topics.vehicle_position(topic_root, self.city.slug, b.vehicle_id) for b in self.buses
        ]
        k = 0
        while True:
            base = k * interval_s
            self.faults.plan_until(base + interval_s)
            for i in order:
                t_s = base + float(phase[i])
                body = self.fix(int(i), t_s)
                if body is not None:
                    yield t_s, bus_topics[i], orjson.dumps(body)
            k += 1
