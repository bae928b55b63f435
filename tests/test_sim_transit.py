"""The generated GTFS network and the buses driving it: structure, physics, ground truth."""

from __future__ import annotations

import csv
import io
import itertools
import math
import zipfile
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from simulators.faults import FaultLog
from simulators.gtfs import Network, generate, read_zip, write_zip
from simulators.transit import DWELL_S, RUN_FACTOR, BusFleet
from smartcity.cities import get_city
from smartcity.models import VehiclePosition

# A Monday morning in Shymkent (UTC+5): 06:00–08:00 local, into the rush hour.
START = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
EARTH_RADIUS_M = 6_371_000.0


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gtfs") / "shymkent.zip"
    write_zip(generate(get_city("shymkent"), seed=3, routes=12), path)
    return path


@pytest.fixture(scope="module")
def network(feed: Path) -> Network:
    return read_zip(feed)


def _table(zf: zipfile.ZipFile, name: str) -> list[dict[str, str]]:
    with zf.open(name) as fh:
        return list(csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8")))


def _seconds(value: str) -> int:
    h, m, s = (int(p) for p in value.split(":"))
    return h * 3600 + m * 60 + s


def _metres(lat0: float) -> tuple[float, float]:
    ky = math.radians(1) * EARTH_RADIUS_M
    return ky * math.cos(math.radians(lat0)), ky


def _distance_to_polyline_m(lat: float, lon: float, lats: np.ndarray, lons: np.ndarray) -> float:
    kx, ky = _metres(lat)
    x, y = (lons - lon) * kx, (lats - lat) * ky
    ax, ay, bx, by = x[:-1], y[:-1], x[1:], y[1:]
    dx, dy = bx - ax, by - ay
    length2 = np.maximum(dx * dx + dy * dy, 1e-9)
    t = np.clip(-(ax * dx + ay * dy) / length2, 0, 1)
    return float(np.hypot(ax + t * dx, ay + t * dy).min())


def test_generated_feed_is_structurally_valid(feed: Path) -> None:
    with zipfile.ZipFile(feed) as zf:
        names = set(zf.namelist())
        required = {"agency.txt", "stops.txt", "routes.txt", "trips.txt", "stop_times.txt"}
        assert required | {"calendar.txt", "shapes.txt", "translations.txt"} <= names
        stops = {r["stop_id"]: r for r in _table(zf, "stops.txt")}
        routes = {r["route_id"] for r in _table(zf, "routes.txt")}
        agencies = {r["agency_id"] for r in _table(zf, "agency.txt")}
        services = {r["service_id"] for r in _table(zf, "calendar.txt")}
        trips = {r["trip_id"]: r for r in _table(zf, "trips.txt")}
        shapes: dict[str, list[tuple[int, float, float, float]]] = defaultdict(list)
        for r in _table(zf, "shapes.txt"):
            shapes[r["shape_id"]].append(
                (
                    int(r["shape_pt_sequence"]),
                    float(r["shape_pt_lat"]),
                    float(r["shape_pt_lon"]),
                    float(r["shape_dist_traveled"]),
                )
            )
        stop_times: dict[str, list[dict[str, str]]] = defaultdict(list)
        for r in _table(zf, "stop_times.txt"):
            stop_times[r["trip_id"]].append(r)
        translations = _table(zf, "translations.txt")

    assert len(routes) >= 12
    assert len(stops) >= 200
    assert all(r["agency_id"] in agencies for r in _table(zipfile.ZipFile(feed), "routes.txt"))
    for trip in trips.values():
        assert trip["route_id"] in routes
        assert trip["service_id"] in services
        assert trip["shape_id"] in shapes
    assert set(stop_times) == set(trips)  # every trip has stop times and vice versa
    used_stops: set[str] = set()
    for trip_id, rows in stop_times.items():
        rows.sort(key=lambda r: int(r["stop_sequence"]))
        seqs = [int(r["stop_sequence"]) for r in rows]
        assert seqs == sorted(set(seqs))
        assert len(rows) >= 2
        times = [(_seconds(r["arrival_time"]), _seconds(r["departure_time"])) for r in rows]
        for (a0, d0), (a1, d1) in itertools.pairwise(times):
            assert a0 <= d0 <= a1 <= d1, trip_id
        dists = [float(r["shape_dist_traveled"]) for r in rows]
        assert dists == sorted(dists)
        pts = sorted(shapes[trips[trip_id]["shape_id"]])
        # The shape covers the trip: from before its first stop to beyond its last.
        assert pts[0][3] <= dists[0]
        assert dists[-1] <= pts[-1][3] + 1.0
        lats, lons = np.array([p[1] for p in pts]), np.array([p[2] for p in pts])
        for r in (rows[0], rows[len(rows) // 2], rows[-1]):
            stop = stops[r["stop_id"]]  # every stop reference resolves
            gap = _distance_to_polyline_m(
                float(stop["stop_lat"]), float(stop["stop_lon"]), lats, lons
            )
            assert gap < 60, (trip_id, r["stop_id"], gap)
        used_stops.update(r["stop_id"] for r in rows)
    assert used_stops == set(stops)
    by_stop: dict[str, set[str]] = defaultdict(set)
    for t in translations:
        assert t["table_name"] == "stops"
        assert t["field_name"] == "stop_name"
        assert t["record_id"] in stops
        by_stop[t["record_id"]].add(t["language"])
    assert all(by_stop[s] == {"kk", "ru", "en"} for s in stops)


def test_same_seed_same_feed_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    city = get_city("shymkent")
    write_zip(generate(city, seed=9, routes=2), a)
    write_zip(generate(city, seed=9, routes=2), b)
    assert a.read_bytes() == b.read_bytes()


def _run(
    network: Network, buses: int, hours: float, **kw: object
) -> tuple[list[VehiclePosition], list[dict[str, object]], BusFleet]:
    truth: list[dict[str, object]] = []
    fleet = BusFleet(get_city("shymkent"), network, buses, seed=5, ground_truth=truth.append, **kw)  # type: ignore[arg-type]
    fixes = [
        VehiclePosition.model_validate_json(p)
        for _t, _topic, p in itertools.takewhile(
            lambda m: m[0] < hours * 3600, fleet.messages(START, "city")
        )
    ]
    return fixes, truth, fleet


def test_buses_stay_on_their_shape_and_keep_dwell_and_run_bounds(network: Network) -> None:
    fixes, truth, _ = _run(network, 40, 2.0)
    assert len(fixes) > 10_000
    shapes = {tid: network.trips[tid].shape_id for tid in {f.trip_id for f in fixes if f.trip_id}}
    worst = 0.0
    for f in fixes[::7]:
        assert f.trip_id is not None
        shape = network.shapes[shapes[f.trip_id]]
        worst = max(worst, _distance_to_polyline_m(f.lat, f.lon, shape.lat, shape.lon))
    assert worst <= 30.0
    assert any(f.speed_mps and f.speed_mps > 3 for f in fixes)

    stops: dict[tuple[str, str], list[dict[str, object]]] = defaultdict(list)
    for row in truth:
        stops[(str(row["vehicle_id"]), str(row["trip_id"]))].append(row)
    late = early = 0
    checked = 0
    for (_, trip_id), rows in stops.items():
        trip = network.trips[trip_id]
        rows.sort(key=lambda r: int(str(r["stop_sequence"])))
        arr = [datetime.fromisoformat(str(r["actual_arrival"])) for r in rows]
        dep = [datetime.fromisoformat(str(r["actual_departure"])) for r in rows]
        sched = [datetime.fromisoformat(str(r["scheduled_arrival"])) for r in rows]
        for j in range(len(rows) - 1):
            seq = int(str(rows[j]["stop_sequence"])) - 1
            run = (arr[j + 1] - dep[j]).total_seconds()
            planned = trip.arrival_s[seq + 1] - trip.departure_s[seq]
            assert RUN_FACTOR[0] * planned - 1 <= run <= RUN_FACTOR[1] * planned + 1
            if seq > 0:
                dwell = (dep[j] - arr[j]).total_seconds()
                assert DWELL_S[0] - 1e-3 <= dwell <= DWELL_S[1] + 1e-3
                checked += 1
        delay = (arr[-1] - sched[-1]).total_seconds()
        late += delay > 120
        early += delay < -30
    assert checked > 1000
    assert late > 0
    assert early > 0


def test_rush_hour_is_slower_than_early_morning(network: Network) -> None:
    fixes, _, _ = _run(network, 60, 3.0)
    moving = defaultdict(list)
    for f in fixes:
        if f.speed_mps and f.speed_mps > 0:
            moving[(f.ts.hour + 5) % 24].append(f.speed_mps)
    assert np.mean(moving[6]) > 1.15 * np.mean(moving[8])


def test_detours_leave_the_shape_only_while_injected(network: Network) -> None:
    log = FaultLog()
    fixes, _, fleet = _run(
        network, 30, 2.0, fault_rates={"off_route_detour": 3.0, "gps_dropout": 2.0}, fault_log=log
    )
    detours = [e for e in log.entries if e["fault"] == "off_route_detour"]
    assert detours
    windows = defaultdict(list)
    for e in detours:
        windows[str(e["device_id"])].append(
            (datetime.fromisoformat(str(e["start"])), datetime.fromisoformat(str(e["end"])))
        )
    off = 0
    for f in fixes:
        assert f.trip_id is not None
        shape = network.shapes[network.trips[f.trip_id].shape_id]
        gap = _distance_to_polyline_m(f.lat, f.lon, shape.lat, shape.lon)
        inside = any(a <= f.ts < b for a, b in windows.get(f.vehicle_id, []))
        if gap > 30:
            assert inside, (f.vehicle_id, f.ts, gap)
            off += 1
    assert off > 0
    assert fleet.faults.by_device


@pytest.mark.parametrize("start_local_hour", [0, 2.5])
def test_night_service_keeps_buses_out_across_the_service_day_boundary(
    start_local_hour: float,
) -> None:
    """With `night_service` a few buses are out at every minute, 02:00–04:00 local included
    (where the previous service day's last blocks hand over to the new day's), whether the
    fleet started before or during the night blocks; the default network has none at 02:30."""
    city = get_city("shymkent")
    night = generate(city, seed=5, routes=2, night_service=True)
    start = datetime(2026, 11, 23, 19, 0, tzinfo=UTC) + timedelta(hours=start_local_hour)
    truth: list[dict[str, object]] = []
    fleet = BusFleet(city, night, 3, seed=5, ground_truth=truth.append)
    fleet._start = start
    seen_trips: dict[str, set[str]] = defaultdict(set)
    minutes = int((4.5 - start_local_hour) * 60)  # until 04:30 local (UTC+5)
    for minute in range(minutes):
        out = [fleet.fix(i, minute * 60.0) for i in range(3)]
        fixes = [f for f in out if f is not None]
        assert fixes, f"no bus out at {start + timedelta(minutes=minute)}"
        for f in fixes:
            seen_trips[str(f["start_date"])].add(str(f["trip_id"]))
    assert {"20261123", "20261124"} <= set(seen_trips)  # both service days drove
    # The old day's trips are driven to their last stop, not cut off at the boundary.
    last_stops = {
        str(r["trip_id"])
        for r in truth
        if int(str(r["stop_sequence"])) == len(night.trips[str(r["trip_id"])].stop_ids)
    }
    assert seen_trips["20261123"] <= last_stops

    day = BusFleet(city, generate(city, seed=5, routes=2), 3, seed=5)
    day._start = datetime(2026, 11, 23, 21, 30, tzinfo=UTC)  # 02:30 local
    assert all(day.fix(i, 0.0) is None for i in range(3))
