"""Bucketed aggregates for operators: lighting energy and status by lamp / cabinet / district /
city, meter consumption (electricity and water apart) by meter / district / city, per 15-minute,
hourly or daily bucket.

Every figure here is additive (sums of register deltas, readings, lamp-hours, dim sums), so a
bucket may be answered by several tiers and the pieces add up exactly. The tiers come from
`smartcity.queries.tiers.plan`, with one rule per bucket size:

* `15m` — raw rows only (the finest rollup is an hour);
* `1h` — hourly rollups where folded in, raw rows after the watermark; if the buckets are not
  whole UTC hours (a zone with a half-hour offset) raw rows only;
* `1d` in the city's own zone — daily rollups for whole folded days, hourly and raw for the
  rest; in another zone the daily rows (city-local days) do not fit its days, so hourly + raw.

Distinct counts (lamps reporting in a day) are not additive across tiers, so the status figures
are lamp-hours (UTC hours with a reading, with a fault) as in the rollups (docs/kpis.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection, sql

from smartcity.cities import get_city
from smartcity.queries.energy import watermark
from smartcity.queries.tiers import DailySegment, Segment, Tier, plan
from smartcity.rollups.lighting import full_power, lamp_deltas
from smartcity.rollups.metering import meter_deltas

Conn = AsyncConnection[tuple[object, ...]]


class Bucket(StrEnum):
    QUARTER = "15m"
    HOUR = "1h"
    DAY = "1d"


BUCKET_WIDTH = {
    Bucket.QUARTER: timedelta(minutes=15),
    Bucket.HOUR: timedelta(hours=1),
    Bucket.DAY: timedelta(days=1),
}

LIGHTING_LEVELS = ("lamp", "cabinet", "district", "city")
METER_LEVELS = ("meter", "district", "city")
METER_KINDS = ("electricity", "water")


def align(
    start: datetime, end: datetime, bucket: Bucket, tz: ZoneInfo
) -> tuple[datetime, datetime]:
    """[start, end) widened to whole buckets of `tz` (local 15 minutes, hours or days), UTC."""

    def floor(ts: datetime) -> datetime:
        local = ts.astimezone(tz)
        if bucket is Bucket.DAY:
            local = datetime.combine(local.date(), datetime.min.time(), tz)
        elif bucket is Bucket.HOUR:
            local = local.replace(minute=0, second=0, microsecond=0)
        else:
            local = local.replace(minute=local.minute - local.minute % 15, second=0, microsecond=0)
        return local.astimezone(UTC)

    a, b = floor(start), floor(end)
    if b < end:
        b = (
            datetime.combine(b.astimezone(tz).date() + timedelta(days=1), datetime.min.time(), tz)
            if bucket is Bucket.DAY
            else b + BUCKET_WIDTH[bucket]
        ).astimezone(UTC)
    return a, b


def bucket_plan(
    start: datetime,
    end: datetime,
    bucket: Bucket,
    tz: ZoneInfo,
    city_tz: ZoneInfo,
    fresh_until: datetime | None,
) -> list[Segment]:
    """The tiers that answer aligned buckets [start, end) exactly (rules in the module doc)."""
    whole_hours = start.minute == 0 and start.second == 0 and start.microsecond == 0
    if bucket is Bucket.QUARTER or not whole_hours or fresh_until is None:
        return [Segment(Tier.RAW, start, end)]
    city_days = bucket is Bucket.DAY and tz.key == city_tz.key
    segments = [
        s if city_days or not isinstance(s, DailySegment) else Segment(Tier.HOURLY, s.start, s.end)
        for s in plan(start, end, city_tz, fresh_until)
    ]
    if bucket is Bucket.HOUR or not city_days:
        # Hourly rows are never cut by a bucket here; merge neighbours the daily swap left apart.
        merged: list[Segment] = []
        for s in segments:
            if merged and merged[-1].tier is s.tier and merged[-1].end == s.start:
                merged[-1] = replace(merged[-1], end=s.end)
            else:
                merged.append(s)
        segments = merged
    if sum(s.tier is Tier.RAW for s in segments) > 1:
        # Only when the range starts before a watermark-less edge; one raw pass is simpler.
        return [Segment(Tier.RAW, start, end)]
    return segments


def _bucket_of(bucket: Bucket, column: sql.Composable) -> sql.Composable:
    """SQL: the start of the bucket holding timestamptz `column`."""
    if bucket is Bucket.DAY:
        return sql.SQL("date_trunc('day', {c}, %(tz)s)").format(c=column)
    width = sql.Literal("15 minutes" if bucket is Bucket.QUARTER else "1 hour")
    return sql.SQL("date_bin({w}::interval, {c}, %(origin)s)").format(w=width, c=column)


def _day_start() -> sql.Composable:
    return sql.SQL("(day::timestamp AT TIME ZONE %(tz)s)")


def _rollup_source(
    prefix: str, seg: Segment, bucket: Bucket, n: int
) -> tuple[sql.Composable, sql.Composable, sql.Composable, dict[str, object]]:
    """For a rollup segment of `<prefix>_daily` or `<prefix>_hourly`: the table, the bucket
    expression, the segment's range condition and its parameters (named by segment `n`)."""
    a, b = sql.Placeholder(f"a{n}"), sql.Placeholder(f"b{n}")
    if isinstance(seg, DailySegment):
        where = sql.SQL("day >= {a} AND day <= {b}").format(a=a, b=b)
        params: dict[str, object] = {f"a{n}": seg.days[0], f"b{n}": seg.days[1]}
        return sql.Identifier(f"{prefix}_daily"), _day_start(), where, params
    where = sql.SQL("bucket >= {a} AND bucket < {b}").format(a=a, b=b)
    bucket_start = _bucket_of(bucket, sql.Identifier("bucket"))
    return (
        sql.Identifier(f"{prefix}_hourly"),
        bucket_start,
        where,
        {f"a{n}": seg.start, f"b{n}": seg.end},
    )


@dataclass(frozen=True, slots=True)
class Page:
    limit: int
    offset: int


def _filters(district: str | None, key: str | None, key_col: sql.Composable) -> sql.Composable:
    parts: list[sql.Composable] = []
    if district is not None:
        parts.append(sql.SQL("AND district = %(district)s"))
    if key is not None:
        parts.append(sql.SQL("AND {k} = %(key)s").format(k=key_col))
    return sql.SQL(" ").join(parts)


# --- lighting ------------------------------------------------------------------------------------

_LIGHTING_MEASURES = (
    "readings",
    "energy_wh",
    "full_power_energy_wh",
    "burn_h",
    "dim_pct_sum",
    "on_readings",
    "lamp_hours_reporting",
    "lamp_hours_faulty",
)

_LAMP_KEY = {
    "lamp": sql.SQL("lamp_id"),
    "cabinet": sql.SQL("cabinet_id"),
    "district": sql.SQL("district"),
    "city": sql.SQL("%(city)s::text"),
}


@dataclass(frozen=True, slots=True)
class LightingBucket:
    bucket: datetime  # start, UTC
    key: str
    readings: int
    energy_wh: float
    full_power_energy_wh: float
    burn_h: float
    dim_pct_sum: float
    on_readings: int
    lamp_hours_reporting: int
    lamp_hours_faulty: int

    @property
    def mean_dim_pct(self) -> float | None:
        """Mean dim level of the readings taken while on."""
        return None if self.on_readings == 0 else self.dim_pct_sum / self.on_readings

    @property
    def availability_pct(self) -> float | None:
        if self.lamp_hours_reporting == 0:
            return None
        return 100.0 * (1 - self.lamp_hours_faulty / self.lamp_hours_reporting)


def _lighting_segment(
    seg: Segment, bucket: Bucket, level: str, district: str | None, key: str | None, n: int
) -> tuple[sql.Composable, dict[str, object]]:
    if seg.tier is Tier.RAW:
        key_col = _LAMP_KEY[level]
        q = sql.SQL(
            """
            WITH {ctes}
            SELECT {b} AS bucket, {k} AS key, count(*) AS readings, sum(de) AS energy_wh,
                   sum({full}) AS full_power_energy_wh, sum(dh) AS burn_h,
                   coalesce(sum(dim_pct) FILTER (WHERE lamp_on), 0) AS dim_pct_sum,
                   count(*) FILTER (WHERE lamp_on) AS on_readings,
                   count(DISTINCT (lamp_id, date_trunc('hour', ts, 'UTC')))
                       AS lamp_hours_reporting,
                   count(DISTINCT (lamp_id, date_trunc('hour', ts, 'UTC'))) FILTER (WHERE faulty)
                       AS lamp_hours_faulty
            FROM d WHERE true {f} GROUP BY 1, 2
            """
        ).format(
            ctes=lamp_deltas("ra", "rb", one_city=True),
            b=_bucket_of(bucket, sql.Identifier("ts")),
            k=key_col,
            full=full_power(),
            f=_filters(district, key, key_col),
        )
        return q, {"ra": seg.start, "rb": seg.end}
    table, b, where, params = _rollup_source("lighting", seg, bucket, n)
    cols = sql.SQL(", ").join(
        sql.SQL("sum({m}) AS {m}").format(m=sql.Identifier(m)) for m in _LIGHTING_MEASURES
    )
    q = sql.SQL(
        "SELECT {b} AS bucket, key, {cols} FROM {table} "
        "WHERE city = %(city)s AND level = %(level)s AND {where} {f} GROUP BY 1, 2"
    ).format(b=b, cols=cols, table=table, where=where, f=_filters(district, key, sql.SQL("key")))
    return q, params


@dataclass(frozen=True, slots=True)
class TierPlan:
    segments: list[Segment]
    watermark: datetime | None  # the rollups' watermark the plan rests on

    @property
    def rollups_only(self) -> bool:
        """True if no raw rows answer: then the figures change only when the watermark moves,
        since the rollup tables change only in the maintenance transaction that moves it
        (`smartcity.rollups.maintain`; it moves on every pass)."""
        return self.watermark is not None and all(s.tier is not Tier.RAW for s in self.segments)


async def lighting_plan(
    conn: Conn, city: str, start: datetime, end: datetime, *, bucket: Bucket, tz: ZoneInfo
) -> TierPlan:
    """The tiers that answer lighting figures of aligned [start, end), as of the rollups'
    current watermark (one round trip)."""
    fresh_until = await watermark(conn, "lighting_readings")
    segments = bucket_plan(start, end, bucket, tz, get_city(city).tz, fresh_until)
    return TierPlan(segments, fresh_until)


async def lighting_series(
    conn: Conn,
    city: str,
    start: datetime,
    end: datetime,
    *,
    bucket: Bucket,
    tz: ZoneInfo,
    level: str,
    lookback: timedelta,
    page: Page,
    district: str | None = None,
    key: str | None = None,
    segments: list[Segment] | None = None,
) -> tuple[list[LightingBucket], list[Segment]]:
    """Lighting figures per (bucket, key) of aligned [start, end), ordered by bucket then key,
    one page of them (`page.limit` + 1 rows are read so the caller knows if more follow), and
    the segments that answered (`segments`: those of `lighting_plan`, if the caller has them
    already)."""
    if segments is None:
        segments = (await lighting_plan(conn, city, start, end, bucket=bucket, tz=tz)).segments
    params: dict[str, object] = {
        "city": city,
        "level": level,
        "tz": tz.key,
        "origin": start,
        "lookback": lookback,
        "district": district,
        "key": key,
        "limit": page.limit + 1,
        "offset": page.offset,
    }
    parts: list[sql.Composable] = []
    for n, seg in enumerate(segments):
        q, p = _lighting_segment(seg, bucket, level, district, key, n)
        parts.append(sql.SQL("({})").format(q))
        params.update(p)
    query = sql.SQL(
        "SELECT bucket, key, {sums} FROM ({union}) s GROUP BY bucket, key "
        "ORDER BY bucket, key LIMIT %(limit)s OFFSET %(offset)s"
    ).format(
        sums=sql.SQL(", ").join(
            sql.SQL("coalesce(sum({m}), 0)").format(m=sql.Identifier(m)) for m in _LIGHTING_MEASURES
        ),
        union=sql.SQL(" UNION ALL ").join(parts),
    )
    cur = await conn.execute(query, params)
    rows = await cur.fetchall()
    return [
        LightingBucket(
            bucket=r[0],  # type: ignore[arg-type]
            key=str(r[1]),
            readings=int(r[2]),  # type: ignore[call-overload]
            energy_wh=float(r[3]),  # type: ignore[arg-type]
            full_power_energy_wh=float(r[4]),  # type: ignore[arg-type]
            burn_h=float(r[5]),  # type: ignore[arg-type]
            dim_pct_sum=float(r[6]),  # type: ignore[arg-type]
            on_readings=int(r[7]),  # type: ignore[call-overload]
            lamp_hours_reporting=int(r[8]),  # type: ignore[call-overload]
            lamp_hours_faulty=int(r[9]),  # type: ignore[call-overload]
        )
        for r in rows
    ], segments


# --- metering ------------------------------------------------------------------------------------

_METER_KEY = {
    "meter": sql.SQL("cur.meter_id"),
    "district": sql.SQL("cur.district"),
    "city": sql.SQL("%(city)s::text"),
}


@dataclass(frozen=True, slots=True)
class MeterBucket:
    bucket: datetime  # start, UTC
    key: str
    readings: int
    consumption: float  # kWh (electricity) or m³ (water)


def _meter_segment(
    seg: Segment, bucket: Bucket, level: str, district: str | None, key: str | None, n: int
) -> tuple[sql.Composable, dict[str, object]]:
    if seg.tier is Tier.RAW:
        # meter_deltas() reads every city's rows in [a, b): filter to ours when joining back.
        key_col = _METER_KEY[level]
        f: list[sql.Composable] = []
        if district is not None:
            f.append(sql.SQL("AND cur.district = %(district)s"))
        if key is not None:
            f.append(sql.SQL("AND {k} = %(key)s").format(k=key_col))
        q = sql.SQL(
            """
            WITH {ctes}
            SELECT {b} AS bucket, {k} AS key, count(*) AS readings,
                   coalesce(sum(d.dreg), 0) AS consumption
            FROM cur LEFT JOIN d USING (meter_id, ts)
            WHERE cur.city = %(city)s AND cur.kind = %(kind)s {f}
            GROUP BY 1, 2
            """
        ).format(
            ctes=meter_deltas(),
            b=_bucket_of(bucket, sql.SQL("cur.ts")),
            k=key_col,
            f=sql.SQL(" ").join(f),
        )
        return q, {"a": seg.start, "b": seg.end}
    table, b, where, params = _rollup_source("meter", seg, bucket, n)
    q = sql.SQL(
        "SELECT {b} AS bucket, key, sum(readings) AS readings, "
        "sum(CASE WHEN kind = 'electricity' THEN energy_kwh ELSE volume_m3 END) AS consumption "
        "FROM {table} WHERE city = %(city)s AND level = %(level)s AND kind = %(kind)s "
        "AND {where} {f} GROUP BY 1, 2"
    ).format(b=b, table=table, where=where, f=_filters(district, key, sql.SQL("key")))
    return q, params


async def meter_series(
    conn: Conn,
    city: str,
    kind: str,
    start: datetime,
    end: datetime,
    *,
    bucket: Bucket,
    tz: ZoneInfo,
    level: str,
    lookback: timedelta,
    page: Page,
    district: str | None = None,
    key: str | None = None,
) -> tuple[list[MeterBucket], list[Segment]]:
    """Consumption of `kind` meters per (bucket, key), like `lighting_series`."""
    segments = bucket_plan(
        start, end, bucket, tz, get_city(city).tz, await watermark(conn, "meter_readings")
    )
    params: dict[str, object] = {
        "city": city,
        "kind": kind,
        "level": level,
        "tz": tz.key,
        "origin": start,
        "lookback": lookback,
        "district": district,
        "key": key,
        "limit": page.limit + 1,
        "offset": page.offset,
    }
    parts: list[sql.Composable] = []
    for n, seg in enumerate(segments):
        q, p = _meter_segment(seg, bucket, level, district, key, n)
        parts.append(sql.SQL("({})").format(q))
        params.update(p)
    query = sql.SQL(
        "SELECT bucket, key, coalesce(sum(readings), 0), coalesce(sum(consumption), 0) "
        "FROM ({union}) s GROUP BY bucket, key ORDER BY bucket, key "
        "LIMIT %(limit)s OFFSET %(offset)s"
    ).format(union=sql.SQL(" UNION ALL ").join(parts))
    cur = await conn.execute(query, params)
    return [
        MeterBucket(
            bucket=r[0],  # type: ignore[arg-type]
            key=str(r[1]),
            readings=int(r[2]),  # type: ignore[call-overload]
            consumption=float(r[3]),  # type: ignore[arg-type]
        )
        for r in await cur.fetchall()
    ], segments


# --- transit -------------------------------------------------------------------------------------

_ARRIVAL_KEY = {
    "route": sql.SQL("route_id"),
    "stop": sql.SQL("stop_id"),
    "city": sql.SQL("city"),
}


@dataclass(frozen=True, slots=True)
class ArrivalBucket:
    bucket: datetime  # start, UTC
    key: str
    arrivals: int
    early: int
    on_time: int
    late: int
    mean_delay_s: float

    @property
    def on_time_pct(self) -> float | None:
        return None if self.arrivals == 0 else 100.0 * self.on_time / self.arrivals


async def arrival_series(
    conn: Conn,
    city: str,
    start: datetime,
    end: datetime,
    *,
    bucket: Bucket,
    tz: ZoneInfo,
    level: str,
    page: Page,
    on_time_s: tuple[float, float],
    key: str | None = None,
) -> list[ArrivalBucket]:
    """Observed stop arrivals (`stop_arrivals`, by arrival time) per (bucket, route / stop /
    city): how many, how many early, on time or late — `on_time_s` is the window (s early,
    s late) of the settings `transit_on_time_early_s` / `_late_s` — and the mean delay. Raw
    rows: any bucket and time zone, through the (city, arrived_at) index."""
    key_col = _ARRIVAL_KEY[level]
    query = sql.SQL(
        """
        SELECT {b} AS bucket, {k} AS key, count(*),
               count(*) FILTER (WHERE delay_s < -%(early)s),
               count(*) FILTER (WHERE delay_s BETWEEN -%(early)s AND %(late)s),
               count(*) FILTER (WHERE delay_s > %(late)s),
               avg(delay_s)
        FROM stop_arrivals
        WHERE city = %(city)s AND arrived_at >= %(a)s AND arrived_at < %(b)s {f}
        GROUP BY 1, 2 ORDER BY 1, 2 LIMIT %(limit)s OFFSET %(offset)s
        """
    ).format(
        b=_bucket_of(bucket, sql.Identifier("arrived_at")),
        k=key_col,
        f=sql.SQL("AND {k} = %(key)s").format(k=key_col) if key is not None else sql.SQL(""),
    )
    cur = await conn.execute(
        query,
        {
            "city": city,
            "a": start,
            "b": end,
            "tz": tz.key,
            "origin": start,
            "early": on_time_s[0],
            "late": on_time_s[1],
            "key": key,
            "limit": page.limit + 1,
            "offset": page.offset,
        },
    )
    return [
        ArrivalBucket(
            bucket=r[0],  # type: ignore[arg-type]
            key=str(r[1]),
            arrivals=int(r[2]),  # type: ignore[call-overload]
            early=int(r[3]),  # type: ignore[call-overload]
            on_time=int(r[4]),  # type: ignore[call-overload]
            late=int(r[5]),  # type: ignore[call-overload]
            mean_delay_s=float(r[6]),  # type: ignore[arg-type]
        )
        for r in await cur.fetchall()
    ]
