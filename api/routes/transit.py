"""Resident transit endpoints: stops near a place, routes, buses of a route, next arrivals.

Public (no key), rate-limited per client, and cacheable: each answer says for how long in
Cache-Control (timetables change only on import; live answers for a few seconds).
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import ConnDep, RateLimited, Services, ServicesDep, pool_of
from api.timeparams import as_utc
from smartcity.queries import transit as schedule
from smartcity.queries import transit_live as live
from smartcity.queries.transit_live import StopInfo
from smartcity.transit.arrivals import next_arrivals

router = APIRouter(tags=["residents"])

# A prediction (or a bus on the map) counts as live only while its GPS fix is at most this
# old. GTFS-Realtime's best practices allow 90 s for vehicle positions and trip updates;
# buses here report every 10-15 s, so a bus silent for 90 s has missed six fixes and its
# prediction is no longer worth more than the timetable.
LIVE_MAX_AGE = timedelta(seconds=90)
# Timetables change only when a feed is imported: an hour of caching costs little.
SCHEDULE_CACHE = "public, max-age=3600"
# Live answers change with every batch of fixes; a few seconds spares the database when many
# residents at one stop ask at once.
LIVE_CACHE = "public, max-age=10"
# A stop's arrivals: a resident waiting at the stop refreshes often, and a bus's prediction
# moves with each fix; the API itself reuses an answer this long (`api_answer_cache_s`).
ARRIVALS_CACHE = "public, max-age=2"
LIVE_MAX_AGE_S = int(LIVE_MAX_AGE.total_seconds())
JSON = "application/json"

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    422: {"description": "Malformed parameter (problem+json)."},
    429: {"description": "Rate limit: wait Retry-After seconds (problem+json)."},
}

FeedQuery = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="GTFS feed id (a city's buses use the feed named after the city); "
        "default: every active feed.",
        examples=["shymkent"],
    ),
]
LangQuery = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})?$",
        description="Language of names (`kk`, `ru`, `en` …) from the feed's translations; "
        "default: the feed's own text.",
        examples=["kk"],
    ),
]


class Stop(BaseModel):
    feed_id: str
    stop_id: str
    stop_code: str | None
    name: str | None
    lat: float | None
    lon: float | None


class NearbyStop(Stop):
    distance_m: float = Field(description="Great-circle distance from `near`, metres.")


class StopsNear(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "lat": 42.3171,
                    "lon": 69.5862,
                    "radius_m": 500,
                    "stops": [
                        {
                            "feed_id": "shymkent",
                            "stop_id": "s0042",
                            "stop_code": None,
                            "name": "Тәуке хан даңғылы",
                            "lat": 42.3175,
                            "lon": 69.5869,
                            "distance_m": 73.4,
                        }
                    ],
                }
            ]
        }
    )

    lat: float
    lon: float
    radius_m: float
    stops: list[NearbyStop] = Field(description="Nearest first.")


class Route(BaseModel):
    feed_id: str
    route_id: str
    agency_id: str
    agency_name: str
    short_name: str | None
    long_name: str | None
    route_type: int = Field(description="GTFS route_type (3 = bus).")
    color: str | None
    text_color: str | None


class Routes(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "routes": [
                        {
                            "feed_id": "shymkent",
                            "route_id": "r07",
                            "agency_id": "sc",
                            "agency_name": "Shymkent City Bus",
                            "short_name": "7",
                            "long_name": "Самал — Восточный",
                            "route_type": 3,
                            "color": None,
                            "text_color": None,
                        }
                    ]
                }
            ]
        }
    )

    routes: list[Route]


class Vehicle(BaseModel):
    feed_id: str
    vehicle_id: str
    route_id: str | None
    trip_id: str | None
    start_date: str | None = Field(description="Service date of the trip, YYYYMMDD.")
    lat: float
    lon: float
    bearing: float | None
    speed_mps: float | None
    occupancy: str | None
    ts: datetime = Field(description="Event time of the bus's newest GPS fix.")
    gps_age_s: float = Field(description="Seconds between `ts` and the answer's `at`.")
    tracked: bool = Field(description="The tracker follows the bus on `trip_id`.")
    next_stop_id: str | None = Field(description="The next stop it is predicted at.")


class Vehicles(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "route_id": "r07",
                    "at": "2026-11-23T08:15:20Z",
                    "max_age_s": 300,
                    "vehicles": [
                        {
                            "feed_id": "shymkent",
                            "vehicle_id": "shy-bus-0042",
                            "route_id": "r07",
                            "trip_id": "r07-wd-0815-0",
                            "start_date": "20261123",
                            "lat": 42.3171,
                            "lon": 69.5862,
                            "bearing": 84.0,
                            "speed_mps": 7.9,
                            "occupancy": "STANDING_ROOM_ONLY",
                            "ts": "2026-11-23T08:15:10Z",
                            "gps_age_s": 10.0,
                            "tracked": True,
                            "next_stop_id": "s0042",
                        }
                    ],
                }
            ]
        }
    )

    route_id: str
    at: datetime
    max_age_s: int
    vehicles: list[Vehicle]


class Arrival(BaseModel):
    feed_id: str
    route_id: str
    route_short_name: str | None
    headsign: str | None
    trip_id: str
    start_date: date = Field(description="Service date of the trip run.")
    time: datetime = Field(
        description="Predicted arrival (live) or scheduled departure (timetable), UTC."
    )
    scheduled_time: datetime | None = Field(description="The timetable's time for this run.")
    minutes_away: int = Field(description="Whole minutes from `at` to `time` (0 = due now).")
    uncertainty_s: float | None = Field(
        description="One standard deviation of the prediction, seconds; null from the timetable."
    )
    vehicle_id: str | None
    live: bool = Field(
        description="True: predicted from a bus's GPS. False: the timetable (no fresh GPS)."
    )
    gps_age_s: float | None = Field(description="Age of the GPS fix behind the prediction, s.")
    frequency_based: bool = Field(description="A trip that runs every N minutes (no fixed time).")


class Arrivals(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "stop": {
                        "feed_id": "shymkent",
                        "stop_id": "s0042",
                        "stop_code": None,
                        "name": "Тәуке хан даңғылы",
                        "lat": 42.3175,
                        "lon": 69.5869,
                    },
                    "at": "2026-11-23T08:15:20Z",
                    "live_max_age_s": 90,
                    "arrivals": [
                        {
                            "feed_id": "shymkent",
                            "route_id": "r07",
                            "route_short_name": "7",
                            "headsign": None,
                            "trip_id": "r07-wd-0815-0",
                            "start_date": "2026-11-23",
                            "time": "2026-11-23T08:19:05Z",
                            "scheduled_time": "2026-11-23T08:17:40Z",
                            "minutes_away": 3,
                            "uncertainty_s": 41.0,
                            "vehicle_id": "shy-bus-0042",
                            "live": True,
                            "gps_age_s": 9.6,
                            "frequency_based": False,
                        }
                    ],
                }
            ]
        }
    )

    stop: Stop
    at: datetime = Field(description="The time the answer is for (now unless `at` was given).")
    live_max_age_s: int = Field(description="GPS older than this is not used for predictions.")
    arrivals: list[Arrival] = Field(description="Soonest first.")


def _parse_near(near: str) -> tuple[float, float]:
    lat_s, lon_s = near.split(",")
    lat, lon = float(lat_s), float(lon_s)
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise HTTPException(422, "`near` must be `lat,lon` with lat in −90…90 and lon in −180…180")
    return lat, lon


@router.get(
    "/v1/stops",
    response_model=StopsNear,
    summary="Bus stops near a place",
    responses=_PROBLEMS,
    dependencies=[RateLimited],
)
async def get_stops_near(
    conn: ConnDep,
    response: Response,
    near: Annotated[
        str,
        Query(
            pattern=r"^\s*-?\d{1,3}(\.\d+)?\s*,\s*-?\d{1,3}(\.\d+)?\s*$",
            description="`lat,lon` in decimal degrees (WGS 84).",
            examples=["42.3171,69.5862"],
        ),
    ],
    radius_m: Annotated[
        float,
        Query(
            gt=0,
            le=schedule.MAX_NEAR_RADIUS_M,
            description="Search radius, metres.",
            examples=[500],
        ),
    ] = 500.0,
    limit: Annotated[int, Query(ge=1, le=100, description="At most this many stops.")] = 20,
    lang: LangQuery = None,
    feed: FeedQuery = None,
) -> StopsNear:
    """Boarding stops within `radius_m` of `near`, nearest first, with their names in `lang`.
    Public, rate-limited, cacheable for an hour."""
    lat, lon = _parse_near(near)
    rows = await schedule.stops_near(
        conn, lat, lon, radius_m=radius_m, limit=limit, lang=lang, feed_id=feed
    )
    response.headers["Cache-Control"] = SCHEDULE_CACHE
    return StopsNear(
        lat=lat,
        lon=lon,
        radius_m=radius_m,
        stops=[
            NearbyStop(
                feed_id=r.feed_id,
                stop_id=r.stop_id,
                stop_code=r.stop_code,
                name=r.name,
                lat=r.lat,
                lon=r.lon,
                distance_m=round(r.distance_m, 1),
            )
            for r in rows
        ],
    )


@router.get(
    "/v1/routes",
    response_model=Routes,
    summary="Every bus route",
    responses=_PROBLEMS,
    dependencies=[RateLimited],
)
async def get_routes(
    conn: ConnDep, response: Response, lang: LangQuery = None, feed: FeedQuery = None
) -> Routes:
    """The routes of the active GTFS feeds (or of `feed`), in the feeds' own order, with names
    in `lang`, colours and agency. Public, rate-limited, cacheable for an hour."""
    rows = await schedule.routes(conn, lang=lang, feed_id=feed)
    response.headers["Cache-Control"] = SCHEDULE_CACHE
    return Routes(routes=[Route.model_validate(r, from_attributes=True) for r in rows])


@router.get(
    "/v1/vehicles",
    response_model=Vehicles,
    summary="Buses on a route now, with their newest GPS fix",
    responses=_PROBLEMS,
    dependencies=[RateLimited],
)
async def get_vehicles(
    conn: ConnDep,
    response: Response,
    route: Annotated[
        str,
        Query(min_length=1, max_length=255, description="GTFS route_id.", examples=["r07"]),
    ],
    feed: FeedQuery = None,
    max_age_s: Annotated[
        int, Query(ge=10, le=3600, description="Leave out buses silent for longer, seconds.")
    ] = 300,
) -> Vehicles:
    """Each bus whose newest fix (by event time) is on `route` and at most `max_age_s` old:
    position, heading, speed, occupancy, trip and `gps_age_s`. The trip is the one the tracker
    matched the bus to, else the one the bus reports. Public, rate-limited, cacheable 10 s."""
    at = datetime.now(UTC)
    rows = await live.vehicles_now(
        conn, at, timedelta(seconds=max_age_s), feed_id=feed, route_id=route
    )
    response.headers["Cache-Control"] = LIVE_CACHE
    return Vehicles(
        route_id=route,
        at=at,
        max_age_s=max_age_s,
        vehicles=[
            Vehicle(
                feed_id=v.feed_id,
                vehicle_id=v.vehicle_id,
                route_id=v.route_id,
                trip_id=v.trip_id,
                start_date=v.start_date,
                lat=v.lat,
                lon=v.lon,
                bearing=v.bearing,
                speed_mps=v.speed_mps,
                occupancy=v.occupancy,
                ts=v.ts,
                gps_age_s=round(max(0.0, (at - v.ts).total_seconds()), 1),
                tracked=v.tracked,
                next_stop_id=v.next_stop_id,
            )
            for v in rows
        ],
    )


@router.get(
    "/v1/stops/{stop_id}/arrivals",
    response_model=Arrivals,
    summary="Next buses at a stop: live predictions, else the timetable",
    responses={404: {"description": "Unknown stop (problem+json)."}, **_PROBLEMS},
    dependencies=[RateLimited],
)
async def get_arrivals(
    services: ServicesDep,
    stop_id: Annotated[
        str,
        Path(min_length=1, max_length=255, description="GTFS stop_id.", examples=["s0042"]),
    ],
    lang: LangQuery = None,
    limit: Annotated[int, Query(ge=1, le=50, description="At most this many arrivals.")] = 10,
    feed: FeedQuery = None,
    at: Annotated[
        datetime | None,
        Query(
            description="Answer as of this time (RFC 3339) instead of now: for replays and "
            "tests. Live predictions are the current ones, counted fresh relative to `at`.",
            examples=["2026-11-23T08:15:20Z"],
        ),
    ] = None,
) -> Response:
    """The next `limit` buses at the stop, soonest first: route, headsign (in `lang`), time,
    minutes away, and for a bus tracked by GPS (`live`: true) its predicted arrival with its
    uncertainty (one standard deviation), vehicle and GPS age. A trip run without fresh GPS
    (none within `live_max_age_s`) comes from the timetable (`live`: false). A stop id found
    in several feeds needs `feed`. Public, rate-limited, cacheable 2 s: everyone asking about
    the same stop within that time gets the same answer (`at` says when it was made, the `Age`
    header how long ago)."""
    headers = {"Cache-Control": ARRIVALS_CACHE}
    if at is not None:  # a replay: made for this caller alone
        body = await _arrivals_body(services, stop_id, feed, lang, limit, as_utc(at, "at"))
        return Response(body, media_type=JSON, headers=headers)

    async def build() -> bytes:
        return await _arrivals_body(services, stop_id, feed, lang, limit, datetime.now(UTC))

    answer = await services.answers.arrivals.get((stop_id, feed, lang, limit), build)
    if answer.hit:
        headers["Age"] = str(int(answer.age_s))
    return Response(answer.value, media_type=JSON, headers=headers)


async def _arrivals_body(
    services: Services,
    stop_id: str,
    feed: str | None,
    lang: str | None,
    limit: int,
    when: datetime,
) -> bytes:
    """The `Arrivals` answer as JSON. Built as plain data and serialized by orjson: the shape
    is `Arrivals`' (the tests check it against the model), without validating models that
    this code has just filled from typed rows."""
    async with pool_of(services).connection() as conn:

        async def stop_info() -> list[StopInfo]:
            return await live.find_stop(conn, stop_id, feed_id=feed, lang=lang)

        stops = (await services.answers.stops.get((stop_id, feed, lang), stop_info)).value
        if not stops:
            where = f"feed {feed!r}" if feed else "any active GTFS feed"
            raise HTTPException(404, f"no stop {stop_id!r} in {where}; find stops with /v1/stops")
        if len(stops) > 1:
            feeds = ", ".join(s.feed_id for s in stops)
            raise HTTPException(422, f"stop {stop_id!r} is in several feeds ({feeds}); add `feed`")
        stop = stops[0]
        rows = await next_arrivals(conn, stop, when, max_age=LIVE_MAX_AGE, limit=limit, lang=lang)
    answer = {
        "stop": {
            "feed_id": stop.feed_id,
            "stop_id": stop.stop_id,
            "stop_code": stop.stop_code,
            "name": stop.name,
            "lat": stop.lat,
            "lon": stop.lon,
        },
        "at": when,
        "live_max_age_s": LIVE_MAX_AGE_S,
        "arrivals": [
            {
                "feed_id": a.feed_id,
                "route_id": a.route_id,
                "route_short_name": a.route_short_name,
                "headsign": a.headsign,
                "trip_id": a.trip_id,
                "start_date": a.start_date,
                "time": a.at,
                "scheduled_time": a.scheduled_at,
                "minutes_away": max(0, math.floor((a.at - when).total_seconds() / 60)),
                "uncertainty_s": None if a.uncertainty_s is None else float(a.uncertainty_s),
                "vehicle_id": a.vehicle_id,
                "live": a.live,
                "gps_age_s": (
                    None
                    if a.position_ts is None
                    else round(max(0.0, (when - a.position_ts).total_seconds()), 1)
                ),
                "frequency_based": a.frequency_based,
            }
            for a in rows
        ],
    }
    return orjson.dumps(answer, option=orjson.OPT_UTC_Z)
