"""Street lighting: what the city's lamps are doing now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from api.deps import ConnDep, RateLimited
from api.timeparams import as_utc
from smartcity.cities import CITIES
from smartcity.queries.lighting import lighting_summary

router = APIRouter(prefix="/v1/lighting", tags=["lighting"])

_SUMMARY_EXAMPLE: JsonDict = {
    "city": "astana",
    "at": "2026-11-23T16:00:00Z",
    "window_s": 300,
    "totals": {
        "district": "all",
        "lamps_reporting": 120,
        "lamps_on": 118,
        "lamps_faulty": 2,
        "power_kw": 9.412,
    },
    "districts": [
        {
            "district": "esil",
            "lamps_reporting": 24,
            "lamps_on": 24,
            "lamps_faulty": 0,
            "power_kw": 1.96,
        }
    ],
}


class DistrictSummary(BaseModel):
    district: str
    lamps_reporting: int = Field(description="Lamps with a reading in the window.")
    lamps_on: int = Field(description="Of those, lamps whose latest reading says on.")
    lamps_faulty: int = Field(
        description="Lamps reporting a failure, or on (dim > 0) but drawing under 1 W."
    )
    power_kw: float = Field(description="Sum of the latest power readings, kW.")


class LightingSummary(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_SUMMARY_EXAMPLE]})

    city: str
    at: datetime = Field(description="End of the window (UTC).")
    window_s: int
    totals: DistrictSummary = Field(description="The whole city (district = 'all').")
    districts: list[DistrictSummary]


@router.get(
    "/summary",
    response_model=LightingSummary,
    summary="Lamps reporting, on, faulty and power now, per district",
    responses={
        404: {"description": "Unknown city (problem+json)."},
        422: {"description": "Malformed parameter (problem+json)."},
        429: {"description": "Rate limit: wait Retry-After seconds (problem+json)."},
    },
    dependencies=[RateLimited],
)
async def get_summary(
    conn: ConnDep,
    city: Annotated[
        str, Query(description="City slug.", examples=["astana"], pattern="^[a-z-]+$")
    ] = "astana",
    window_s: Annotated[
        int,
        Query(
            ge=10,
            le=86400,
            description="How far back a lamp's latest reading may be, seconds.",
            examples=[300],
        ),
    ] = 300,
    at: Annotated[
        datetime | None,
        Query(
            description="End of the window (RFC 3339); defaults to now. Use it for replays.",
            examples=["2026-11-23T16:00:00Z"],
        ),
    ] = None,
) -> LightingSummary:
    """Each district's lamps by their latest reading (by event time) within `window_s` before
    `at`: how many report, how many are on, how many look faulty, and their power in kW.
    Public (a city KPI) and rate-limited per client."""
    if city not in CITIES:
        raise HTTPException(
            status_code=404,
            detail=f"unknown city {city!r}; known cities: {', '.join(sorted(CITIES))}",
        )
    end = datetime.now(UTC) if at is None else as_utc(at, "at")
    rows = await lighting_summary(conn, city, end, timedelta(seconds=window_s))
    districts = [
        DistrictSummary(
            district=r.district,
            lamps_reporting=r.lamps_reporting,
            lamps_on=r.lamps_on,
            lamps_faulty=r.lamps_faulty,
            power_kw=round(r.power_kw, 3),
        )
        for r in rows
    ]
    totals = DistrictSummary(
        district="all",
        lamps_reporting=sum(d.lamps_reporting for d in districts),
        lamps_on=sum(d.lamps_on for d in districts),
        lamps_faulty=sum(d.lamps_faulty for d in districts),
        power_kw=round(sum(d.power_kw for d in districts), 3),
    )
    return LightingSummary(city=city, at=end, window_s=window_s, totals=totals, districts=districts)
