"""Next arrivals at a stop: live predictions first, the schedule for trips without a bus.

A trip run (trip_id, service date) appears once: from its fresh prediction when the tracker
follows a bus on it (`live`), else from the timetable (`live` false: no bus on it reports, or
its GPS is older than the freshness limit). A run whose bus is tracked but has no prediction
for this stop has passed it, and so has a run already seen arriving here: neither is listed
from the schedule. Frequency-based trips (frequencies.txt) repeat one trip_id through the day;
there a live run replaces the scheduled run of that trip nearest to it in time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from smartcity.queries import transit as schedule
from smartcity.queries import transit_live as live_q
from smartcity.queries.transit_live import Conn, StopInfo
from smartcity.transit.gtfs_fields import MAX_SERVICE_TIME_S

# The service day starts at noon minus 12 hours (GTFS); trips after midnight belong to the day
# before, so yesterday's timetable is read too.
_NOON = time(12)
# How far ahead the timetable is read: a resident asks about the next buses, and the window
# keeps the work per request small on a busy stop (a range scan instead of the whole day).
HORIZON = timedelta(hours=3)


@dataclass(frozen=True, slots=True)
class Arrival:
    feed_id: str
    trip_id: str
    start_date: date
    route_id: str
    route_short_name: str | None
    headsign: str | None
    at: datetime  # predicted arrival (live) or scheduled departure (timetable)
    scheduled_at: datetime | None
    live: bool
    uncertainty_s: float | None
    vehicle_id: str | None
    position_ts: datetime | None
    frequency_based: bool


def service_day_origin(day: date, tz: ZoneInfo) -> datetime:
    """Time 00:00:00 of a GTFS service day: noon minus 12 hours, local time."""
    return datetime.combine(day, _NOON, tz) - timedelta(hours=12)


async def next_arrivals(
    conn: Conn,
    stop: StopInfo,
    at: datetime,
    *,
    max_age: timedelta,
    limit: int,
    lang: str | None = None,
) -> list[Arrival]:
    """Up to `limit` next arrivals at `stop` after `at` (the timetable's within `HORIZON`),
    soonest first.

    One round trip: the live predictions and the timetable of each service day the window
    touches go to the server together (a pipeline), and each timetable row says whether its
    run is accounted for already (a live bus on it, or seen at the stop)."""
    tz = ZoneInfo(stop.timezone)
    today = at.astimezone(tz).date()
    until = at + HORIZON
    windows: list[tuple[date, int, int]] = []
    for day in (today - timedelta(days=1), today, today + timedelta(days=1)):
        origin = service_day_origin(day, tz)
        after_s = max(0, math.ceil((at - origin).total_seconds()))
        before_s = math.ceil((until - origin).total_seconds())
        last_s = MAX_SERVICE_TIME_S if stop.last_departure_s is None else stop.last_departure_s
        if before_s <= 0 or after_s > last_s:
            continue  # the window misses this service day
        windows.append((day, after_s, before_s))
    async with conn.pipeline():
        live_cur = await live_q.send_live_arrivals(
            conn, stop.feed_id, stop.stop_id, at, max_age, limit=limit, lang=lang
        )
        day_curs = [
            (
                day,
                await schedule.send_stop_departures(
                    conn,
                    stop.stop_id,
                    day,
                    after_s=after_s,
                    before_s=before_s,
                    limit=limit,
                    lang=lang,
                    feed_id=stop.feed_id,
                    at=at,
                    max_age=max_age,
                ),
            )
            for day, after_s, before_s in windows
        ]
        live = await live_cur.fetchall()
        planned = [(day, r) for day, cur in day_curs for r in await cur.fetchall()]

    kept = [(day, r) for day, r in planned if not r.accounted]
    for p in live:
        same = [
            i
            for i, (day, r) in enumerate(kept)
            if r.frequency_based and r.trip_id == p.trip_id and day == p.start_date
        ]
        if same:
            nearest = min(same, key=lambda i: abs(kept[i][1].departure_at - p.scheduled_arrival))
            del kept[nearest]

    arrivals = [
        Arrival(
            feed_id=p.feed_id,
            trip_id=p.trip_id,
            start_date=p.start_date,
            route_id=p.route_id,
            route_short_name=p.route_short_name,
            headsign=p.headsign,
            at=p.predicted_arrival,
            scheduled_at=p.scheduled_arrival,
            live=True,
            uncertainty_s=p.uncertainty_s,
            vehicle_id=p.vehicle_id,
            position_ts=p.position_ts,
            frequency_based=False,
        )
        for p in live
    ] + [
        Arrival(
            feed_id=r.feed_id,
            trip_id=r.trip_id,
            start_date=day,
            route_id=r.route_id,
            route_short_name=r.route_short_name,
            headsign=r.headsign,
            at=r.departure_at,
            scheduled_at=r.departure_at,
            live=False,
            uncertainty_s=None,
            vehicle_id=None,
            position_ts=None,
            frequency_based=r.frequency_based,
        )
        for day, r in kept
    ]
    arrivals.sort(key=lambda a: (a.at, not a.live, a.route_id, a.trip_id))
    return arrivals[:limit]
