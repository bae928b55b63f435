"""A generated but plausible bus network for a city, written and read as a GTFS zip.

Routes cross the city from one edge to the other through (or near) the centre, as most of
Shymkent's trunk routes do; stops sit every 350–550 m along each route and are shared where
routes run together. Schedules follow the time of day (headways of 5 minutes at the rush
hours, 10 by day, 15 in the evening; weekends thinner) and scheduled run times follow the
planned speed of each segment at that hour. Trips carry a `block_id`: the chain of trips one
bus drives in a day, which the transit simulator uses to place its buses.

The feed holds agency, stops, routes, trips, stop_times, calendar, shapes, feed_info and
translations (stop names in Kazakh, Russian and English; `stop_name` itself is Russian, the
feed's language). Distances (`shape_dist_traveled`) are in metres.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from smartcity.cities import City

EARTH_RADIUS_M = 6_371_000.0
STOP_SPACING_M = (350.0, 550.0)
STOP_SHARE_RADIUS_M = 40.0  # a new stop this close to an existing one on the same road is it
SHAPE_STEP_M = 50.0
SERVICE_START_S = 6 * 3600
SERVICE_END_S = 23 * 3600
# Round-the-clock service (`night_service`): first departures at 03:00, last at 26:45 (02:45
# the next morning), so the last blocks run past the next service day's start and some bus is
# out at every hour (the soak runs at whatever hour it is started).
NIGHT_SERVICE_S = (3 * 3600, 26 * 3600 + 45 * 60)
LAYOVER_S = 300.0  # minimum rest at a terminal between two trips of one bus
SCHEDULED_DWELL_S = 20.0
DEFAULT_ROUTES = 30
# (from, to, planned speed km/h): rush hours are slow, late evening fast.
PLANNED_SPEED_KMH = (
    (0, 7 * 3600, 26.0),
    (7 * 3600, 9.5 * 3600, 16.0),
    (9.5 * 3600, 17 * 3600, 21.0),
    (17 * 3600, 19.5 * 3600, 16.0),
    (19.5 * 3600, 48 * 3600, 25.0),
)
HEADWAY_S = (
    (0, 7 * 3600, 900.0),
    (7 * 3600, 10 * 3600, 300.0),
    (10 * 3600, 17 * 3600, 600.0),
    (17 * 3600, 20 * 3600, 300.0),
    (20 * 3600, 48 * 3600, 900.0),
)
WEEKEND_HEADWAY_FACTOR = 1.5

# Places to name stops after: (Kazakh, Russian, English).
PLACE_NAMES = (
    ("Тәуке хан даңғылы", "проспект Тауке хана", "Tauke Khan Avenue"),
    ("Республика даңғылы", "проспект Республики", "Republic Avenue"),
    ("Қазыбек би көшесі", "улица Казыбек би", "Kazybek Bi Street"),
    ("Байтұрсынов көшесі", "улица Байтурсынова", "Baitursynov Street"),
    ("Жібек жолы", "Жибек жолы", "Zhibek Zholy"),
    ("Төле би көшесі", "улица Толе би", "Tole Bi Street"),
    ("Әл-Фараби алаңы", "площадь Аль-Фараби", "Al-Farabi Square"),
    ("Орталық базар", "Центральный рынок", "Central Market"),
    ("Темірлан тас жолы", "Темирлановское шоссе", "Temirlan Highway"),
    ("Рысқұлов көшесі", "улица Рыскулова", "Ryskulov Street"),
    ("Абай саябағы", "парк Абая", "Abay Park"),
    ("Қайнарбұлақ", "Кайнарбулак", "Kainarbulak"),
    ("Нұрсәт", "Нурсат", "Nursat"),
    ("Самал", "Самал", "Samal"),
    ("Шапағат", "Шапагат", "Shapagat"),
    ("Теміржол вокзалы", "Железнодорожный вокзал", "Railway Station"),
    ("Автовокзал", "Автовокзал", "Bus Station"),
    ("Ордабасы алаңы", "площадь Ордабасы", "Ordabasy Square"),
    ("Қабанбай батыр көшесі", "улица Кабанбай батыра", "Kabanbai Batyr Street"),
    ("Мәделі қожа көшесі", "улица Мадели Кожа", "Madeli Kozha Street"),
    ("Дендросаябақ", "Дендропарк", "Dendropark"),
    ("Ақжайық", "Акжайык", "Akzhaiyk"),
    ("Тұран", "Туран", "Turan"),
    ("Қатын көпір", "Катын копир", "Katyn Kopir"),
    ("Асар", "Асар", "Asar"),
    ("Көксәйек", "Коксайек", "Koksaiyek"),
    ("Бозарық", "Бозарык", "Bozaryk"),
    ("Өтеміс", "Отемис", "Otemis"),
    ("Сайрам көшесі", "улица Сайрамская", "Sairam Street"),
    ("Университет", "Университет", "University"),
    ("Облыстық аурухана", "Областная больница", "Regional Hospital"),
    ("Әуежай", "Аэропорт", "Airport"),
)


@dataclass
class Stop:
    stop_id: str
    names: tuple[str, str, str]  # kk, ru, en
    lat: float
    lon: float


@dataclass
class Shape:
    shape_id: str
    lat: np.ndarray
    lon: np.ndarray
    dist_m: np.ndarray  # cumulative distance along the shape


@dataclass
class Trip:
    trip_id: str
    route_id: str
    service_id: str
    direction_id: int
    shape_id: str
    block_id: str
    stop_ids: list[str]
    arrival_s: list[int]  # seconds after the service day's noon minus 12 h (GTFS time)
    departure_s: list[int]
    shape_dist_m: list[float]


@dataclass
class Route:
    route_id: str
    short_name: str
    long_name: str


@dataclass
class Network:
    city: str
    timezone: str
    stops: dict[str, Stop] = field(default_factory=dict)
    routes: dict[str, Route] = field(default_factory=dict)
    shapes: dict[str, Shape] = field(default_factory=dict)
    trips: dict[str, Trip] = field(default_factory=dict)
    # service_id → weekdays it runs (Monday = 0); the feed's calendar
    services: dict[str, tuple[int, ...]] = field(default_factory=dict)
    start_date: str = "20260101"
    end_date: str = "20271231"


class Projection:
    """Equirectangular metres around a centre: plenty accurate across one city."""

    def __init__(self, lat0: float, lon0: float) -> None:
        self.lat0, self.lon0 = lat0, lon0
        self.kx = math.radians(1) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
        self.ky = math.radians(1) * EARTH_RADIUS_M

    def to_xy(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (lon - self.lon0) * self.kx, (lat - self.lat0) * self.ky

    def to_latlon(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.lat0 + y / self.ky, self.lon0 + x / self.kx


def planned_speed_mps(seconds_of_day: float) -> float:
    for lo, hi, kmh in PLANNED_SPEED_KMH:
        if lo <= seconds_of_day < hi:
            return kmh / 3.6
    return PLANNED_SPEED_KMH[-1][2] / 3.6


def _headway_s(seconds_of_day: float, weekend: bool) -> float:
    for lo, hi, headway in HEADWAY_S:
        if lo <= seconds_of_day < hi:
            return headway * (WEEKEND_HEADWAY_FACTOR if weekend else 1.0)
    return HEADWAY_S[-1][2]


def _route_polyline(rng: np.random.Generator, radius_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Edge → near the centre → the opposite edge, as a densified, gently winding polyline."""
    a = rng.uniform(0, 2 * math.pi)
    b = a + math.pi + rng.uniform(-0.7, 0.7)
    r0, r1 = radius_m * rng.uniform(0.6, 1.0), radius_m * rng.uniform(0.6, 1.0)
    via = rng.normal(0, radius_m * 0.15, size=2)
    ctrl_x = [
        r0 * math.cos(a),
        0.5 * r0 * math.cos(a) + via[0] * 0.5,
        via[0],
        0.5 * r1 * math.cos(b) + via[0] * 0.5,
        r1 * math.cos(b),
    ]
    ctrl_y = [
        r0 * math.sin(a),
        0.5 * r0 * math.sin(a) + via[1] * 0.5,
        via[1],
        0.5 * r1 * math.sin(b) + via[1] * 0.5,
        r1 * math.sin(b),
    ]
    # Bend the middle control points sideways a little: roads are not straight lines.
    for i in (1, 3):
        ctrl_x[i] += rng.normal(0, radius_m * 0.08)
        ctrl_y[i] += rng.normal(0, radius_m * 0.08)
    xs: list[float] = []
    ys: list[float] = []
    for i in range(len(ctrl_x) - 1):
        seg = math.hypot(ctrl_x[i + 1] - ctrl_x[i], ctrl_y[i + 1] - ctrl_y[i])
        steps = max(1, int(seg // SHAPE_STEP_M))
        for s in range(steps):
            f = s / steps
            xs.append(ctrl_x[i] + f * (ctrl_x[i + 1] - ctrl_x[i]))
            ys.append(ctrl_y[i] + f * (ctrl_y[i + 1] - ctrl_y[i]))
    xs.append(ctrl_x[-1])
    ys.append(ctrl_y[-1])
    return np.array(xs), np.array(ys)


def _cumulative(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])


def generate(
    city: City, *, seed: int = 1, routes: int = DEFAULT_ROUTES, night_service: bool = False
) -> Network:
    """The city's network: `routes` routes, both directions, weekday and weekend service,
    06:00–23:00 (or through the night with `night_service`)."""
    if routes < 1:
        raise ValueError("a network needs at least one route")
    rng = np.random.default_rng([seed, 0x6F75])
    proj = Projection(city.lat, city.lon)
    # Routes about 15–18 km end to end, as Shymkent's cross-city routes are.
    radius_m = 0.42 * min(city.half_lat_deg * proj.ky, city.half_lon_deg * proj.kx)
    net = Network(city=city.slug, timezone=city.tz_name)
    net.services = {"wd": (0, 1, 2, 3, 4), "we": (5, 6)}
    first_s, last_s = NIGHT_SERVICE_S if night_service else (SERVICE_START_S, SERVICE_END_S)
    anchors_x = rng.uniform(-radius_m, radius_m, len(PLACE_NAMES))
    anchors_y = rng.uniform(-radius_m, radius_m, len(PLACE_NAMES))
    name_uses: dict[int, int] = {}
    stop_xy: list[tuple[float, float]] = []
    stop_ids: list[str] = []

    def stop_at(x: float, y: float) -> str:
        if stop_xy:
            d = np.hypot(
                np.array([p[0] for p in stop_xy]) - x, np.array([p[1] for p in stop_xy]) - y
            )
            j = int(d.argmin())
            if d[j] <= STOP_SHARE_RADIUS_M:
                return stop_ids[j]
        place = int(np.hypot(anchors_x - x, anchors_y - y).argmin())
        n = name_uses[place] = name_uses.get(place, 0) + 1
        kk, ru, en = PLACE_NAMES[place]
        names = (kk, ru, en) if n == 1 else (f"{kk} {n}", f"{ru} {n}", f"{en} {n}")
        stop_id = f"s{len(stop_ids) + 1:04d}"
        lat, lon = proj.to_latlon(np.array(x), np.array(y))
        net.stops[stop_id] = Stop(stop_id, names, round(float(lat), 6), round(float(lon), 6))
        stop_xy.append((x, y))
        stop_ids.append(stop_id)
        return stop_id

    for r in range(routes):
        route_id = f"r{r + 1:02d}"
        x, y = _route_polyline(rng, radius_m)
        dist = _cumulative(x, y)
        # Stops along the outbound geometry; the inbound direction serves the same stops.
        stop_d = [0.0]
        while stop_d[-1] + STOP_SPACING_M[1] < dist[-1]:
            stop_d.append(stop_d[-1] + float(rng.uniform(*STOP_SPACING_M)))
        stop_d.append(float(dist[-1]))
        # A shared stop lies within STOP_SHARE_RADIUS_M of this road; keep this route's
        # distance for it, so stop_times stay on this shape.
        route_stops = [
            stop_at(float(np.interp(d, dist, x)), float(np.interp(d, dist, y))) for d in stop_d
        ]
        # Slow centre, fast outskirts: a per-segment factor on the planned speed.
        mid_d = (np.array(stop_d[:-1]) + np.array(stop_d[1:])) / 2
        mid_r = np.hypot(np.interp(mid_d, dist, x), np.interp(mid_d, dist, y)) / radius_m
        seg_factor = np.clip(0.75 + 0.4 * mid_r + rng.normal(0, 0.08, len(mid_d)), 0.6, 1.3)
        first, last = net.stops[route_stops[0]].names[2], net.stops[route_stops[-1]].names[2]
        net.routes[route_id] = Route(route_id, str(r + 1), f"{first} – {last}")
        for direction in (0, 1):
            shape_id = f"{route_id}-{direction}"
            if direction == 0:
                sx, sy, sd, ids, factors = x, y, stop_d, route_stops, seg_factor
            else:
                sx, sy = x[::-1], y[::-1]
                sd = [float(dist[-1]) - d for d in reversed(stop_d)]
                ids, factors = route_stops[::-1], seg_factor[::-1]
            lat, lon = proj.to_latlon(sx, sy)
            lat, lon = np.round(lat, 6), np.round(lon, 6)
            net.shapes[shape_id] = Shape(shape_id, lat, lon, _cumulative(*proj.to_xy(lat, lon)))
            sd = [float(np.interp(d, _cumulative(sx, sy), net.shapes[shape_id].dist_m)) for d in sd]
            for service, weekdays in net.services.items():
                weekend = 5 in weekdays
                t = first_s + float(rng.uniform(0, 300)) + direction * 120
                while t < last_s:
                    arr, dep = [int(t)], [int(t)]
                    clock = t
                    for j in range(len(ids) - 1):
                        run = (sd[j + 1] - sd[j]) / (planned_speed_mps(clock % 86400) * factors[j])
                        clock += run
                        arr.append(round(clock))
                        if j + 1 < len(ids) - 1:
                            clock += SCHEDULED_DWELL_S
                        dep.append(round(clock))
                    minute = int(t // 60)
                    trip_id = (
                        f"{route_id}-{service}-{minute // 60:02d}{minute % 60:02d}-{direction}"
                    )
                    net.trips[trip_id] = Trip(
                        trip_id,
                        route_id,
                        service,
                        direction,
                        shape_id,
                        "",
                        list(ids),
                        arr,
                        dep,
                        [round(d, 1) for d in sd],
                    )
                    t += _headway_s(t, weekend)
    _assign_blocks(net)
    return net


def _assign_blocks(net: Network) -> None:
    """Chain trips into buses' days: a bus takes the next trip from the terminal where it
    stopped once it has rested LAYOVER_S (greedy, in departure order)."""
    by_group: dict[tuple[str, str], list[Trip]] = {}
    for trip in net.trips.values():
        by_group.setdefault((trip.route_id, trip.service_id), []).append(trip)
    for (route_id, service), trips in sorted(by_group.items()):
        trips.sort(key=lambda tr: (tr.departure_s[0], tr.direction_id))
        free: dict[str, list[tuple[int, str]]] = {}  # terminal stop → (free at, block)
        count = 0
        for trip in trips:
            waiting = free.get(trip.stop_ids[0], [])
            ready = [w for w in waiting if w[0] <= trip.departure_s[0]]
            if ready:
                chosen = min(ready)
                waiting.remove(chosen)
                block = chosen[1]
            else:
                count += 1
                block = f"{route_id}-{service}-b{count:02d}"
            trip.block_id = block
            free.setdefault(trip.stop_ids[-1], []).append(
                (trip.arrival_s[-1] + int(LAYOVER_S), block)
            )


def _gtfs_time(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _csv(rows: Iterable[Iterable[object]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows(rows)
    return buf.getvalue().encode()


def write_zip(net: Network, path: Path) -> None:
    """Write the network as a GTFS zip (byte-for-byte the same for the same network)."""
    files: dict[str, Iterable[Iterable[object]]] = {
        "agency.txt": [
            ("agency_id", "agency_name", "agency_url", "agency_timezone", "agency_lang"),
            (
                "sc",
                f"{net.city.title()} City Bus (simulated)",
                "https://example.org/smartcity",
                net.timezone,
                "ru",
            ),
        ],
        "feed_info.txt": [
            (
                "feed_publisher_name",
                "feed_publisher_url",
                "feed_lang",
                "feed_start_date",
                "feed_end_date",
            ),
            (
                "smartcity simulators",
                "https://example.org/smartcity",
                "ru",
                net.start_date,
                net.end_date,
            ),
        ],
        "stops.txt": [("stop_id", "stop_name", "stop_lat", "stop_lon")]
        + [(s.stop_id, s.names[1], f"{s.lat:.6f}", f"{s.lon:.6f}") for s in net.stops.values()],
        "routes.txt": [
            ("route_id", "agency_id", "route_short_name", "route_long_name", "route_type")
        ]
        + [(r.route_id, "sc", r.short_name, r.long_name, 3) for r in net.routes.values()],
        "calendar.txt": [
            (
                "service_id",
                "monday",
                "tuesday",
                "wednesday",
                "thursday",
                "friday",
                "saturday",
                "sunday",
                "start_date",
                "end_date",
            )
        ]
        + [
            (sid, *(int(d in days) for d in range(7)), net.start_date, net.end_date)
            for sid, days in net.services.items()
        ],
        "trips.txt": [("route_id", "service_id", "trip_id", "direction_id", "shape_id", "block_id")]
        + [
            (t.route_id, t.service_id, t.trip_id, t.direction_id, t.shape_id, t.block_id)
            for t in net.trips.values()
        ],
        "stop_times.txt": [
            (
                "trip_id",
                "arrival_time",
                "departure_time",
                "stop_id",
                "stop_sequence",
                "shape_dist_traveled",
            )
        ]
        + [
            (t.trip_id, _gtfs_time(a), _gtfs_time(d), s, i + 1, f"{dist:.1f}")
            for t in net.trips.values()
            for i, (a, d, s, dist) in enumerate(
                zip(t.arrival_s, t.departure_s, t.stop_ids, t.shape_dist_m, strict=True)
            )
        ],
        "shapes.txt": [
            ("shape_id", "shape_pt_lat", "shape_pt_lon", "shape_pt_sequence", "shape_dist_traveled")
        ]
        + [
            (s.shape_id, f"{la:.6f}", f"{lo:.6f}", i + 1, f"{d:.1f}")
            for s in net.shapes.values()
            for i, (la, lo, d) in enumerate(zip(s.lat, s.lon, s.dist_m, strict=True))
        ],
        "translations.txt": [("table_name", "field_name", "language", "translation", "record_id")]
        + [
            ("stops", "stop_name", lang, name, s.stop_id)
            for s in net.stops.values()
            for lang, name in zip(("kk", "ru", "en"), s.names, strict=True)
        ],
    }
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, rows in files.items():
            # A fixed date keeps the zip identical for the same seed.
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, _csv(rows))


def _parse_time(value: str) -> int:
    h, m, s = (int(p) for p in value.split(":"))
    return h * 3600 + m * 60 + s


def read_zip(path: Path) -> Network:
    """Read a feed written by `write_zip` (or any feed with the same files and shape distances)."""
    with zipfile.ZipFile(path) as zf:

        def rows(name: str) -> list[dict[str, str]]:
            with zf.open(name) as fh:
                return list(csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8-sig")))

        agency = rows("agency.txt")[0]
        net = Network(city=path.stem, timezone=agency["agency_timezone"])
        names: dict[str, dict[str, str]] = {}
        if "translations.txt" in zf.namelist():
            for row in rows("translations.txt"):
                if row["table_name"] == "stops" and row["field_name"] == "stop_name":
                    names.setdefault(row["record_id"], {})[row["language"]] = row["translation"]
        for row in rows("stops.txt"):
            tr = names.get(row["stop_id"], {})
            ru = row["stop_name"]
            net.stops[row["stop_id"]] = Stop(
                row["stop_id"],
                (tr.get("kk", ru), tr.get("ru", ru), tr.get("en", ru)),
                float(row["stop_lat"]),
                float(row["stop_lon"]),
            )
        for row in rows("routes.txt"):
            net.routes[row["route_id"]] = Route(
                row["route_id"], row["route_short_name"], row["route_long_name"]
            )
        days = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        for row in rows("calendar.txt"):
            net.services[row["service_id"]] = tuple(i for i, d in enumerate(days) if row[d] == "1")
            net.start_date, net.end_date = row["start_date"], row["end_date"]
        points: dict[str, list[tuple[int, float, float, float]]] = {}
        for row in rows("shapes.txt"):
            points.setdefault(row["shape_id"], []).append(
                (
                    int(row["shape_pt_sequence"]),
                    float(row["shape_pt_lat"]),
                    float(row["shape_pt_lon"]),
                    float(row["shape_dist_traveled"]),
                )
            )
        for shape_id, pts in points.items():
            pts.sort()
            arr = np.array([p[1:] for p in pts])
            net.shapes[shape_id] = Shape(shape_id, arr[:, 0], arr[:, 1], arr[:, 2])
        for row in rows("trips.txt"):
            net.trips[row["trip_id"]] = Trip(
                row["trip_id"],
                row["route_id"],
                row["service_id"],
                int(row["direction_id"] or 0),
                row["shape_id"],
                row.get("block_id", ""),
                [],
                [],
                [],
                [],
            )
        times: dict[str, list[tuple[int, str, int, int, float]]] = {}
        for row in rows("stop_times.txt"):
            times.setdefault(row["trip_id"], []).append(
                (
                    int(row["stop_sequence"]),
                    row["stop_id"],
                    _parse_time(row["arrival_time"]),
                    _parse_time(row["departure_time"]),
                    float(row["shape_dist_traveled"]),
                )
            )
        for trip_id, st in times.items():
            st.sort()
            trip = net.trips[trip_id]
            trip.stop_ids = [s[1] for s in st]
            trip.arrival_s = [s[2] for s in st]
            trip.departure_s = [s[3] for s in st]
            trip.shape_dist_m = [s[4] for s in st]
    return net
