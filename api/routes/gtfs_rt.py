"""GTFS-Realtime feeds of a city's buses: vehicle positions and trip updates.

One feed per GTFS feed (`?feed=shymkent`, the feed a city's buses run on), as protobuf
(`application/x-protobuf`, what trip planners poll) or, with `?format=json`, the same
FeedMessage in protobuf's JSON mapping. Public, rate-limited, cacheable for 10 s: the spec's
best practices ask producers to refresh at least every 30 s. The API builds each feed (per
kind, feed and format) at most once per `api_answer_cache_s` (2 s) and serves that build to
every poller meanwhile (`api.answers`): building the trip updates of 800 buses takes 0.3–0.5 s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from google.transit.gtfs_realtime_pb2 import FeedMessage
from psycopg import AsyncConnection

from api.deps import RateLimited, Services, ServicesDep, pool_of
from api.routes.transit import LIVE_CACHE, LIVE_MAX_AGE
from smartcity.queries import transit_live as live
from smartcity.transit import realtime

router = APIRouter(prefix="/gtfs-rt", tags=["gtfs-realtime"])

PROTOBUF = "application/x-protobuf"

FeedParam = Annotated[
    str,
    Query(
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="GTFS feed id: the city whose buses to describe (the feed named after it).",
        examples=["shymkent"],
    ),
]
FormatParam = Annotated[
    Literal["pb", "json"],
    Query(description="`pb`: binary protobuf (default); `json`: the same feed as JSON."),
]


def _responses(example: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": "A GTFS-Realtime FeedMessage (FULL_DATASET).",
            "content": {
                PROTOBUF: {
                    "schema": {"type": "string", "format": "binary"},
                    "example": "(binary protobuf FeedMessage)",
                },
                "application/json": {"schema": {"type": "object"}, "example": example},
            },
        },
        404: {"description": "Unknown feed (problem+json)."},
        422: {"description": "Malformed parameter (problem+json)."},
        429: {"description": "Rate limit: wait Retry-After seconds (problem+json)."},
    }


_HEADER = {"gtfs_realtime_version": "2.0", "incrementality": "FULL_DATASET"}
_TRIP = {
    "trip_id": "r07-wd-0815-0",
    "route_id": "r07",
    "start_date": "20261123",
    "schedule_relationship": "SCHEDULED",
}
_VP_EXAMPLE = {
    "header": {**_HEADER, "timestamp": "1795421720"},
    "entity": [
        {
            "id": "shy-bus-0042",
            "vehicle": {
                "trip": _TRIP,
                "vehicle": {"id": "shy-bus-0042"},
                "position": {"latitude": 42.3171, "longitude": 69.5862, "bearing": 84.0},
                "current_stop_sequence": 12,
                "stop_id": "s0042",
                "current_status": "IN_TRANSIT_TO",
                "timestamp": "1795421710",
            },
        }
    ],
}
_TU_EXAMPLE = {
    "header": {**_HEADER, "timestamp": "1795421720"},
    "entity": [
        {
            "id": "r07-wd-0815-0:20261123",
            "trip_update": {
                "trip": _TRIP,
                "vehicle": {"id": "shy-bus-0042"},
                "stop_time_update": [
                    {
                        "stop_sequence": 12,
                        "stop_id": "s0042",
                        "arrival": {"time": "1795421945", "uncertainty": 41},
                        "schedule_relationship": "SCHEDULED",
                    }
                ],
                "timestamp": "1795421710",
            },
        }
    ],
}


async def _check_feed(conn: AsyncConnection[tuple[object, ...]], feed: str) -> None:
    if not await live.feed_exists(conn, feed):
        raise HTTPException(
            404, f"no GTFS feed {feed!r}; import it with `smartcity gtfs import --feed-id`"
        )


def _serialize(message: FeedMessage, fmt: str) -> bytes:
    if fmt == "json":
        return realtime.to_json(message).encode()
    return bytes(message.SerializeToString())


async def _answer(
    services: Services,
    kind: str,
    feed: str,
    fmt: str,
    build: Callable[[AsyncConnection[tuple[object, ...]], datetime], Awaitable[FeedMessage]],
) -> Response:
    """The feed of `kind` for `feed` in `fmt`, built at most once per `api_answer_cache_s`
    (per kind, feed and format) and shared by every poller meanwhile. The header's
    `timestamp` is when it was built (the spec: the moment the feed's content was made), and
    `Age` says how long ago, so consumers see exactly how fresh it is."""

    async def make() -> bytes:
        async with pool_of(services).connection() as conn:
            await _check_feed(conn, feed)
            return _serialize(await build(conn, datetime.now(UTC)), fmt)

    answer = await services.answers.feeds.get((kind, feed, fmt), make)
    headers = {"Cache-Control": LIVE_CACHE}
    if answer.hit:
        headers["Age"] = str(int(answer.age_s))
    media_type = "application/json" if fmt == "json" else PROTOBUF
    return Response(answer.value, media_type=media_type, headers=headers)


@router.get(
    "/vehicle-positions",
    summary="GTFS-Realtime VehiclePositions of a city's buses",
    response_class=Response,
    responses=_responses(_VP_EXAMPLE),
    dependencies=[RateLimited],
)
async def vehicle_positions(
    services: ServicesDep, feed: FeedParam, format: FormatParam = "pb"
) -> Response:
    """Every bus of the feed's city with a GPS fix in the last 90 s: position, bearing, speed,
    occupancy, its trip (as matched by the tracker, else as reported) and the next stop it is
    predicted at. Public, rate-limited, cacheable 10 s; the API itself rebuilds the feed at
    most every few seconds (the header's `timestamp` says when)."""

    async def build(conn: AsyncConnection[tuple[object, ...]], at: datetime) -> FeedMessage:
        vehicles = await live.vehicles_now(conn, at, LIVE_MAX_AGE, feed_id=feed)
        rows = await live.fresh_predictions(conn, feed, at, LIVE_MAX_AGE)
        return realtime.vehicle_positions(vehicles, rows, at)

    return await _answer(services, "vehicle-positions", feed, format, build)


@router.get(
    "/trip-updates",
    summary="GTFS-Realtime TripUpdates: predicted arrivals of a city's buses",
    response_class=Response,
    responses=_responses(_TU_EXAMPLE),
    dependencies=[RateLimited],
)
async def trip_updates(
    services: ServicesDep, feed: FeedParam, format: FormatParam = "pb"
) -> Response:
    """One TripUpdate per trip run with a bus tracked on it (GPS within 90 s): the predicted
    arrival time at each stop still ahead, with its uncertainty (one standard deviation, s).
    Trips without a live bus are left out: consumers use the static timetable for them.
    Public, rate-limited, cacheable 10 s; the API itself rebuilds the feed at most every few
    seconds (the header's `timestamp` says when)."""

    async def build(conn: AsyncConnection[tuple[object, ...]], at: datetime) -> FeedMessage:
        rows = await live.fresh_predictions(conn, feed, at, LIVE_MAX_AGE)
        return realtime.trip_updates(rows, at)

    return await _answer(services, "trip-updates", feed, format, build)
