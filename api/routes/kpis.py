"""The city's public KPIs: city-level aggregates only, never a lamp's or a meter's figures.

Public, rate-limited per client and cacheable (`Cache-Control: public`): residents and
journalists see how the city's lighting and metering do, and nothing about any household.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import ConnDep, RateLimited, SettingsDep
from smartcity.cities import CITIES
from smartcity.queries.aggregates import Bucket, Page, meter_series
from smartcity.queries.energy import lighting_totals
from smartcity.queries.kpis import (
    energy_per_lamp_night_kwh,
    fault_mttr,
    meter_reporting_rate,
    transit_kpis,
)
from smartcity.rollups.maintain import local_day_span

router = APIRouter(prefix="/v1/cities", tags=["kpis"])

# The figures move with each maintenance pass (minutes): five minutes of caching is harmless
# and spares the database a crowd refreshing the same page.
CACHE_MAX_AGE_S = 300
DEFAULT_DAYS = 7
MAX_DAYS = 400
EARLIEST_DAY = date(1970, 1, 2)
LATEST_DAY = date(2199, 12, 30)


class LightingKpis(BaseModel):
    energy_kwh: float = Field(description="Energy used by the city's lamps, kWh.")
    saved_by_dimming_kwh: float = Field(
        description="What the same lamps would have used more at full power, kWh."
    )
    availability_pct: float | None = Field(
        description="Share of reporting lamp-hours without a fault, %."
    )
    energy_per_lamp_night_kwh: float | None = Field(
        description="kWh per reporting lamp per local day."
    )
    fault_repairs: int = Field(description="Lamp faults repaired in the period.")
    mttr_h: float | None = Field(description="Mean time to repair of those faults, hours.")


class MeterKpis(BaseModel):
    consumption: float = Field(description="Consumption of all the city's meters (kWh or m³).")
    unit: str
    reporting_pct: float | None = Field(
        description="Mean share of the city's meters reporting each day, %."
    )


class TransitKpis(BaseModel):
    arrivals: int = Field(description="Observed bus stop arrivals.")
    on_time_pct: float | None = Field(
        description="Share of arrivals from 1 min early to 5 min late of the schedule "
        "(the configured window), %."
    )
    headways: int = Field(description="Observed headways (consecutive buses at a stop).")
    headway_adherence_pct: float | None = Field(
        description="Share of headways within 0.5–1.5 × the scheduled one, %."
    )
    cv_h: float | None = Field(
        description="Headway coefficient of variation: stddev(observed − scheduled) ÷ mean "
        "scheduled headway (lower is more regular)."
    )
    eta_samples: int = Field(description="Sampled arrival predictions scored.")
    eta_accuracy: dict[str, float | None] = Field(
        description="Per horizon bucket (minutes ahead: 0_3, 3_6, 6_10, 10_15), the share of "
        "sampled predictions within the bucket's early/late tolerance, 0..1."
    )
    eta_score: float | None = Field(
        description="Mean of the bucket accuracies (a bucket without samples counts as 0)."
    )


class CityKpis(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "city": "astana",
                    "tz": "Asia/Almaty",
                    "first_day": "2026-11-16",
                    "last_day": "2026-11-22",
                    "lighting": {
                        "energy_kwh": 58123.4,
                        "saved_by_dimming_kwh": 19876.1,
                        "availability_pct": 99.2,
                        "energy_per_lamp_night_kwh": 0.83,
                        "fault_repairs": 41,
                        "mttr_h": 6.5,
                    },
                    "electricity": {"consumption": 812345.6, "unit": "kWh", "reporting_pct": 98.7},
                    "water": {"consumption": 40211.2, "unit": "m3", "reporting_pct": 97.9},
                    "transit": {
                        "arrivals": 412345,
                        "on_time_pct": 78.4,
                        "headways": 398211,
                        "headway_adherence_pct": 71.2,
                        "cv_h": 0.38,
                        "eta_samples": 81234,
                        "eta_accuracy": {"0_3": 0.93, "3_6": 0.88, "6_10": 0.84, "10_15": 0.79},
                        "eta_score": 0.86,
                    },
                }
            ]
        }
    )

    city: str
    tz: str
    first_day: date = Field(description="First local day of the period.")
    last_day: date = Field(description="Last local day of the period (inclusive).")
    lighting: LightingKpis
    electricity: MeterKpis
    water: MeterKpis
    transit: TransitKpis


def _day(value: date | None, name: str, default: date) -> date:
    day = default if value is None else value
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise HTTPException(422, f"`{name}` must be between 1970-01-02 and 2199-12-30")
    return day


@router.get(
    "/{city}/kpis",
    response_model=CityKpis,
    summary="The city's lighting, metering and transit KPIs over local days (public)",
    responses={
        404: {"description": "Unknown city (problem+json)."},
        422: {"description": "Bad date or range (problem+json)."},
        429: {"description": "Rate limit: wait Retry-After seconds (problem+json)."},
    },
    dependencies=[RateLimited],
)
async def get_kpis(
    response: Response,
    conn: ConnDep,
    settings: SettingsDep,
    city: Annotated[
        str, Path(description="City slug.", examples=["astana"], pattern="^[a-z-]{1,32}$")
    ],
    first: Annotated[
        date | None,
        Query(
            alias="from",
            description="First local day; default 7 days before `to`.",
            examples=["2026-11-16"],
        ),
    ] = None,
    last: Annotated[
        date | None,
        Query(
            alias="to",
            description="Last local day, inclusive; default yesterday (the last whole day).",
            examples=["2026-11-22"],
        ),
    ] = None,
) -> CityKpis:
    """City-wide figures over whole local days: lighting energy, energy saved by dimming,
    availability, energy per lamp-night, lamp repairs and mean time to repair; electricity and
    water consumption and the share of meters reporting; bus on-time %, headway adherence and
    ETA accuracy by horizon bucket (formulas in docs/kpis.md). Only
    city-level aggregates: no lamp, meter or household appears here. Public, rate-limited,
    cacheable for five minutes."""
    if city not in CITIES:
        raise HTTPException(
            404, f"unknown city {city!r}; known cities: {', '.join(sorted(CITIES))}"
        )
    c = CITIES[city]
    yesterday = datetime.now(UTC).astimezone(c.tz).date() - timedelta(days=1)
    last_day = _day(last, "to", yesterday)
    first_day = _day(first, "from", last_day - timedelta(days=DEFAULT_DAYS - 1))
    if first_day > last_day:
        raise HTTPException(422, "`from` must be on or before `to`")
    if (last_day - first_day).days + 1 > MAX_DAYS:
        raise HTTPException(422, f"the period is at most {MAX_DAYS} days; ask for less")
    start, _ = local_day_span(first_day, c.tz)
    _, end = local_day_span(last_day, c.tz)
    lookback = timedelta(hours=settings.rollup_lookback_h)
    totals, _ = await lighting_totals(conn, city, start, end, by_district=False, lookback=lookback)
    t = totals[0] if totals else None
    mttr = await fault_mttr(conn, city, start, end)
    reporting = await meter_reporting_rate(conn, city, first_day, last_day)
    meters: dict[str, MeterKpis] = {}
    for kind, unit in (("electricity", "kWh"), ("water", "m3")):
        rows, _ = await meter_series(
            conn,
            city,
            kind,
            start,
            end,
            bucket=Bucket.DAY,
            tz=c.tz,
            level="city",
            lookback=lookback,
            page=Page(MAX_DAYS + 1, 0),
        )
        meters[kind] = MeterKpis(
            consumption=round(sum(r.consumption for r in rows), 6),
            unit=unit,
            reporting_pct=None if kind not in reporting else round(reporting[kind], 3),
        )
    response.headers["Cache-Control"] = f"public, max-age={CACHE_MAX_AGE_S}"
    per_night = await energy_per_lamp_night_kwh(conn, city, first_day, last_day)
    bus = await transit_kpis(conn, city, first_day, last_day)
    return CityKpis(
        city=city,
        tz=c.tz_name,
        first_day=first_day,
        last_day=last_day,
        lighting=LightingKpis(
            energy_kwh=round(t.energy_kwh, 6) if t else 0.0,
            saved_by_dimming_kwh=round(t.saved_by_dimming_kwh, 6) if t else 0.0,
            availability_pct=None
            if t is None or t.availability_pct is None
            else round(t.availability_pct, 4),
            energy_per_lamp_night_kwh=None if per_night is None else round(per_night, 6),
            fault_repairs=mttr.repairs,
            mttr_h=None if mttr.mean_hours is None else round(mttr.mean_hours, 3),
        ),
        electricity=meters["electricity"],
        water=meters["water"],
        transit=TransitKpis(
            arrivals=bus.arrivals,
            on_time_pct=None if bus.on_time_pct is None else round(bus.on_time_pct, 3),
            headways=bus.headways,
            headway_adherence_pct=None
            if bus.headway_adherence_pct is None
            else round(bus.headway_adherence_pct, 3),
            cv_h=None if bus.cv_h is None else round(bus.cv_h, 4),
            eta_samples=bus.eta_samples,
            eta_accuracy={
                k: None if v is None else round(v, 4) for k, v in bus.eta_accuracy.items()
            },
            eta_score=None if bus.eta_score is None else round(bus.eta_score, 4),
        ),
    )
