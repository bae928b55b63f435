"""Operator aggregates: lighting energy and status, meter consumption, per time bucket.

API key with role viewer or above (meter figures by meter are residents' data). Lists are
paginated (`limit`, `offset`, `next_offset`) and download as CSV with `?format=csv` or
`Accept: text/csv`. The query layer picks the rollup tier (smartcity.queries.aggregates).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, available_timezones

import orjson
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from api.answers import FIGURES_MAX_BYTES
from api.deps import ConnDep, ServicesDep, SettingsDep, ViewerDep
from api.timeparams import as_utc
from smartcity.cities import CITIES, City
from smartcity.queries.aggregates import (
    ArrivalBucket,
    Bucket,
    LightingBucket,
    MeterBucket,
    Page,
    align,
    arrival_series,
    lighting_plan,
    lighting_series,
    meter_series,
)
from smartcity.queries.metering import UNITS

router = APIRouter(prefix="/v1/aggregates", tags=["aggregates"])

# Longest range per bucket size: a week of quarters (672 buckets, read from raw rows), a
# quarter-year of hours, a year and a month of days (this winter against the last one).
MAX_SPAN = {
    Bucket.QUARTER: timedelta(days=7),
    Bucket.HOUR: timedelta(days=92),
    Bucket.DAY: timedelta(days=400),
}
# Range when `from` is not given: what an operator opens first at each resolution.
DEFAULT_SPAN = {
    Bucket.QUARTER: timedelta(hours=6),
    Bucket.HOUR: timedelta(days=2),
    Bucket.DAY: timedelta(days=30),
}
# 10,000 rows is a day of hourly figures for 400 lamps: a spreadsheet's worth per page.
PAGE_MAX = 10_000
PAGE_DEFAULT = 500
CSV = "text/csv"
JSON = "application/json"


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())  # a scan of the tz database, once per process


_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No API key, or an unknown or revoked one (problem+json)."},
    403: {"description": "The key's role is too low (problem+json)."},
    422: {
        "description": "Bad parameter: unknown city, district or time zone, `from` not before "
        "`to`, a range too long for the bucket, a date outside 1970–2200 (problem+json)."
    },
}


def _csv_response(example: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": "One page of buckets: JSON, or CSV with `format=csv` / "
            "`Accept: text/csv` (header `X-Next-Offset` gives the next page).",
            "content": {CSV: {"schema": {"type": "string"}, "example": example}},
        },
        **_RESPONSES,
    }


CityQuery = Annotated[str, Query(description="City slug.", examples=["astana"], max_length=32)]
FromQuery = Annotated[
    datetime | None,
    Query(
        alias="from",
        description="Start (RFC 3339; no offset means UTC), widened to the start of its "
        "bucket in `tz`. Default: `to` minus 6 h (15m), 2 days (1h) or 30 days (1d).",
        examples=["2026-11-01T00:00:00+05:00"],
    ),
]
ToQuery = Annotated[
    datetime | None,
    Query(
        alias="to",
        description="End, exclusive (RFC 3339), widened to the end of its bucket. Default: now.",
        examples=["2026-11-23T00:00:00+05:00"],
    ),
]
BucketQuery = Annotated[
    Bucket,
    Query(
        description="Bucket size: `15m` (at most 7 days, raw rows), `1h` (at most 92 days) or "
        "`1d` (at most 400 days; local days of `tz`).",
        examples=["1d"],
    ),
]
TzQuery = Annotated[
    str | None,
    Query(
        description="IANA time zone of the buckets and of the returned times; default the "
        "city's (Asia/Almaty). Daily rollups answer only in the city's own zone.",
        examples=["Asia/Almaty"],
        max_length=64,
    ),
]
DistrictQuery = Annotated[
    str | None,
    Query(
        description="Only this district (not with level=city).", examples=["esil"], max_length=64
    ),
]
KeyQuery = Annotated[
    str | None,
    Query(
        description="Only this lamp, cabinet, meter or district (the level's key).",
        examples=["ast-lamp-000042"],
        max_length=64,
    ),
]
LimitQuery = Annotated[int, Query(ge=1, le=PAGE_MAX, description="Rows per page.", examples=[500])]
OffsetQuery = Annotated[
    int, Query(ge=0, le=10_000_000, description="Rows to skip (from `next_offset`).")
]
FormatQuery = Annotated[
    Literal["json", "csv"] | None,
    Query(
        description="`csv` for a spreadsheet download (or send `Accept: text/csv`).",
        examples=["csv"],
    ),
]


class Window(BaseModel):
    city: str
    bucket: Bucket
    tz: str = Field(description="Zone of the buckets and of the times below.")
    start: datetime = Field(alias="from", description="Start of the first bucket.")
    end: datetime = Field(alias="to", description="End of the last bucket (exclusive).")
    tiers: list[Literal["daily", "hourly", "raw"]] = Field(
        description="Which tiers answered (coarsest exact tier first; raw after the rollups' "
        "watermark and for 15-minute buckets)."
    )
    next_offset: int | None = Field(description="`offset` of the next page; null on the last.")

    model_config = ConfigDict(populate_by_name=True)


def _zone(tz: str | None, city: City) -> ZoneInfo:
    if tz is None:
        return city.tz
    # Only the IANA names (which PostgreSQL knows too): a file name that merely parses as a
    # zone, such as `posixrules`, would fail later in the database.
    if tz not in _zones():
        raise HTTPException(
            422, f"unknown time zone {tz!r}: use an IANA name such as Asia/Almaty or UTC"
        )
    return ZoneInfo(tz)


def _city(slug: str) -> City:
    if slug not in CITIES:
        raise HTTPException(
            422, f"unknown city {slug!r}; known cities: {', '.join(sorted(CITIES))}"
        )
    return CITIES[slug]


def _window(
    since: datetime | None, until: datetime | None, bucket: Bucket, zone: ZoneInfo
) -> tuple[datetime, datetime]:
    end = datetime.now(UTC) if until is None else as_utc(until, "to")
    start = end - DEFAULT_SPAN[bucket] if since is None else as_utc(since, "from")
    if start >= end:
        raise HTTPException(422, "`from` must be before `to`")
    if end - start > MAX_SPAN[bucket]:
        raise HTTPException(
            422,
            f"a range of {bucket.value} buckets is at most {MAX_SPAN[bucket].days} days; "
            "ask for less or use a coarser `bucket`",
        )
    return align(start, end, bucket, zone)


def _district(city: City, district: str | None, level: str) -> str | None:
    if district is None:
        return None
    if level == "city":
        raise HTTPException(422, "`district` filters lamps or meters; use level=district")
    if district not in city.districts and district != "unknown":
        raise HTTPException(
            422,
            f"unknown district {district!r} in {city.slug}; known: {', '.join(city.districts)}",
        )
    return district


def _wants_csv(request: Request, fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "csv"
    return CSV in request.headers.get("accept", "")


def _as_csv(
    rows: list[dict[str, Any]], columns: list[str], name: str, next_offset: int | None
) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    headers = {"Content-Disposition": f'attachment; filename="{name}.csv"'}
    if next_offset is not None:
        headers["X-Next-Offset"] = str(next_offset)
    return Response(out.getvalue(), media_type=f"{CSV}; charset=utf-8", headers=headers)


def _r(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


# --- lighting ------------------------------------------------------------------------------------

_LIGHTING_ROW_EXAMPLE: JsonDict = {
    "bucket": "2026-11-22T00:00:00+05:00",
    "key": "esil",
    "readings": 48000,
    "energy_kwh": 1215.4,
    "saved_by_dimming_kwh": 402.7,
    "burn_h": 26000.0,
    "mean_dim_pct": 71.5,
    "lamp_hours_reporting": 48000,
    "lamp_hours_faulty": 96,
    "availability_pct": 99.8,
}


class LightingRow(BaseModel):
    bucket: datetime = Field(description="Start of the bucket, in `tz`.")
    key: str = Field(description="The lamp, cabinet, district or city.")
    readings: int
    energy_kwh: float = Field(description="Energy used (register deltas), kWh.")
    saved_by_dimming_kwh: float = Field(
        description="What the same lamps would have used more at full power, kWh."
    )
    burn_h: float = Field(description="Hours lit (lamp-hours; the lamps' own counters).")
    mean_dim_pct: float | None = Field(description="Mean dim level while on; null if never on.")
    lamp_hours_reporting: int | None = Field(
        description="(Lamp, UTC hour) pairs with a reading; null for 15m buckets."
    )
    lamp_hours_faulty: int | None = Field(
        description="Of those, pairs with a fault (failure flag, or on but drawing < 1 W)."
    )
    availability_pct: float | None = Field(
        description="Share of reporting lamp-hours without a fault, %; null for 15m buckets."
    )


class LightingPage(Window):
    model_config = ConfigDict(
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "city": "astana",
                    "level": "district",
                    "bucket": "1d",
                    "tz": "Asia/Almaty",
                    "from": "2026-11-22T00:00:00+05:00",
                    "to": "2026-11-23T00:00:00+05:00",
                    "tiers": ["daily"],
                    "items": [_LIGHTING_ROW_EXAMPLE],
                    "next_offset": None,
                }
            ]
        },
    )

    level: Literal["lamp", "cabinet", "district", "city"]
    items: list[LightingRow]


def _lighting_item(b: LightingBucket, zone: ZoneInfo, quarter: bool) -> dict[str, Any]:
    """A `LightingRow` as plain data (serialized by orjson: see `_lighting_json`)."""
    return {
        "bucket": b.bucket.astimezone(zone),
        "key": b.key,
        "readings": b.readings,
        "energy_kwh": round(b.energy_wh / 1000.0, 6),
        "saved_by_dimming_kwh": round((b.full_power_energy_wh - b.energy_wh) / 1000.0, 6),
        "burn_h": round(b.burn_h, 6),
        "mean_dim_pct": _r(b.mean_dim_pct, 3),
        "lamp_hours_reporting": None if quarter else b.lamp_hours_reporting,
        "lamp_hours_faulty": None if quarter else b.lamp_hours_faulty,
        "availability_pct": None if quarter else _r(b.availability_pct, 4),
    }


@router.get(
    "/lighting",
    response_model=LightingPage,
    summary="Lighting energy and status per bucket, by lamp, cabinet, district or city",
    responses=_csv_response(
        "bucket,key,readings,energy_kwh,saved_by_dimming_kwh,burn_h,mean_dim_pct,"
        "lamp_hours_reporting,lamp_hours_faulty,availability_pct\n"
        "2026-11-22T00:00:00+05:00,esil,48000,1215.4,402.7,26000.0,71.5,48000,96,99.8\n"
    ),
)
async def get_lighting(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    services: ServicesDep,
    _caller: ViewerDep,
    city: CityQuery = "astana",
    level: Annotated[
        Literal["lamp", "cabinet", "district", "city"],
        Query(description="Group by lamp, cabinet, district or the whole city."),
    ] = "district",
    since: FromQuery = None,
    until: ToQuery = None,
    bucket: BucketQuery = Bucket.DAY,
    tz: TzQuery = None,
    district: DistrictQuery = None,
    key: KeyQuery = None,
    limit: LimitQuery = PAGE_DEFAULT,
    offset: OffsetQuery = 0,
    fmt: Annotated[FormatQuery, Query(alias="format")] = None,
) -> Response:
    """Per bucket and lamp / cabinet / district / city: energy used (kWh), energy saved by
    dimming, burn hours, mean dim level, lamp-hours reporting and faulty, availability
    (formulas in docs/kpis.md). Buckets are whole 15 minutes, hours or local days of `tz`;
    `from` and `to` widen to whole buckets. Ordered by bucket, then key."""
    c = _city(city)
    zone = _zone(tz, c)
    start, end = _window(since, until, bucket, zone)
    only = _district(c, district, level)
    plan = await lighting_plan(conn, c.slug, start, end, bucket=bucket, tz=zone)
    quarter = bucket is Bucket.QUARTER

    async def page() -> tuple[list[dict[str, Any]], int | None]:
        rows, _ = await lighting_series(
            conn,
            c.slug,
            start,
            end,
            bucket=bucket,
            tz=zone,
            level=level,
            lookback=timedelta(hours=settings.rollup_lookback_h),
            page=Page(limit, offset),
            district=only,
            key=key,
            segments=plan.segments,
        )
        items = [_lighting_item(b, zone, quarter) for b in rows[:limit]]
        return items, offset + limit if len(rows) > limit else None

    if _wants_csv(request, fmt):
        items, next_offset = await page()
        for item in items:
            item["bucket"] = item["bucket"].isoformat()
        return _as_csv(
            items,
            list(LightingRow.model_fields),
            f"lighting-{c.slug}-{level}-{bucket.value}",
            next_offset,
        )

    async def body() -> bytes:
        items, next_offset = await page()
        return orjson.dumps(
            {
                "city": c.slug,
                "level": level,
                "bucket": bucket.value,
                "tz": zone.key,
                "from": start.astimezone(zone),
                "to": end.astimezone(zone),
                "tiers": [s.tier.value for s in plan.segments],
                "items": items,
                "next_offset": next_offset,
            },
            option=orjson.OPT_UTC_Z,
        )

    if not plan.rollups_only:  # raw rows answer part of it: they change with every batch
        return Response(await body(), media_type=JSON)
    # Rollups only: the page changes only when the watermark moves, so the watermark is in
    # the key. Everything that shapes the answer is in it too.
    cache_key = (c.slug, level, start, end, bucket, zone.key, only, key, limit, offset)
    answer = await services.answers.figures.get(
        (*cache_key, plan.watermark), body, keep=lambda b: len(b) <= FIGURES_MAX_BYTES
    )
    return Response(answer.value, media_type=JSON)


# --- metering ------------------------------------------------------------------------------------


class MeterRow(BaseModel):
    bucket: datetime = Field(description="Start of the bucket, in `tz`.")
    key: str = Field(description="The meter, district or city.")
    readings: int
    consumption: float = Field(description="Register increase: kWh (electricity) or m³ (water).")


class MeterPage(Window):
    model_config = ConfigDict(
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "city": "astana",
                    "kind": "electricity",
                    "unit": "kWh",
                    "level": "district",
                    "bucket": "1h",
                    "tz": "Asia/Almaty",
                    "from": "2026-11-22T00:00:00+05:00",
                    "to": "2026-11-22T01:00:00+05:00",
                    "tiers": ["hourly"],
                    "items": [
                        {
                            "bucket": "2026-11-22T00:00:00+05:00",
                            "key": "esil",
                            "readings": 480,
                            "consumption": 61.25,
                        }
                    ],
                    "next_offset": None,
                }
            ]
        },
    )

    kind: Literal["electricity", "water"]
    unit: Literal["kWh", "m3"]
    level: Literal["meter", "district", "city"]
    items: list[MeterRow]


@router.get(
    "/meters/{kind}",
    response_model=MeterPage,
    summary="Electricity or water consumption per bucket, by meter, district or city",
    responses=_csv_response(
        "bucket,key,readings,consumption\n2026-11-22T00:00:00+05:00,esil,480,61.25\n"
    ),
)
async def get_meters(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    _caller: ViewerDep,
    kind: Annotated[
        Literal["electricity", "water"],
        Path(description="electricity (kWh) or water (m³): never added together."),
    ],
    city: CityQuery = "astana",
    level: Annotated[
        Literal["meter", "district", "city"],
        Query(description="Group by meter, district or the whole city."),
    ] = "district",
    since: FromQuery = None,
    until: ToQuery = None,
    bucket: BucketQuery = Bucket.DAY,
    tz: TzQuery = None,
    district: DistrictQuery = None,
    key: KeyQuery = None,
    limit: LimitQuery = PAGE_DEFAULT,
    offset: OffsetQuery = 0,
    fmt: Annotated[FormatQuery, Query(alias="format")] = None,
) -> MeterPage | Response:
    """Consumption per bucket from the meters' registers (increases between consecutive
    readings; a register that goes down was reset and restarts from zero — docs/kpis.md).
    Buckets as in `/v1/aggregates/lighting`. Ordered by bucket, then key."""
    c = _city(city)
    zone = _zone(tz, c)
    start, end = _window(since, until, bucket, zone)
    rows, segments = await meter_series(
        conn,
        c.slug,
        kind,
        start,
        end,
        bucket=bucket,
        tz=zone,
        level=level,
        lookback=timedelta(hours=settings.rollup_lookback_h),
        page=Page(limit, offset),
        district=_district(c, district, level),
        key=key,
    )
    more = len(rows) > limit
    items = [_meter_row(m, zone) for m in rows[:limit]]
    next_offset = offset + limit if more else None
    if _wants_csv(request, fmt):
        return _as_csv(
            [i.model_dump(mode="json") for i in items],
            list(MeterRow.model_fields),
            f"{kind}-{c.slug}-{level}-{bucket.value}",
            next_offset,
        )
    return MeterPage.model_validate(
        {
            "city": c.slug,
            "kind": kind,
            "unit": "kWh" if UNITS[kind] == "kWh" else "m3",
            "level": level,
            "bucket": bucket,
            "tz": zone.key,
            "from": start.astimezone(zone),
            "to": end.astimezone(zone),
            "tiers": [s.tier.value for s in segments],
            "items": items,
            "next_offset": next_offset,
        }
    )


def _meter_row(m: MeterBucket, zone: ZoneInfo) -> MeterRow:
    return MeterRow(
        bucket=m.bucket.astimezone(zone),
        key=m.key,
        readings=m.readings,
        consumption=round(m.consumption, 6),
    )


# --- transit -------------------------------------------------------------------------------------


class ArrivalRow(BaseModel):
    bucket: datetime = Field(description="Start of the bucket, in `tz`.")
    key: str = Field(description="The route, stop or city.")
    arrivals: int = Field(description="Observed arrivals of buses at stops.")
    early: int = Field(description="Earlier than the on-time window (default: by over 60 s).")
    on_time: int = Field(
        description="Within the configured on-time window (default 60 s early to 300 s late)."
    )
    late: int = Field(description="Later than the on-time window (default: by over 300 s).")
    on_time_pct: float | None
    mean_delay_s: float = Field(description="Mean of arrival minus scheduled arrival, s.")


class ArrivalPage(Window):
    model_config = ConfigDict(
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "city": "shymkent",
                    "level": "route",
                    "bucket": "1h",
                    "tz": "Asia/Almaty",
                    "from": "2026-11-22T07:00:00+05:00",
                    "to": "2026-11-22T08:00:00+05:00",
                    "tiers": ["raw"],
                    "items": [
                        {
                            "bucket": "2026-11-22T07:00:00+05:00",
                            "key": "12",
                            "arrivals": 240,
                            "early": 6,
                            "on_time": 210,
                            "late": 24,
                            "on_time_pct": 87.5,
                            "mean_delay_s": 74.2,
                        }
                    ],
                    "next_offset": None,
                }
            ]
        },
    )

    level: Literal["route", "stop", "city"]
    items: list[ArrivalRow]


def _arrival_row(a: ArrivalBucket, zone: ZoneInfo) -> ArrivalRow:
    return ArrivalRow(
        bucket=a.bucket.astimezone(zone),
        key=a.key,
        arrivals=a.arrivals,
        early=a.early,
        on_time=a.on_time,
        late=a.late,
        on_time_pct=_r(a.on_time_pct, 3),
        mean_delay_s=round(a.mean_delay_s, 3),
    )


@router.get(
    "/transit/arrivals",
    response_model=ArrivalPage,
    summary="Bus arrivals and on-time performance per bucket, by route, stop or city",
    responses=_csv_response(
        "bucket,key,arrivals,early,on_time,late,on_time_pct,mean_delay_s\n"
        "2026-11-22T07:00:00+05:00,12,240,6,210,24,87.5,74.2\n"
    ),
)
async def get_arrivals(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    _caller: ViewerDep,
    city: CityQuery = "shymkent",
    level: Annotated[
        Literal["route", "stop", "city"],
        Query(description="Group by route, stop or the whole city."),
    ] = "route",
    since: FromQuery = None,
    until: ToQuery = None,
    bucket: BucketQuery = Bucket.DAY,
    tz: TzQuery = None,
    key: KeyQuery = None,
    limit: LimitQuery = PAGE_DEFAULT,
    offset: OffsetQuery = 0,
    fmt: Annotated[FormatQuery, Query(alias="format")] = None,
) -> ArrivalPage | Response:
    """Observed arrivals of buses at their stops (from the bus tracker), per bucket and route /
    stop / city: how many were early, on time (the configured window, by default 1 min early
    to 5 min late) or late, the on-time share and the mean delay. Buckets as in
    `/v1/aggregates/lighting`."""
    c = _city(city)
    zone = _zone(tz, c)
    start, end = _window(since, until, bucket, zone)
    rows = await arrival_series(
        conn,
        c.slug,
        start,
        end,
        bucket=bucket,
        tz=zone,
        level=level,
        page=Page(limit, offset),
        on_time_s=(settings.transit_on_time_early_s, settings.transit_on_time_late_s),
        key=key,
    )
    more = len(rows) > limit
    items = [_arrival_row(a, zone) for a in rows[:limit]]
    next_offset = offset + limit if more else None
    if _wants_csv(request, fmt):
        return _as_csv(
            [i.model_dump(mode="json") for i in items],
            list(ArrivalRow.model_fields),
            f"arrivals-{c.slug}-{level}-{bucket.value}",
            next_offset,
        )
    return ArrivalPage.model_validate(
        {
            "city": c.slug,
            "level": level,
            "bucket": bucket,
            "tz": zone.key,
            "from": start.astimezone(zone),
            "to": end.astimezone(zone),
            "tiers": ["raw"],
            "items": items,
            "next_offset": next_offset,
        }
    )
