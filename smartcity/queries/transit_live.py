"""Live transit reads for the resident endpoints and the GTFS-Realtime feeds.

The tracker writes `transit_predictions` (migration 31: the current predicted arrival at each
downstream stop of each tracked trip) and `stop_arrivals`; buses' raw fixes are in
`vehicle_positions` and the newest fix of each bus is the one at `devices.last_seen`. A city's
vehicles run the trips of the GTFS feed named after the city, so `devices.city` = `feed_id`.

Only fresh data is read: a prediction (or a fix) counts only while the GPS fix it rests on is
at most `max_age` old at `at`. Names come translated (`gtfs_translate`) when `lang` is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import class_row

Conn = AsyncConnection[tuple[object, ...]]

# A bus predicted to arrive up to this long ago is still "arriving now": it dwells at the stop,
# and the tracker removes the stop from its predictions once the bus has left.
ARRIVING_GRACE = timedelta(seconds=60)

_FIND_STOP_SQL = """
SELECT a.feed_id, s.stop_id, s.stop_code,
       gtfs_translate(s.version_id, 'stops', 'stop_name', s.stop_id, s.stop_name, %(lang)s)
           AS name,
       s.stop_lat AS lat, s.stop_lon AS lon,
       -- every agency of a feed shares one time zone (a GTFS rule the import checks)
       (SELECT g.agency_timezone FROM gtfs_agencies g
        WHERE g.version_id = s.version_id ORDER BY g.agency_id LIMIT 1) AS timezone,
       -- The stop's latest departure time of any service day (one backward index probe), so
       -- that a day whose window starts later is not read at all; unknown (NULL) where
       -- frequencies.txt repeats trips beyond their template's times.
       CASE WHEN NOT EXISTS (SELECT 1 FROM gtfs_frequencies f WHERE f.version_id = s.version_id)
       THEN (SELECT st.departure_s FROM gtfs_stop_times st
             WHERE st.version_id = s.version_id AND st.stop_id = s.stop_id
             ORDER BY st.departure_s DESC LIMIT 1) END AS last_departure_s
FROM gtfs_active_versions a
JOIN gtfs_stops s ON s.version_id = a.version_id AND s.stop_id = %(stop_id)s
WHERE %(feed_id)s::text IS NULL OR a.feed_id = %(feed_id)s
ORDER BY a.feed_id
"""

_LIVE_AT_STOP_SQL = """
SELECT p.feed_id, p.trip_id, p.start_date, p.stop_sequence, p.route_id,
       gtfs_translate(v.version_id, 'routes', 'route_short_name', p.route_id,
                      r.route_short_name, %(lang)s) AS route_short_name,
       coalesce(
           gtfs_translate(v.version_id, 'stop_times', 'stop_headsign', p.trip_id,
                          st.stop_headsign, %(lang)s, p.stop_sequence::text),
           gtfs_translate(v.version_id, 'trips', 'trip_headsign', p.trip_id,
                          t.trip_headsign, %(lang)s)) AS headsign,
       p.predicted_arrival, p.uncertainty_s, p.scheduled_arrival, p.vehicle_id, p.position_ts
FROM transit_predictions p
JOIN gtfs_active_versions v ON v.feed_id = p.feed_id
LEFT JOIN gtfs_routes r ON r.version_id = v.version_id AND r.route_id = p.route_id
LEFT JOIN gtfs_trips t ON t.version_id = v.version_id AND t.trip_id = p.trip_id
LEFT JOIN gtfs_stop_times st
       ON st.version_id = v.version_id AND st.trip_id = p.trip_id
      AND st.stop_sequence = p.stop_sequence
WHERE p.feed_id = %(feed_id)s AND p.stop_id = %(stop_id)s
  AND p.predicted_arrival >= %(at)s - %(grace)s
  AND p.position_ts >= %(at)s - %(max_age)s
ORDER BY p.predicted_arrival, p.trip_id
LIMIT %(limit)s
"""

# The newest fix of each bus (at devices.last_seen, found by the (vehicle_id, ts) key), and the
# trip the tracker matched it to with the next stop it is predicted at, if it tracks it.
_VEHICLES_SQL = """
SELECT d.city AS feed_id, d.device_id AS vehicle_id, p.ts, p.lat, p.lon, p.bearing,
       p.speed_mps, p.occupancy,
       coalesce(tp.trip_id, p.trip_id) AS trip_id,
       coalesce(tp.route_id, p.route_id) AS route_id,
       coalesce(to_char(tp.start_date, 'YYYYMMDD'), p.start_date) AS start_date,
       tp.stop_id AS next_stop_id, tp.stop_sequence AS next_stop_sequence,
       tp.trip_id IS NOT NULL AS tracked,
       EXISTS (SELECT 1 FROM gtfs_frequencies f
               JOIN gtfs_active_versions av ON av.version_id = f.version_id
               WHERE av.feed_id = d.city AND f.trip_id = coalesce(tp.trip_id, p.trip_id))
           AS frequency_based
FROM devices d
CROSS JOIN LATERAL (
    SELECT vp.ts, vp.lat, vp.lon, vp.bearing, vp.speed_mps, vp.occupancy, vp.trip_id,
           vp.route_id, vp.start_date
    FROM vehicle_positions vp
    WHERE vp.vehicle_id = d.device_id AND vp.ts = d.last_seen
    LIMIT 1
) p
LEFT JOIN LATERAL (
    SELECT x.trip_id, x.route_id, x.start_date, x.stop_id, x.stop_sequence
    FROM transit_predictions x
    WHERE x.city = d.city AND x.vehicle_id = d.device_id
      AND x.position_ts >= %(at)s - %(max_age)s
    ORDER BY x.stop_sequence
    LIMIT 1
) tp ON true
WHERE d.domain = 'transit'
  AND (%(feed_id)s::text IS NULL OR d.city = %(feed_id)s)
  AND d.last_seen >= %(at)s - %(max_age)s
  AND (%(route_id)s::text IS NULL OR coalesce(tp.route_id, p.route_id) = %(route_id)s)
ORDER BY d.city, d.device_id
"""

# Every fresh prediction of a feed, trip by trip in stop order. For trips of frequencies.txt
# the trip's start time (GTFS-RT needs it to tell the runs of one trip_id apart) is the
# scheduled arrival here minus this stop's offset from the trip's first stop, as a GTFS time
# (seconds after noon minus 12 h of the start date, local time).
_TRIP_UPDATES_SQL = """
WITH v AS (SELECT version_id FROM gtfs_active_versions WHERE feed_id = %(feed_id)s),
tz AS (
    SELECT g.agency_timezone FROM gtfs_agencies g JOIN v ON g.version_id = v.version_id
    ORDER BY g.agency_id LIMIT 1
),
freq AS (
    SELECT DISTINCT f.trip_id FROM gtfs_frequencies f JOIN v ON f.version_id = v.version_id
)
SELECT p.trip_id, p.start_date, p.route_id, p.vehicle_id, p.stop_sequence, p.stop_id,
       p.predicted_arrival, p.uncertainty_s, p.scheduled_arrival, p.position_ts,
       CASE WHEN fq.trip_id IS NOT NULL THEN (
           SELECT round(extract(epoch FROM p.scheduled_arrival
                  - (((p.start_date + time '12:00') AT TIME ZONE (SELECT agency_timezone FROM tz))
                     - interval '12 hours')))::int
                  - (st.arrival_s - first.arrival_s)
           FROM v
           JOIN gtfs_stop_times st ON st.version_id = v.version_id AND st.trip_id = p.trip_id
                AND st.stop_sequence = p.stop_sequence
           CROSS JOIN LATERAL (
               SELECT x.arrival_s FROM gtfs_stop_times x
               WHERE x.version_id = v.version_id AND x.trip_id = p.trip_id
               ORDER BY x.stop_sequence LIMIT 1
           ) first
       ) END AS frequency_start_s
FROM transit_predictions p
LEFT JOIN freq fq ON fq.trip_id = p.trip_id
WHERE p.feed_id = %(feed_id)s AND p.position_ts >= %(at)s - %(max_age)s
ORDER BY p.trip_id, p.start_date, p.stop_sequence
"""


@dataclass(frozen=True, slots=True)
class StopInfo:
    feed_id: str
    stop_id: str
    stop_code: str | None
    name: str | None
    lat: float | None
    lon: float | None
    timezone: str
    last_departure_s: int | None  # of any service day; None: not known (frequencies)


@dataclass(frozen=True, slots=True)
class LiveArrival:
    feed_id: str
    trip_id: str
    start_date: date
    stop_sequence: int
    route_id: str
    route_short_name: str | None
    headsign: str | None
    predicted_arrival: datetime
    uncertainty_s: float
    scheduled_arrival: datetime
    vehicle_id: str
    position_ts: datetime


@dataclass(frozen=True, slots=True)
class VehicleNow:
    feed_id: str
    vehicle_id: str
    ts: datetime
    lat: float
    lon: float
    bearing: float | None
    speed_mps: float | None
    occupancy: str | None
    trip_id: str | None
    route_id: str | None
    start_date: str | None  # YYYYMMDD
    next_stop_id: str | None
    next_stop_sequence: int | None
    tracked: bool  # the tracker follows it on `trip_id` (else the trip is what the bus says)
    frequency_based: bool  # its trip is in frequencies.txt


@dataclass(frozen=True, slots=True)
class PredictionRow:
    trip_id: str
    start_date: date
    route_id: str
    vehicle_id: str
    stop_sequence: int
    stop_id: str
    predicted_arrival: datetime
    uncertainty_s: float
    scheduled_arrival: datetime
    position_ts: datetime
    frequency_start_s: int | None


async def find_stop(
    conn: Conn, stop_id: str, *, feed_id: str | None = None, lang: str | None = None
) -> list[StopInfo]:
    """The stop with this id in each active feed (or in `feed_id` only)."""
    params = {"stop_id": stop_id, "feed_id": feed_id, "lang": lang}
    async with conn.cursor(row_factory=class_row(StopInfo)) as cur:
        await cur.execute(_FIND_STOP_SQL, params)
        return await cur.fetchall()


async def send_live_arrivals(
    conn: Conn,
    feed_id: str,
    stop_id: str,
    at: datetime,
    max_age: timedelta,
    *,
    limit: int,
    lang: str | None = None,
) -> AsyncCursor[LiveArrival]:
    """Fresh predictions of arrivals at a stop, soonest first: the query executed but not
    fetched (for a pipeline: see `smartcity.queries.transit.send_stop_departures`)."""
    params = {
        "feed_id": feed_id,
        "stop_id": stop_id,
        "at": at,
        "grace": ARRIVING_GRACE,
        "max_age": max_age,
        "limit": limit,
        "lang": lang,
    }
    cur = conn.cursor(row_factory=class_row(LiveArrival))
    await cur.execute(_LIVE_AT_STOP_SQL, params)
    return cur


async def vehicles_now(
    conn: Conn,
    at: datetime,
    max_age: timedelta,
    *,
    feed_id: str | None = None,
    route_id: str | None = None,
) -> list[VehicleNow]:
    """The newest fix of each bus reported within `max_age` before `at`, by feed and route."""
    params = {"at": at, "max_age": max_age, "feed_id": feed_id, "route_id": route_id}
    async with conn.cursor(row_factory=class_row(VehicleNow)) as cur:
        await cur.execute(_VEHICLES_SQL, params)
        return await cur.fetchall()


async def fresh_predictions(
    conn: Conn, feed_id: str, at: datetime, max_age: timedelta
) -> list[PredictionRow]:
    """Every fresh prediction of a feed, ordered by trip run and stop sequence."""
    params = {"feed_id": feed_id, "at": at, "max_age": max_age}
    async with conn.cursor(row_factory=class_row(PredictionRow)) as cur:
        await cur.execute(_TRIP_UPDATES_SQL, params)
        return await cur.fetchall()


async def feed_exists(conn: Conn, feed_id: str) -> bool:
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT EXISTS (SELECT 1 FROM gtfs_feed_versions WHERE feed_id = %s)", (feed_id,)
        )
        row = await cur.fetchone()
    return bool(row and row[0])
