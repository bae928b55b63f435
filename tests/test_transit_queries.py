"""Schedule queries for the resident endpoints: stops near a point, routes, departures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from psycopg import AsyncConnection

from smartcity.queries import transit as q
from smartcity.transit.geometry import haversine_m
from smartcity.transit.gtfs_fields import parse_time_s
from smartcity.transit.gtfs_import import import_feed
from tests.gtfs_feeds import BULLRUNNER, POA, Table, read_table, rewrite, to_csv

# Math & Engineering, the USF Bull Runner stop 101.
STOP_101 = (28.0591746914, -82.4134214222)

TRANSLATIONS = to_csv(
    [
        ["table_name", "field_name", "language", "translation", "record_id", "record_sub_id",
         "field_value"],
        ["stops", "stop_name", "kk", "Математика және инженерия", "101", "", ""],
        ["stops", "stop_name", "ru", "Математика и инженерия", "101", "", ""],
        # By the original text instead of the id (the spec allows either).
        ["stops", "stop_name", "kk", "Кітапхана", "", "", "Library LIB"],
        ["routes", "route_long_name", "kk-KZ", "Жасыл кампус айналымы", "A", "", ""],
        ["trips", "trip_headsign", "kk", "Кампус", "1", "", ""],
        # Only at stop_sequence 9 of trip 5 (record_sub_id), not at its other stops.
        ["stop_times", "stop_headsign", "kk", "Солтүстік", "5", "9", ""],
    ]
)  # fmt: skip
# Monday 4 March 2019 runs the weekend timetable instead of the weekday one.
CALENDAR_DATES = to_csv(
    [["service_id", "date", "exception_type"], ["Mo", "20190304", "2"], ["Su", "20190304", "1"]]
)


@pytest.fixture
def usf_feed(tmp_path: Path) -> Path:
    return rewrite(
        BULLRUNNER,
        tmp_path / "usf.zip",
        add={"translations.txt": TRANSLATIONS, "calendar_dates.txt": CALENDAR_DATES},
        edit={"trips.txt": _headsigns, "stop_times.txt": _stop_headsigns},
    )


def _headsigns(table: Table) -> Table:
    """Trip 1 is headed for 'Campus'."""
    return [table[0] + ["trip_headsign"]] + [
        [*r, "Campus" if r[2] == "1" else ""] for r in table[1:]
    ]


def _stop_headsigns(table: Table) -> Table:
    """Trip 5 shows 'North' at its stops 9 and 10 (the feed overrides the trip's headsign)."""
    return [table[0] + ["stop_headsign"]] + [
        [*r, "North" if r[0] == "5" and r[4] in {"9", "10"} else ""] for r in table[1:]
    ]


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[AsyncConnection[tuple[object, ...]]]:
    async with await AsyncConnection.connect(database_url, autocommit=True) as connection:
        yield connection


def _expected_departures(stop_id: str, service_id: str) -> list[int]:
    """Departures at a stop from the feed's own files, computed the plain way."""
    trips = {r[2] for r in read_table(BULLRUNNER, "trips.txt")[1:] if r[1] == service_id}
    times: dict[str, list[tuple[int, str, int]]] = {}
    for trip_id, _arr, dep, stop, seq in read_table(BULLRUNNER, "stop_times.txt")[1:]:
        if trip_id in trips:
            times.setdefault(trip_id, []).append((int(seq), stop, parse_time_s(dep)))
    out: list[int] = []
    for row in read_table(BULLRUNNER, "frequencies.txt")[1:]:
        trip_id, start, end = row[0], parse_time_s(row[1]), parse_time_s(row[2])
        headway = int(row[3])
        if trip_id not in times:
            continue
        stops = sorted(times[trip_id])
        first = stops[0][2]
        for _seq, stop, leaves_s in stops[:-1]:  # the last stop is an arrival only
            if stop == stop_id:
                out += [s + leaves_s - first for s in range(start, end, headway)]
    return sorted(out)


async def test_stops_near_a_point_nearest_first_with_names_in_the_language_asked(
    database_url: str, usf_feed: Path, conn: AsyncConnection[tuple[object, ...]]
) -> None:
    import_feed(database_url, usf_feed, feed_id="usf")
    near = await q.stops_near(conn, *STOP_101, radius_m=300)
    assert [s.stop_id for s in near][:2] == ["101", "102"]
    assert [s.distance_m for s in near] == sorted(s.distance_m for s in near)
    # Every stop within 300 m, and no other, by a plain haversine over the feed's stops.
    stops = read_table(BULLRUNNER, "stops.txt")[1:]
    within = {r[0] for r in stops if haversine_m(*STOP_101, float(r[2]), float(r[3])) <= 300}
    assert {s.stop_id for s in near} == within
    assert near[1].distance_m == pytest.approx(40.3, abs=0.5)

    names = {
        lang: [s.name for s in await q.stops_near(conn, *STOP_101, radius_m=50, lang=lang)]
        for lang in ("kk", "ru", "en", None)
    }
    assert names["kk"] == ["Математика және инженерия", "Кітапхана"]
    assert names["ru"] == ["Математика и инженерия", "Library LIB"]
    assert names["en"] == names[None] == ["Math & Engineering", "Library LIB"]

    assert await q.stops_near(conn, 51.128, 71.430) == []  # Astana has no USF buses


async def test_routes_of_the_active_feeds_with_translations(
    database_url: str, usf_feed: Path, conn: AsyncConnection[tuple[object, ...]]
) -> None:
    import_feed(database_url, usf_feed, feed_id="usf")
    import_feed(database_url, POA, feed_id="poa")
    import_feed(database_url, POA, feed_id="poa")  # a second version: listed once
    routes = await q.routes(conn)
    assert [(r.feed_id, r.route_id) for r in routes] == [
        ("poa", "176"),
        ("poa", "A141"),
        ("poa", "R10"),
        ("poa", "T2"),
        *(("usf", x) for x in "ABCDEF"),
    ]
    usf = await q.routes(conn, feed_id="usf", lang="kk")
    assert usf[0].long_name == "Жасыл кампус айналымы"  # 'kk' finds the feed's 'kk-KZ'
    assert usf[1].long_name == "Blue USF Health"
    assert usf[0].agency_name == "USF Bull Runner"
    assert (usf[0].color, usf[0].route_type) == ("00573C", 3)


async def test_departures_expand_frequencies_on_the_services_of_the_day(
    database_url: str, usf_feed: Path, conn: AsyncConnection[tuple[object, ...]]
) -> None:
    import_feed(database_url, usf_feed, feed_id="usf")
    monday = date(2019, 2, 25)  # an ordinary Monday (Eastern Standard Time, UTC−5)
    departures = await q.stop_departures(conn, "101", monday)
    assert [d.departure_s for d in departures] == _expected_departures("101", "Mo")
    assert all(d.frequency_based for d in departures)
    first = departures[0]
    # Route A's loop leaves its terminal at 07:00 and reaches stop 101 after 3 min 38 s.
    assert (first.route_id, first.trip_id, first.departure_s) == ("A", "1", 7 * 3600 + 218)
    assert first.departure_at == datetime(2019, 2, 25, 12, 3, 38, tzinfo=UTC)

    # After the switch to daylight time the same timetable is an hour earlier in UTC.
    dst = await q.stop_departures(conn, "101", date(2019, 3, 11), limit=1)
    assert dst[0].departure_at == datetime(2019, 3, 11, 11, 3, 38, tzinfo=UTC)

    # calendar_dates: on 4 March the weekday service is removed and the weekend one added.
    swapped = await q.stop_departures(conn, "101", date(2019, 3, 4))
    assert [d.departure_s for d in swapped] == _expected_departures("101", "Su")
    assert {d.trip_id for d in swapped} <= {"7", "10", "15"}

    # Headsigns: the trip's, or the stop's own; translated by record (and stop_sequence).
    by_trip = {d.trip_id: d.headsign for d in departures}
    assert (by_trip["1"], by_trip["5"], by_trip["11"]) == ("Campus", "North", None)
    kk = {d.trip_id: d.headsign for d in await q.stop_departures(conn, "101", monday, lang="kk")}
    assert (kk["1"], kk["5"]) == ("Кампус", "Солтүстік")
    at_10 = await q.stop_departures(conn, "126", monday, lang="kk")
    assert {d.headsign for d in at_10 if d.trip_id == "5"} == {"North"}  # seq 10: no translation

    later = await q.stop_departures(conn, "101", monday, after_s=20 * 3600, limit=3)
    assert [d.departure_s for d in later] == [
        s for s in _expected_departures("101", "Mo") if s >= 20 * 3600
    ][:3]


async def test_departures_after_midnight_belong_to_the_service_day_they_started(
    database_url: str, conn: AsyncConnection[tuple[object, ...]]
) -> None:
    import_feed(database_url, POA, feed_id="poa")
    day = date(2019, 3, 4)  # Porto Alegre, UTC−3 (summer time ended in February)
    departures = await q.stop_departures(conn, "1436", day)
    late = [d for d in departures if d.trip_id == "T2-1@1#2310"]
    assert len(late) == 1
    assert late[0].departure_s > 24 * 3600
    assert late[0].departure_at.date() == date(2019, 3, 5)
    assert late[0].frequency_based is False
    assert [d.departure_s for d in departures] == sorted(d.departure_s for d in departures)

    # In January Porto Alegre still kept summer time (UTC−2): 05:20 local is 07:20 UTC.
    summer = await q.stop_departures(conn, "3609", date(2019, 1, 21), limit=1)
    winter = await q.stop_departures(conn, "3609", day, limit=1)
    assert summer[0].departure_at == datetime(2019, 1, 21, 7, 20, tzinfo=UTC)
    assert winter[0].departure_at == datetime(2019, 3, 4, 8, 20, tzinfo=UTC)
    # Outside the calendar's date range nothing runs.
    assert await q.stop_departures(conn, "3609", date(2020, 3, 2)) == []


def test_the_stop_departures_queries_fit_psycopgs_conversion_cache() -> None:
    """psycopg converts a query to PostgreSQL's form anew on every execution when it is longer
    than this (0.7 ms of CPU per stop-arrivals request for the commented query)."""
    from psycopg import _queries

    for query in (q._DEPARTURES_QUERY, q._STOP_DEPARTURES_QUERY):
        assert len(query) <= _queries.MAX_CACHED_STATEMENT_LENGTH
