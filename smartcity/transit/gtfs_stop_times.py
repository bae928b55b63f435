"""stop_times.txt and frequencies.txt: the biggest file, and the timing rules of a trip.

Rows of one trip may appear anywhere in the file and in any order; the trip's order is its
`stop_sequence`. Along that order the times must never go back. Stops between timepoints
may leave both times empty (the import interpolates them), but a trip's first and last stop
need times.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

from smartcity.transit import gtfs_fields as fld
from smartcity.transit.gtfs_csv import FeedArchive
from smartcity.transit.gtfs_model import Feed, StopTime
from smartcity.transit.gtfs_rows import BadFieldError, Fields, Problems, unresolved

FILE = "stop_times.txt"

_DAY_S = 24 * 3600
# A step back in time larger than this along a trip is a clock that restarted at midnight.
_WRAP_JUMP_S = 12 * 3600


def _hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def read_stop_times(
    archive: FeedArchive, feed: Feed, on_bytes: Callable[[int], None] | None
) -> None:
    header, rows = archive.rows(FILE, on_bytes)
    header.require("trip_id", "stop_sequence", "stop_id")
    if not header.has("arrival_time") and not header.has("departure_time"):
        header.require("arrival_time", "departure_time")
    problems, f = Problems(), Fields(header)
    parse_time_s = _remembering(fld.parse_time_s)
    stop_ids = {str(s[0]) for s in feed.stops}
    by_trip = feed.stop_times
    non_negative = lambda v: fld.parse_int(v, low=0)  # noqa: E731 - a tiny local parser
    for line in f.each(rows):
        with problems.row(FILE, line):
            trip_id = f.required("trip_id")
            if trip_id not in feed.trips:
                raise BadFieldError("trip_id", unresolved(trip_id, "trips.txt"))
            stop_id = f.required("stop_id")
            if stop_id not in stop_ids:
                raise BadFieldError("stop_id", unresolved(stop_id, "stops.txt"))
            if stop_id not in feed.stop_coords:
                raise BadFieldError("stop_id", f"stop {stop_id!r} has no coordinates in stops.txt")
            arrival = f.parsed("arrival_time", parse_time_s)
            departure = f.parsed("departure_time", parse_time_s)
            # One of the two alone means the bus arrives and leaves at that time.
            arrival = departure if arrival is None else arrival
            departure = arrival if departure is None else departure
            if arrival is not None and departure is not None and departure < arrival:
                raise BadFieldError(
                    "departure_time",
                    f"{_hms(departure)} is before this stop's arrival_time {_hms(arrival)}",
                )
            by_trip.setdefault(trip_id, []).append(
                StopTime(
                    line=line,
                    stop_sequence=f.parsed_required("stop_sequence", non_negative),
                    stop_id=stop_id,
                    arrival_s=arrival,
                    departure_s=departure,
                    stop_headsign=f.text("stop_headsign"),
                    pickup_type=f.parsed("pickup_type", lambda v: fld.parse_choice(v, range(4))),
                    drop_off_type=f.parsed(
                        "drop_off_type", lambda v: fld.parse_choice(v, range(4))
                    ),
                    timepoint=f.parsed("timepoint", lambda v: fld.parse_choice(v, range(2))),
                )
            )
    problems.raise_if_any()
    wrapped = 0
    for stops in by_trip.values():
        stops.sort(key=lambda s: s.stop_sequence)
        wrapped += _unwrap_midnight(stops)
        _check_trip(stops, problems)
    problems.raise_if_any()
    if wrapped:
        feed.warnings.append(
            f"{wrapped} trips wrote times after midnight as 00:xx instead of 24:xx; "
            "read them as times of the same service day"
        )
    unused = [t for t in feed.trips if t not in by_trip]
    for trip_id in unused:
        del feed.trips[trip_id]
    if unused:
        feed.warnings.append(
            f"{len(unused)} trips have no stop_times and were left out "
            f"(first: {', '.join(repr(t) for t in unused[:3])})"
        )


def _remembering(parse: Callable[[str], int]) -> Callable[[str], int]:
    """`parse`, remembering its results for one file: a timetable repeats the same few
    thousand times in millions of rows, and parsing each once reads stop_times much faster."""
    seen: dict[str, int] = {}

    def parse_once(value: str) -> int:
        result = seen.get(value)
        if result is None:
            result = seen[value] = parse(value)
        return result

    return parse_once


def _unwrap_midnight(stops: list[StopTime]) -> bool:
    """Repair a trip whose clock restarts at midnight (23:50 → 00:05); True if it did.

    The spec says 24:05:00, but some real feeds (Porto Alegre's among them) write 00:05:00.
    A jump back of more than half a day cannot be a typo of a few minutes, so we read it as
    the next day; smaller steps back stay errors for `_check_trip` to report.
    """
    shift = 0
    last: int | None = None
    for stop in stops:
        for attr in ("arrival_s", "departure_s"):
            value: int | None = getattr(stop, attr)
            if value is None:
                continue
            value += shift
            if last is not None and last - value > _WRAP_JUMP_S:
                shift += _DAY_S
                value += _DAY_S
            setattr(stop, attr, value)
            last = value
    return shift > 0


def _check_trip(stops: list[StopTime], problems: Problems) -> None:
    """Sequence numbers unique, times never going back, first and last stop timed."""
    if len(stops) < 2:
        problems.add(FILE, stops[0].line, "trip_id", "this trip has one stop; a trip needs two")
        return
    for end in (stops[0], stops[-1]):
        if end.arrival_s is None:
            which = "first" if end is stops[0] else "last"
            problems.add(
                FILE,
                end.line,
                "arrival_time",
                f"is empty, but this is the trip's {which} stop, which needs its times",
            )
    last: StopTime | None = None
    for prev, cur in pairwise(stops):
        if prev.stop_sequence == cur.stop_sequence:
            problems.add(
                FILE,
                cur.line,
                "stop_sequence",
                f"{cur.stop_sequence} appears twice in this trip (also line {prev.line}); "
                "number the stops of a trip in increasing order",
            )
        if prev.departure_s is not None:
            last = prev
        if (
            cur.arrival_s is not None
            and last is not None
            and last.departure_s is not None
            and cur.arrival_s < last.departure_s
        ):
            problems.add(
                FILE,
                cur.line,
                "arrival_time",
                f"{_hms(cur.arrival_s)} at stop_sequence {cur.stop_sequence} is before the "
                f"departure {_hms(last.departure_s)} at stop_sequence {last.stop_sequence} "
                f"(line {last.line}); the stop_times of a trip are out of order: fix the "
                "times or the stop_sequence numbers",
            )


def read_frequencies(
    archive: FeedArchive, feed: Feed, on_bytes: Callable[[int], None] | None
) -> None:
    name = "frequencies.txt"
    header, rows = archive.rows(name, on_bytes)
    header.require("trip_id", "start_time", "end_time", "headway_secs")
    problems, f = Problems(), Fields(header)
    seen: dict[tuple[str, int], int] = {}
    for line in f.each(rows):
        with problems.row(name, line):
            trip_id = f.required("trip_id")
            if trip_id not in feed.trips:
                raise BadFieldError("trip_id", unresolved(trip_id, "trips.txt (with stop_times)"))
            start = f.parsed_required("start_time", fld.parse_time_s)
            end = f.parsed_required("end_time", fld.parse_time_s)
            if end <= start:
                raise BadFieldError(
                    "end_time", f"{_hms(end)} is not after start_time {_hms(start)}"
                )
            if (trip_id, start) in seen:
                raise BadFieldError(
                    "start_time",
                    f"trip {trip_id!r} already has a period starting {_hms(start)} "
                    f"(line {seen[trip_id, start]})",
                )
            headway = f.parsed_required("headway_secs", lambda v: fld.parse_int(v, low=1))
            exact = f.parsed("exact_times", lambda v: fld.parse_choice(v, range(2))) or 0
            feed.frequencies.append((trip_id, start, end, headway, exact))
            seen[trip_id, start] = line
    problems.raise_if_any()
