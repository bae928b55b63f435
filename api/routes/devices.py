"""Devices (lamps, meters, buses): list, filter and search; one device; its recent history.

Operator routes: they need an API key (role viewer or above), because meter ids belong to
residents and are never public.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from api.deps import ConnDep, ViewerDep
from api.timeparams import as_utc
from smartcity.queries import devices as q
from smartcity.topics import Domain

router = APIRouter(prefix="/v1/devices", tags=["devices"])

# Default history window: the last day is what an operator looks at when a device misbehaves.
DEFAULT_HISTORY = timedelta(hours=24)
HISTORY_MAX_ROWS = 1000
# A page of 500 devices is ~150 kB of JSON: big enough to page through 50,000 lamps in 100
# requests, small enough to answer in a few milliseconds.
PAGE_MAX = 500

_AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No API key, or an unknown or revoked one (problem+json)."},
    403: {"description": "The key's role is too low (problem+json)."},
    422: {"description": "Malformed parameter (problem+json)."},
}

_DEVICE_EXAMPLE: JsonDict = {
    "domain": "lighting",
    "device_id": "ast-lamp-000042",
    "city": "astana",
    "district": "esil",
    "first_seen": "2026-11-01T12:00:00Z",
    "last_seen": "2026-11-23T16:00:00Z",
    "status": "online",
    "status_ts": "2026-11-23T11:00:00Z",
    "lat": 51.1281,
    "lon": 71.4305,
}

DeviceIdPath = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="The device's id.",
        examples=["ast-lamp-000042"],
    ),
]
DomainPath = Annotated[Domain, Path(description="lighting, metering or transit.")]


class Device(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_DEVICE_EXAMPLE]})

    domain: Domain
    device_id: str
    city: str
    district: str | None
    first_seen: datetime = Field(description="Event time of its oldest reading.")
    last_seen: datetime = Field(description="Event time of its newest reading.")
    status: Literal["online", "offline", "unknown"] = Field(
        description="From its retained status topic / last will; unknown if never reported."
    )
    status_ts: datetime | None
    lat: float | None
    lon: float | None


class DevicePage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_DEVICE_EXAMPLE], "next_cursor": None}]}
    )

    items: list[Device]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


class DeviceDetail(Device):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_DEVICE_EXAMPLE,
                    "latest_reading": {
                        "ts": "2026-11-23T16:00:00+00:00",
                        "district": "esil",
                        "cabinet_id": "ast-cab-0001",
                        "lamp_on": True,
                        "dim_pct": 100.0,
                        "power_w": 96.4,
                    },
                }
            ]
        }
    )

    latest_reading: dict[str, Any] | None = Field(
        description="Its newest reading by event time (not the last received), as stored."
    )


class History(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "domain": "lighting",
                    "device_id": "ast-lamp-000042",
                    "since": "2026-11-22T16:00:00Z",
                    "until": "2026-11-23T16:00:00Z",
                    "readings": [{"ts": "2026-11-23T16:00:00+00:00", "dim_pct": 100.0}],
                }
            ]
        }
    )

    domain: Domain
    device_id: str
    since: datetime
    until: datetime
    readings: list[dict[str, Any]] = Field(description="Newest first.")


def _device(row: q.DeviceRow) -> dict[str, Any]:
    return {
        "domain": row.domain,
        "device_id": row.device_id,
        "city": row.city,
        "district": row.district,
        "first_seen": row.first_seen,
        "last_seen": row.last_seen,
        "status": row.last_status or "unknown",
        "status_ts": row.status_ts,
        "lat": row.lat,
        "lon": row.lon,
    }


def _encode_cursor(row: q.DeviceRow) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([row.domain, row.device_id])).decode()


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, binascii.Error, orjson.JSONDecodeError, UnicodeEncodeError):
        value = None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise HTTPException(422, "`cursor` is not one this API returned; start without it")
    return value[0], value[1]


@router.get(
    "",
    response_model=DevicePage,
    summary="List, filter and search devices (paginated)",
    responses=_AUTH_RESPONSES,
)
async def list_devices(
    conn: ConnDep,
    _caller: ViewerDep,
    city: Annotated[
        str | None, Query(pattern="^[a-z-]{1,64}$", description="City slug.", examples=["astana"])
    ] = None,
    domain: Annotated[Domain | None, Query(description="Device domain.")] = None,
    district: Annotated[
        str | None,
        Query(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="District slug.", examples=["esil"]),
    ] = None,
    status: Annotated[
        Literal["online", "offline", "unknown"] | None,
        Query(description="Reported status; `unknown` = never reported one."),
    ] = None,
    q_prefix: Annotated[
        str | None,
        Query(
            alias="q",
            pattern=r"^[A-Za-z0-9_.-]{1,64}$",
            description="Search: device ids starting with this.",
            examples=["ast-lamp-0000"],
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX, description="Page size (≤ 500).")] = 100,
    cursor: Annotated[
        str | None,
        Query(
            max_length=400,
            description="`next_cursor` of the previous page.",
            examples=["WyJsaWdodGluZyIsImFzdC1sYW1wLTAwMDA0MiJd"],
        ),
    ] = None,
) -> DevicePage:
    """Devices ordered by domain and id, filtered by city, domain, district, status and id
    prefix. Keyset pagination: follow `next_cursor` until it is null (pages stay consistent
    while devices are added). Needs a viewer key."""
    after = _decode_cursor(cursor) if cursor else None
    flt = q.DeviceFilter(city, domain, district, status, q_prefix)
    rows = await q.list_devices(conn, flt, after, limit + 1)
    page = rows[:limit]
    next_cursor = _encode_cursor(page[-1]) if len(rows) > limit else None
    return DevicePage.model_validate(
        {"items": [_device(r) for r in page], "next_cursor": next_cursor}
    )


@router.get(
    "/{domain}/{device_id}",
    response_model=DeviceDetail,
    summary="One device, its status and its latest reading",
    responses={**_AUTH_RESPONSES, 404: {"description": "No such device (problem+json)."}},
)
async def get_device(
    conn: ConnDep, _caller: ViewerDep, domain: DomainPath, device_id: DeviceIdPath
) -> DeviceDetail:
    """The device from the registry, its reported status, and its newest reading by event time
    (a late, older reading never hides a newer one). Needs a viewer key."""
    found = await q.device_with_latest(conn, domain, device_id)
    if found is None:
        raise HTTPException(404, f"no {domain.value} device {device_id!r}")
    return DeviceDetail.model_validate({**_device(found.device), "latest_reading": found.latest})


@router.get(
    "/{domain}/{device_id}/history",
    response_model=History,
    summary="A device's recent readings",
    responses={**_AUTH_RESPONSES, 404: {"description": "No such device (problem+json)."}},
)
async def get_history(
    conn: ConnDep,
    _caller: ViewerDep,
    domain: DomainPath,
    device_id: DeviceIdPath,
    since: Annotated[
        datetime | None,
        Query(
            alias="from",
            description="Start (RFC 3339); default 24 h before `to`.",
            examples=["2026-11-22T16:00:00Z"],
        ),
    ] = None,
    until: Annotated[
        datetime | None,
        Query(
            alias="to",
            description="End (RFC 3339); default now.",
            examples=["2026-11-23T16:00:00Z"],
        ),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=HISTORY_MAX_ROWS, description="At most this many readings.")
    ] = 200,
) -> History:
    """Readings with event time in [`from`, `to`], newest first, at most `limit` (≤ 1000).
    Needs a viewer key."""
    end = datetime.now(UTC) if until is None else as_utc(until, "to")
    start = end - DEFAULT_HISTORY if since is None else as_utc(since, "from")
    if start > end:
        raise HTTPException(422, "`from` is after `to`")
    if await q.get_device(conn, domain, device_id) is None:
        raise HTTPException(404, f"no {domain.value} device {device_id!r}")
    readings = await q.reading_history(conn, domain, device_id, start, end, limit)
    return History(domain=domain, device_id=device_id, since=start, until=end, readings=readings)
