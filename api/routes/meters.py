"""A resident's own meter: consumption over a time range, with that meter's token only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import ConnDep, MeterTokenDep, RateLimited
from api.timeparams import as_utc
from smartcity.queries.auth import token_reads_meter
from smartcity.queries.metering import UNITS, meter_consumption
from smartcity.security import METER_TOKEN_PREFIX, looks_like

router = APIRouter(prefix="/v1/meters", tags=["residents"])

DEFAULT_RANGE = timedelta(days=30)
# A year and a month: a resident comparing this winter with the last one.
MAX_RANGE = timedelta(days=400)

# One refusal for every failure (no token, a malformed, unknown or revoked one, another meter's
# token, a meter that does not exist): the answer must not tell which meter ids exist.
REFUSED = HTTPException(
    401,
    "This meter's token is required: send `Authorization: Bearer <meter token>`.",
    headers={"WWW-Authenticate": 'Bearer realm="smartcity-meter"'},
)


class MeterConsumption(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "meter_id": "ast-em-000123",
                    "kind": "electricity",
                    "unit": "kWh",
                    "since": "2026-11-01T00:00:00Z",
                    "until": "2026-11-23T00:00:00Z",
                    "consumption": 412.375,
                    "readings": 2113,
                    "first_reading": "2026-10-31T23:45:00Z",
                    "last_reading": "2026-11-22T23:45:00Z",
                    "complete": True,
                    "register_resets": 0,
                }
            ]
        }
    )

    meter_id: str
    kind: Literal["electricity", "water"] | None = Field(description="null before any reading.")
    unit: Literal["kWh", "m3"] | None
    since: datetime
    until: datetime
    consumption: float = Field(
        description="Sum of the register's increases over the range (kWh or m³)."
    )
    readings: int = Field(description="Readings used, including the one at or before `since`.")
    first_reading: datetime | None
    last_reading: datetime | None
    complete: bool = Field(
        description="True if a reading at or before `since` anchors the start; otherwise "
        "consumption before the first reading in the range is unknown and not counted."
    )
    register_resets: int = Field(
        description="Times the register went down (meter replaced or reset); not counted."
    )


@router.get(
    "/{meter_id}/consumption",
    response_model=MeterConsumption,
    summary="A resident's consumption over a time range (meter token)",
    responses={
        401: {"description": "No token, or not this meter's token (problem+json)."},
        422: {"description": "Malformed parameter (problem+json)."},
        429: {"description": "Rate limit: wait Retry-After seconds (problem+json)."},
    },
    dependencies=[RateLimited],
)
async def get_consumption(
    conn: ConnDep,
    token: MeterTokenDep,
    meter_id: Annotated[
        str,
        Path(
            pattern=r"^[A-Za-z0-9_.-]{1,64}$",
            description="The resident's meter.",
            examples=["ast-em-000123"],
        ),
    ],
    since: Annotated[
        datetime | None,
        Query(
            alias="from",
            description="Start (RFC 3339); default 30 days before `to`.",
            examples=["2026-11-01T00:00:00+05:00"],
        ),
    ] = None,
    until: Annotated[
        datetime | None,
        Query(
            alias="to",
            description="End (RFC 3339); default now.",
            examples=["2026-11-23T00:00:00Z"],
        ),
    ] = None,
) -> MeterConsumption:
    """Electricity (kWh) or water (m³) used in (`from`, `to`], from the meter's register
    readings: the increase from the last reading at or before `from` to the last one at or
    before `to`. Only with this meter's token (from the utility, or `smartcity apikey
    meter-token`); any other token is refused exactly like none. Public and rate-limited."""
    if token is None or not looks_like(token, METER_TOKEN_PREFIX):
        raise REFUSED
    if not await token_reads_meter(conn, token, meter_id):
        raise REFUSED
    end = datetime.now(UTC) if until is None else as_utc(until, "to")
    start = end - DEFAULT_RANGE if since is None else as_utc(since, "from")
    if start >= end:
        raise HTTPException(422, "`from` must be before `to`")
    if end - start > MAX_RANGE:
        raise HTTPException(422, f"the range is at most {MAX_RANGE.days} days; ask for less")
    c = await meter_consumption(conn, meter_id, start, end)
    return MeterConsumption.model_validate(
        {
            "meter_id": meter_id,
            "kind": c.kind,
            "unit": UNITS.get(c.kind) if c.kind else None,
            "since": start,
            "until": end,
            "consumption": round(c.consumption, 6),
            "readings": c.readings,
            "first_reading": c.first_ts,
            "last_reading": c.last_ts,
            "complete": c.first_ts is not None and c.first_ts <= start,
            "register_resets": c.resets,
        }
    )
