"""Parse and validate a GTFS feed into a `Feed`; refuse a broken one with every problem listed.

Files are read in dependency order (agency → stops → routes → calendars → shapes → trips →
stop_times → frequencies → translations), so each reference is checked against files already
read. A file with problems stops the import after that file: later files would only repeat
its mistakes as unresolved references.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

from smartcity.transit import gtfs_fields as fld
from smartcity.transit.errors import FeedError, Problem
from smartcity.transit.gtfs_csv import FeedArchive
from smartcity.transit.gtfs_model import Feed, ProgressFn, ShapePoints, Trip
from smartcity.transit.gtfs_rows import BadFieldError, Fields, Problems, unresolved
from smartcity.transit.gtfs_stop_times import read_frequencies, read_stop_times
from smartcity.transit.gtfs_translations import read_feed_info, read_translations

REQUIRED_FILES = ("agency.txt", "stops.txt", "routes.txt", "trips.txt", "stop_times.txt")
KNOWN_FILES = frozenset(
    {
        *REQUIRED_FILES,
        "calendar.txt",
        "calendar_dates.txt",
        "shapes.txt",
        "frequencies.txt",
        "translations.txt",
        "feed_info.txt",
    }
)
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def read_feed(path: Path, progress: ProgressFn | None = None) -> Feed:
    """Read the zip at `path`; raises `FeedError` naming file, line and field of each problem."""
    with FeedArchive(path) as archive:
        _check_files(archive)
        feed = Feed()
        reader = _Reader(archive, feed, progress)
        reader.agencies()
        reader.stops()
        reader.routes()
        services = reader.calendars()
        reader.shapes()
        reader.trips(services)
        read_stop_times(archive, feed, reader.watch("stop_times.txt"))
        if archive.has("frequencies.txt"):
            read_frequencies(archive, feed, reader.watch("frequencies.txt"))
        if archive.has("translations.txt"):
            read_translations(archive, feed, reader.watch("translations.txt"))
        if archive.has("feed_info.txt"):
            read_feed_info(archive, feed)
        ignored = [n for n in archive.names() if n.endswith(".txt") and n not in KNOWN_FILES]
        if ignored:
            feed.warnings.append(f"not imported (not used by this service): {', '.join(ignored)}")
        return feed


def _check_files(archive: FeedArchive) -> None:
    problems = [
        Problem(name, None, None, "is missing from the zip; a GTFS feed must include it")
        for name in REQUIRED_FILES
        if not archive.has(name)
    ]
    if not archive.has("calendar.txt") and not archive.has("calendar_dates.txt"):
        problems.append(
            Problem(
                "calendar.txt",
                None,
                None,
                "is missing, and so is calendar_dates.txt; a feed needs at least one of them "
                "to say on which days its services run",
            )
        )
    if problems:
        raise FeedError(problems)


class _Reader:
    def __init__(self, archive: FeedArchive, feed: Feed, progress: ProgressFn | None) -> None:
        self.archive = archive
        self.feed = feed
        self.progress = progress
        self.agency_ids: set[str] = set()
        self.route_ids: set[str] = set()

    def watch(self, name: str) -> Callable[[int], None] | None:
        """A byte-count callback for `name` that feeds the progress display."""
        progress = self.progress
        if progress is None:
            return None
        total = self.archive.size(name)
        task = f"read {name}"
        progress(task, 0, total)

        def on_bytes(done: int) -> None:
            progress(task, total if done < 0 else min(done, total), total)

        return on_bytes

    def agencies(self) -> None:
        name = "agency.txt"
        header, rows = self.archive.rows(name, self.watch(name))
        header.require("agency_name", "agency_url", "agency_timezone")
        problems, f = Problems(), Fields(header)
        for line in f.each(rows):
            with problems.row(name, line):
                agency_id = f.text("agency_id") or ""
                if agency_id in self.agency_ids:
                    raise BadFieldError("agency_id", f"{agency_id!r} appears twice; ids are unique")
                self.feed.agencies.append(
                    (
                        agency_id,
                        f.required("agency_name"),
                        f.required("agency_url"),
                        f.parsed_required("agency_timezone", fld.parse_timezone),
                        f.text("agency_lang"),
                        f.text("agency_phone"),
                    )
                )
                self.agency_ids.add(agency_id)
        if not self.feed.agencies and not problems.listed:
            problems.add(name, None, None, "has no agencies; add at least one row")
        if len(self.feed.agencies) > 1 and "" in self.agency_ids:
            problems.add(
                name, None, "agency_id", "is required when the feed has more than one agency"
            )
        problems.raise_if_any()

    def stops(self) -> None:
        name = "stops.txt"
        header, rows = self.archive.rows(name, self.watch(name))
        # Only generic nodes and boarding areas may lack coordinates; a feed of nothing else
        # is no use to us, so the columns are required.
        header.require("stop_id", "stop_lat", "stop_lon")
        problems, f = Problems(), Fields(header)
        parents: list[tuple[int, str]] = []
        stop_ids: set[str] = set()
        for line in f.each(rows):
            with problems.row(name, line):
                stop_id = f.required("stop_id")
                if stop_id in stop_ids:
                    raise BadFieldError("stop_id", f"{stop_id!r} appears twice; ids are unique")
                location_type = f.parsed("location_type", _choice(range(5))) or 0
                # Stops, stations and entrances have a place; generic nodes and boarding
                # areas (3, 4) may leave it empty.
                needs_place = location_type <= 2
                lat_lon = (f.parsed("stop_lat", fld.parse_lat), f.parsed("stop_lon", fld.parse_lon))
                if needs_place and lat_lon[0] is None:
                    raise BadFieldError("stop_lat", "is empty; stops need coordinates")
                if needs_place and lat_lon[1] is None:
                    raise BadFieldError("stop_lon", "is empty; stops need coordinates")
                parent = f.text("parent_station")
                if parent is not None:
                    parents.append((line, parent))
                self.feed.stops.append(
                    (
                        stop_id,
                        f.text("stop_code"),
                        f.text("stop_name"),
                        f.text("stop_desc"),
                        lat_lon[0],
                        lat_lon[1],
                        f.text("zone_id"),
                        location_type,
                        parent,
                        f.parsed("wheelchair_boarding", _choice(range(3))),
                        f.text("platform_code"),
                    )
                )
                stop_ids.add(stop_id)
                if lat_lon[0] is not None and lat_lon[1] is not None:
                    self.feed.stop_coords[stop_id] = (lat_lon[0], lat_lon[1])
        for line, parent in parents:
            if parent not in stop_ids:
                problems.add(name, line, "parent_station", unresolved(parent, "stops.txt"))
        problems.raise_if_any()

    def routes(self) -> None:
        name = "routes.txt"
        header, rows = self.archive.rows(name, self.watch(name))
        header.require("route_id", "route_type")
        problems, f = Problems(), Fields(header)
        only_agency = next(iter(self.agency_ids)) if len(self.agency_ids) == 1 else None
        for line in f.each(rows):
            with problems.row(name, line):
                route_id = f.required("route_id")
                if route_id in self.route_ids:
                    raise BadFieldError("route_id", f"{route_id!r} appears twice; ids are unique")
                agency_id = f.text("agency_id")
                if agency_id is None:
                    if only_agency is None:
                        raise BadFieldError(
                            "agency_id", "is required when the feed has several agencies"
                        )
                    agency_id = only_agency
                elif agency_id not in self.agency_ids:
                    if only_agency == "":
                        agency_id = only_agency  # one agency without an id: it is that one
                    else:
                        raise BadFieldError("agency_id", unresolved(agency_id, "agency.txt"))
                self.feed.routes.append(
                    (
                        route_id,
                        agency_id,
                        f.text("route_short_name"),
                        f.text("route_long_name"),
                        f.text("route_desc"),
                        f.parsed_required("route_type", lambda v: fld.parse_int(v, low=0)),
                        f.text("route_url"),
                        f.text("route_color"),
                        f.text("route_text_color"),
                        f.parsed("route_sort_order", lambda v: fld.parse_int(v, low=0)),
                    )
                )
                self.route_ids.add(route_id)
        problems.raise_if_any()

    def calendars(self) -> set[str]:
        """Read calendar.txt and calendar_dates.txt; the service ids they define."""
        services: set[str] = set()
        if self.archive.has("calendar.txt"):
            services |= self._calendar()
        if self.archive.has("calendar_dates.txt"):
            services |= self._calendar_dates()
        return services

    def _calendar(self) -> set[str]:
        name = "calendar.txt"
        header, rows = self.archive.rows(name, self.watch(name))
        header.require("service_id", *_WEEKDAYS, "start_date", "end_date")
        problems, f = Problems(), Fields(header)
        services: set[str] = set()
        for line in f.each(rows):
            with problems.row(name, line):
                service_id = f.required("service_id")
                if service_id in services:
                    raise BadFieldError(
                        "service_id", f"{service_id!r} appears twice; ids are unique"
                    )
                days = [f.parsed_required(d, _choice(range(2))) == 1 for d in _WEEKDAYS]
                start = f.parsed_required("start_date", fld.parse_date)
                end = f.parsed_required("end_date", fld.parse_date)
                if end < start:
                    raise BadFieldError(
                        "end_date", f"{end:%Y%m%d} is before start_date {start:%Y%m%d}"
                    )
                self.feed.calendar.append((service_id, *days, start, end))
                services.add(service_id)
        problems.raise_if_any()
        return services

    def _calendar_dates(self) -> set[str]:
        name = "calendar_dates.txt"
        header, rows = self.archive.rows(name, self.watch(name))
        header.require("service_id", "date", "exception_type")
        problems, f = Problems(), Fields(header)
        seen: set[tuple[str, object]] = set()
        for line in f.each(rows):
            with problems.row(name, line):
                service_id = f.required("service_id")
                day = f.parsed_required("date", fld.parse_date)
                if (service_id, day) in seen:
                    raise BadFieldError("date", f"{day:%Y%m%d} is listed twice for {service_id!r}")
                kind = f.parsed_required("exception_type", _choice(range(1, 3)))
                self.feed.calendar_dates.append((service_id, day, kind))
                seen.add((service_id, day))
        problems.raise_if_any()
        return {s for s, _ in seen}

    def shapes(self) -> None:
        name = "shapes.txt"
        if not self.archive.has(name):
            return
        header, rows = self.archive.rows(name, self.watch(name))
        header.require("shape_id", "shape_pt_lat", "shape_pt_lon", "shape_pt_sequence")
        problems, f = Problems(), Fields(header)
        points: dict[str, list[tuple[int, float, float, int]]] = {}
        for line in f.each(rows):
            with problems.row(name, line):
                shape_id = f.required("shape_id")
                lat = f.parsed_required("shape_pt_lat", fld.parse_lat)
                lon = f.parsed_required("shape_pt_lon", fld.parse_lon)
                seq = f.parsed_required("shape_pt_sequence", lambda v: fld.parse_int(v, low=0))
                points.setdefault(shape_id, []).append((seq, lat, lon, line))
        for shape_id, pts in points.items():
            pts.sort()
            for a, b in pairwise(pts):
                if a[0] == b[0]:
                    problems.add(
                        name,
                        b[3],
                        "shape_pt_sequence",
                        f"{b[0]} appears twice in shape {shape_id!r} (also line {a[3]}); "
                        "each point of a shape needs its own sequence number",
                    )
            if len(pts) < 2:
                problems.add(
                    name, pts[0][3], "shape_id", f"shape {shape_id!r} has one point; it needs two"
                )
            self.feed.shapes[shape_id] = ShapePoints(
                [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]
            )
        problems.raise_if_any()

    def trips(self, services: set[str]) -> None:
        name = "trips.txt"
        header, rows = self.archive.rows(name, self.watch(name))
        header.require("route_id", "service_id", "trip_id")
        problems, f = Problems(), Fields(header)
        trips = self.feed.trips
        for line in f.each(rows):
            with problems.row(name, line):
                trip_id = f.required("trip_id")
                if trip_id in trips:
                    raise BadFieldError(
                        "trip_id",
                        f"{trip_id!r} appears twice (also line "
                        f"{trips[trip_id].line}); ids are unique",
                    )
                route_id = f.required("route_id")
                if route_id not in self.route_ids:
                    raise BadFieldError("route_id", unresolved(route_id, "routes.txt"))
                service_id = f.required("service_id")
                if service_id not in services:
                    raise BadFieldError(
                        "service_id", unresolved(service_id, "calendar.txt or calendar_dates.txt")
                    )
                shape_id = f.text("shape_id")
                if shape_id is not None and shape_id not in self.feed.shapes:
                    raise BadFieldError("shape_id", unresolved(shape_id, "shapes.txt"))
                trips[trip_id] = Trip(
                    trip_id=trip_id,
                    route_id=route_id,
                    service_id=service_id,
                    trip_headsign=f.text("trip_headsign"),
                    trip_short_name=f.text("trip_short_name"),
                    direction_id=f.parsed("direction_id", _choice(range(2))),
                    block_id=f.text("block_id"),
                    shape_id=shape_id,
                    wheelchair_accessible=f.parsed("wheelchair_accessible", _choice(range(3))),
                    bikes_allowed=f.parsed("bikes_allowed", _choice(range(3))),
                    line=line,
                )
        problems.raise_if_any()


def _choice(allowed: range) -> Callable[[str], int]:
    return lambda value: fld.parse_choice(value, allowed)
