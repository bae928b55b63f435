"""Live stream of vehicle positions as Server-Sent Events (alerts join when they exist)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from api.deps import RateLimited, ServicesDep
from api.live import Subscriber

router = APIRouter(prefix="/v1/live", tags=["live"])

# A comment line this often keeps proxies and browsers from closing an idle stream.
KEEPALIVE_S = 15.0

_EXAMPLE = (
    ": connected\n\n"
    "event: position\n"
    'data: {"city":"shymkent","vehicle_id":"shy-bus-0042","ts":"2026-11-23T08:15:10Z",'
    '"route_id":"r07","trip_id":"r07-wd-0815-0","lat":42.3171,"lon":69.5862,'
    '"bearing":84.0,"speed_mps":7.9,"occupancy":"STANDING_ROOM_ONLY","start_date":"20261123"}\n\n'
    "event: dropped\n"
    'data: {"dropped":12}\n\n'
)


async def _events(sub: Subscriber) -> AsyncIterator[bytes]:
    yield b": connected\n\n"
    while True:
        try:
            data = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
        except TimeoutError:
            yield b": keepalive\n\n"
            continue
        if sub.dropped > sub.dropped_reported:
            yield b'event: dropped\ndata: {"dropped":%d}\n\n' % sub.dropped
            sub.dropped_reported = sub.dropped
        yield b"event: position\ndata: " + data + b"\n\n"


@router.get(
    "/vehicles",
    summary="Live vehicle positions (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"example": _EXAMPLE}},
            "description": "An endless `text/event-stream`.",
        },
        429: {"description": "Rate limit: wait Retry-After seconds (problem+json)."},
    },
    dependencies=[RateLimited],
)
async def vehicles(
    services: ServicesDep,
    city: Annotated[
        str | None, Query(pattern="^[a-z-]{1,64}$", description="City slug.", examples=["shymkent"])
    ] = None,
    route_id: Annotated[
        str | None,
        Query(min_length=1, max_length=255, description="GTFS route_id.", examples=["r07"]),
    ] = None,
) -> StreamingResponse:
    """Each bus position as it arrives (`event: position`, data = the GPS fix plus `city`),
    filtered by city and route. A client that reads slower than positions arrive loses the
    oldest queued ones (up to SMARTCITY_API_STREAM_QUEUE_MAX are kept) and is told how many in
    an `event: dropped` (`{"dropped": total}`). A comment line every 15 s keeps the connection
    open. Public and rate-limited (the limit counts connections)."""

    async def stream() -> AsyncIterator[bytes]:
        with services.hub.subscribe(city, route_id) as sub:
            async for chunk in _events(sub):
                yield chunk

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
