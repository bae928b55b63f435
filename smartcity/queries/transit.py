"""Transit schedule queries on the active GTFS versions, for the resident endpoints.

Every query reads only active versions (`gtfs_active_versions`: the newest import of each
feed) and returns each row's `feed_id`, since two feeds may reuse an id. `lang` picks names
from the feed's translations (`gtfs_translate`; 'kk', 'ru', 'en' ...), falling back to the
feed's own text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import class_row

from smartcity.transit.geometry import EARTH_RADIUS_M

# Beyond this a "stop near you" is not near; it also bounds the work of one query.
MAX_NEAR_RADIUS_M = 5000.0

# A bounding box on the (version_id, stop_lat, stop_lon) index first, then the exact
# great-circle distance on the few stops inside it.
_STOPS_NEAR_SQL = """
WITH active AS (
    SELECT version_id, feed_id FROM gtfs_active_versions
    WHERE %(feed_id)s::text IS NULL OR feed_id = %(feed_id)s
), near AS (
    SELECT a.feed_id, s.version_id, s.stop_id, s.stop_code, s.stop_name,
           s.stop_lat, s.stop_lon,
           2 * %(r)s * asin(sqrt(
               power(sin(radians(s.stop_lat - %(lat)s) / 2), 2)
               + cos(radians(%(lat)s)) * cos(radians(s.stop_lat))
                 * power(sin(radians(s.stop_lon - %(lon)s) / 2), 2)
           )) AS distance_m
    FROM active a
    JOIN gtfs_stops s ON s.version_id = a.version_id
    WHERE s.location_type = 0
      AND s.stop_lat BETWEEN %(lat)s - %(dlat)s AND %(lat)s + %(dlat)s
      AND s.stop_lon BETWEEN %(lon)s - %(dlon)s AND %(lon)s + %(dlon)s
)
SELECT feed_id, stop_id, stop_code,
       gtfs_translate(version_id, 'stops', 'stop_name', stop_id, stop_name, %(lang)s) AS name,
       stop_lat AS lat, stop_lon AS lon, distance_m
FROM near
WHERE distance_m <= %(radius_m)s
ORDER BY distance_m, feed_id, stop_id
LIMIT %(limit)s
"""

_ROUTES_SQL = """
WITH active AS (
    SELECT version_id, feed_id FROM gtfs_active_versions
    WHERE %(feed_id)s::text IS NULL OR feed_id = %(feed_id)s
)
SELECT a.feed_id, r.route_id, r.agency_id, g.agency_name,
       gtfs_translate(r.version_id, 'routes', 'route_short_name', r.route_id,
                      r.route_short_name, %(lang)s) AS short_name,
       gtfs_translate(r.version_id, 'routes', 'route_long_name', r.route_id,
                      r.route_long_name, %(lang)s) AS long_name,
       r.route_type, r.route_color AS color, r.route_text_color AS text_color
FROM active a
JOIN gtfs_routes r ON r.version_id = a.version_id
JOIN gtfs_agencies g ON g.version_id = r.version_id AND g.agency_id = r.agency_id
ORDER BY a.feed_id, r.route_sort_order NULLS LAST, r.route_short_name, r.route_id
"""

# Services running on the day: calendar (date range and weekday) plus calendar_dates
# additions, minus calendar_dates removals. Trips in frequencies.txt are templates: their
# stop_times give the offsets from the trip's first stop, and a trip starts every headway
# from start_time while before end_time.
#
# Speed (the stop-arrivals endpoint runs this on every request): the stop's timed trips are
# read by a range scan of the (version_id, stop_id, departure_s) index between `after_s` and
# `before_s`, not the whole day's; frequency templates (few) are read apart; names are
# translated only for the rows kept by LIMIT.
_DEPARTURES_SQL = """
WITH active AS (
    SELECT version_id, feed_id FROM gtfs_active_versions
    WHERE %(feed_id)s::text IS NULL OR feed_id = %(feed_id)s
), services AS (
    SELECT c.version_id, c.service_id
    FROM gtfs_calendar c JOIN active a ON a.version_id = c.version_id
    WHERE %(day)s BETWEEN c.start_date AND c.end_date
      AND (ARRAY[c.monday, c.tuesday, c.wednesday, c.thursday, c.friday, c.saturday,
                 c.sunday])[extract(isodow FROM %(day)s::date)::int]
    UNION
    SELECT d.version_id, d.service_id
    FROM gtfs_calendar_dates d JOIN active a ON a.version_id = d.version_id
    WHERE d.date = %(day)s AND d.exception_type = 1
    EXCEPT
    SELECT d.version_id, d.service_id
    FROM gtfs_calendar_dates d JOIN active a ON a.version_id = d.version_id
    WHERE d.date = %(day)s AND d.exception_type = 2
), templates AS (
    SELECT DISTINCT f.version_id, f.trip_id
    FROM gtfs_frequencies f JOIN active a ON a.version_id = f.version_id
), candidates AS (
    SELECT st.version_id, st.trip_id, st.stop_sequence, st.departure_s, st.stop_headsign,
           st.pickup_type, false AS frequency_based
    FROM active a
    JOIN gtfs_stop_times st ON st.version_id = a.version_id AND st.stop_id = %(stop_id)s
    WHERE st.departure_s >= %(after_s)s
      AND st.departure_s < coalesce(%(before_s)s::int, 2147483647)
      AND NOT EXISTS (SELECT 1 FROM templates f
                      WHERE f.version_id = st.version_id AND f.trip_id = st.trip_id)
    UNION ALL
    SELECT st.version_id, st.trip_id, st.stop_sequence, st.departure_s, st.stop_headsign,
           st.pickup_type, true
    FROM templates f
    JOIN gtfs_stop_times st ON st.version_id = f.version_id AND st.trip_id = f.trip_id
    WHERE st.stop_id = %(stop_id)s
), at_stop AS (
    SELECT c.version_id, c.trip_id, c.stop_sequence, c.departure_s, c.stop_headsign,
           c.frequency_based, t.route_id, t.trip_headsign, t.direction_id
    FROM candidates c
    JOIN gtfs_trips t ON t.version_id = c.version_id AND t.trip_id = c.trip_id
    JOIN services sv ON sv.version_id = t.version_id AND sv.service_id = t.service_id
    WHERE coalesce(c.pickup_type, 0) <> 1
      -- the trip's last stop is where it ends, not a departure (one backward index probe)
      AND c.stop_sequence < (SELECT nx.stop_sequence FROM gtfs_stop_times nx
                             WHERE nx.version_id = c.version_id AND nx.trip_id = c.trip_id
                             ORDER BY nx.stop_sequence DESC LIMIT 1)
), expanded AS (
    SELECT s.*, s.departure_s AS dep_s
    FROM at_stop s
    WHERE NOT s.frequency_based
    UNION ALL
    SELECT s.*, g.trip_start_s + (s.departure_s - origin.departure_s) AS dep_s
    FROM at_stop s
    JOIN gtfs_frequencies f ON f.version_id = s.version_id AND f.trip_id = s.trip_id
    CROSS JOIN LATERAL (
        SELECT x.departure_s FROM gtfs_stop_times x
        WHERE x.version_id = s.version_id AND x.trip_id = s.trip_id
        ORDER BY x.stop_sequence LIMIT 1
    ) origin
    CROSS JOIN LATERAL generate_series(f.start_s, f.end_s - 1, f.headway_s) AS g(trip_start_s)
    WHERE s.frequency_based
), next AS (
    SELECT e.*, a.feed_id
    FROM expanded e
    JOIN active a ON a.version_id = e.version_id
    WHERE e.dep_s >= %(after_s)s AND e.dep_s < coalesce(%(before_s)s::int, 2147483647)
    ORDER BY e.dep_s, a.feed_id, e.route_id, e.trip_id
    LIMIT %(limit)s
)
SELECT n.feed_id, n.trip_id, n.route_id,
       gtfs_translate(n.version_id, 'routes', 'route_short_name', r.route_id,
                      r.route_short_name, %(lang)s) AS route_short_name,
       coalesce(
           gtfs_translate(n.version_id, 'stop_times', 'stop_headsign', n.trip_id,
                          n.stop_headsign, %(lang)s, n.stop_sequence::text),
           gtfs_translate(n.version_id, 'trips', 'trip_headsign', n.trip_id,
                          n.trip_headsign, %(lang)s)) AS headsign,
       n.direction_id, n.stop_sequence, n.dep_s AS departure_s,
       -- GTFS times count from noon minus 12 h, local time, which is midnight except on
       -- days when the clocks change.
       ((%(day)s::date + time '12:00') AT TIME ZONE g.agency_timezone)
           - interval '12 hours' + make_interval(secs => n.dep_s) AS departure_at,
       n.frequency_based
"""
_DEPARTURES_FROM = """
FROM next n
JOIN gtfs_routes r ON r.version_id = n.version_id AND r.route_id = n.route_id
JOIN gtfs_agencies g ON g.version_id = r.version_id AND g.agency_id = r.agency_id
ORDER BY n.dep_s, n.feed_id, n.route_id, n.trip_id
"""

# The stop-arrivals variant: each departure also says whether its trip run is accounted for
# already — a live bus is on it (a fresh prediction for any of its stops: when none is for this
# stop the bus has passed it) or it was seen arriving at this stop — so that the schedule does
# not list it again. Asked here, per row kept by LIMIT (two primary-key probes), rather than in
# a round trip of its own. Frequency-based runs are matched to live buses by time instead.
_ACCOUNTED_COLUMN = """,
       NOT n.frequency_based AND (
           EXISTS (SELECT FROM transit_predictions p
                   WHERE (p.feed_id, p.trip_id, p.start_date) = (n.feed_id, n.trip_id, %(day)s)
                     AND p.position_ts >= %(at)s - %(max_age)s)
           OR EXISTS (SELECT FROM stop_arrivals a
                      WHERE (a.feed_id, a.trip_id, a.start_date, a.stop_id)
                          = (n.feed_id, n.trip_id, %(day)s, %(stop_id)s))) AS accounted
"""


def _compact(query: str) -> str:
    """The query without its comments and runs of blanks: psycopg caches the conversion of a
    query to PostgreSQL's form only up to 4,096 characters (`MAX_CACHED_STATEMENT_LENGTH`),
    and converting the commented departures query anew took ~0.7 ms of CPU per execution.
    (None of these queries has `--` or a run of blanks inside a string literal.)"""
    lines = (line.split("--", 1)[0] for line in query.splitlines())
    return " ".join(" ".join(lines).split()).replace("( ", "(").replace(" )", ")")


_DEPARTURES_QUERY = _compact(_DEPARTURES_SQL + _DEPARTURES_FROM)
_STOP_DEPARTURES_QUERY = _compact(_DEPARTURES_SQL + _ACCOUNTED_COLUMN + _DEPARTURES_FROM)


@dataclass(frozen=True, slots=True)
class NearbyStop:
    feed_id: str
    stop_id: str
    stop_code: str | None
    name: str | None
    lat: float
    lon: float
    distance_m: float


@dataclass(frozen=True, slots=True)
class RouteInfo:
    feed_id: str
    route_id: str
    agency_id: str
    agency_name: str
    short_name: str | None
    long_name: str | None
    route_type: int
    color: str | None
    text_color: str | None


@dataclass(frozen=True, slots=True)
class ScheduledDeparture:
    feed_id: str
    trip_id: str
    route_id: str
    route_short_name: str | None
    headsign: str | None
    direction_id: int | None
    stop_sequence: int
    departure_s: int  # seconds after midnight of the service day; may pass 86,400
    departure_at: datetime
    frequency_based: bool  # a trip of frequencies.txt: the time follows its headway


async def stops_near(
    conn: AsyncConnection[tuple[object, ...]],
    lat: float,
    lon: float,
    *,
    radius_m: float = 500.0,
    limit: int = 20,
    lang: str | None = None,
    feed_id: str | None = None,
) -> list[NearbyStop]:
    """Boarding stops within `radius_m` of (lat, lon), nearest first."""
    radius_m = min(radius_m, MAX_NEAR_RADIUS_M)
    dlat = math.degrees(radius_m / EARTH_RADIUS_M)
    # Near the poles a degree of longitude shrinks to nothing: cap the box at the whole circle.
    dlon = min(180.0, dlat / max(math.cos(math.radians(lat)), 1e-6))
    params = {
        "lat": lat,
        "lon": lon,
        "dlat": dlat,
        "dlon": dlon,
        "r": EARTH_RADIUS_M,
        "radius_m": radius_m,
        "limit": limit,
        "lang": lang,
        "feed_id": feed_id,
    }
    async with conn.cursor(row_factory=class_row(NearbyStop)) as cur:
        await cur.execute(_STOPS_NEAR_SQL, params)
        return await cur.fetchall()


async def routes(
    conn: AsyncConnection[tuple[object, ...]],
    *,
    lang: str | None = None,
    feed_id: str | None = None,
) -> list[RouteInfo]:
    """Every route of the active feeds, in the feeds' own sort order."""
    async with conn.cursor(row_factory=class_row(RouteInfo)) as cur:
        await cur.execute(_ROUTES_SQL, {"lang": lang, "feed_id": feed_id})
        return await cur.fetchall()


def _departure_params(
    stop_id: str,
    day: date,
    after_s: int,
    before_s: int | None,
    limit: int | None,
    lang: str | None,
    feed_id: str | None,
) -> dict[str, object]:
    return {
        "stop_id": stop_id,
        "day": day,
        "after_s": after_s,
        "before_s": before_s,
        "limit": limit,
        "lang": lang,
        "feed_id": feed_id,
    }


async def stop_departures(
    conn: AsyncConnection[tuple[object, ...]],
    stop_id: str,
    service_date: date,
    *,
    after_s: int = 0,
    before_s: int | None = None,
    limit: int | None = None,
    lang: str | None = None,
    feed_id: str | None = None,
) -> list[ScheduledDeparture]:
    """Scheduled departures from a stop on a service date, in time order.

    `after_s` (seconds after the service day's midnight) skips earlier ones, `before_s` later
    ones (a time window keeps the work small on a busy stop). Trips past
    midnight belong to the day they started on, so a late-night bus appears under the
    previous service date with `departure_s` beyond 86,400.
    """
    params = _departure_params(stop_id, service_date, after_s, before_s, limit, lang, feed_id)
    async with conn.cursor(row_factory=class_row(ScheduledDeparture)) as cur:
        await cur.execute(_DEPARTURES_QUERY, params)
        return await cur.fetchall()


@dataclass(frozen=True, slots=True)
class StopDeparture(ScheduledDeparture):
    """A scheduled departure as the stop-arrivals merge needs it."""

    accounted: bool  # its run has a live bus, or was seen at the stop: not to list again


async def send_stop_departures(
    conn: AsyncConnection[tuple[object, ...]],
    stop_id: str,
    service_date: date,
    *,
    after_s: int,
    before_s: int,
    limit: int,
    feed_id: str,
    at: datetime,
    max_age: timedelta,
    lang: str | None = None,
) -> AsyncCursor[StopDeparture]:
    """`stop_departures` with each row's `accounted` flag (fresh predictions as of `at`, no
    older than `max_age`), executed but not fetched: in a pipeline (`conn.pipeline()`) the
    caller sends several queries in one round trip, then fetches each cursor."""
    params = _departure_params(stop_id, service_date, after_s, before_s, limit, lang, feed_id)
    params |= {"at": at, "max_age": max_age}
    cur = conn.cursor(row_factory=class_row(StopDeparture))
    await cur.execute(_STOP_DEPARTURES_QUERY, params)
    return cur
