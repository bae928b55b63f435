"""Lighting energy and the city's lighting KPIs over any time range, each from the coarsest
exact tier (see `smartcity.queries.tiers`): one round trip for the watermark, one for the
figures, whatever the range.

The raw-tier SQL computes the same figures the rollups hold, from the raw rows with the same
register-delta rule, so a range answered from raw gives the numbers the rollups would.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg import AsyncConnection, sql

from smartcity.cities import get_city
from smartcity.queries.tiers import DailySegment, Segment, Tier, plan
from smartcity.rollups.lighting import full_power, lamp_deltas
from smartcity.rollups.registers import DEFAULT_LOOKBACK_H

# Per lamp and UTC hour, like the rollups: a lamp counts in the district of its newest
# reading of the hour, and lamp-hours count (lamp, hour) pairs with a reading in the range.
_RAW_LAMP_HOURS = sql.SQL(
    """
    (WITH {ctes}
     SELECT (array_agg(district ORDER BY ts DESC))[1] AS district, sum(de) AS energy_wh,
            sum({full}) AS full_power_energy_wh, sum(dh) AS burn_h, 1 AS lamp_hours_reporting,
            max(faulty::int) AS lamp_hours_faulty
     FROM d GROUP BY date_trunc('hour', ts, 'UTC'), lamp_id)
    """
)

_MEASURES = (
    "energy_wh",
    "full_power_energy_wh",
    "burn_h",
    "lamp_hours_reporting",
    "lamp_hours_faulty",
)


def _segment_sql(seg: Segment, level: str, n: int) -> tuple[sql.Composable, dict[str, object]]:
    """A subquery with columns (key, measures…) for one segment; params named per segment."""
    p: dict[str, object] = {f"a{n}": seg.start, f"b{n}": seg.end}
    cols = sql.SQL(", ").join(
        sql.SQL("sum({m}) AS {m}").format(m=sql.Identifier(m)) for m in _MEASURES
    )
    key = sql.SQL("key") if level == "district" else sql.SQL("city")
    if seg.tier is Tier.RAW:
        inner = _RAW_LAMP_HOURS.format(
            ctes=lamp_deltas(f"a{n}", f"b{n}", one_city=True), full=full_power()
        )
        group = sql.SQL("district") if level == "district" else sql.SQL("%(city)s")
        return (
            sql.SQL("SELECT {g}::text AS key, {cols} FROM {inner} x GROUP BY 1").format(
                g=group, cols=cols, inner=inner
            ),
            p,
        )
    if isinstance(seg, DailySegment):
        p = {f"a{n}": seg.days[0], f"b{n}": seg.days[1]}
        where = sql.SQL("day >= {a} AND day <= {b}")
        table = sql.Identifier("lighting_daily")
    else:
        where = sql.SQL("bucket >= {a} AND bucket < {b}")
        table = sql.Identifier("lighting_hourly")
    return (
        sql.SQL(
            "SELECT {key} AS key, {cols} FROM {table} WHERE city = %(city)s AND level = {level} "
            "AND {where} GROUP BY 1"
        ).format(
            key=key,
            cols=cols,
            table=table,
            level=sql.Literal(level),
            where=where.format(a=sql.Placeholder(f"a{n}"), b=sql.Placeholder(f"b{n}")),
        ),
        p,
    )


async def watermark(conn: AsyncConnection[tuple[object, ...]], source: str) -> datetime | None:
    """How far the rollups of raw table `source` are folded in (None: never)."""
    cur = await conn.execute("SELECT watermark FROM rollup_state WHERE source = %s", (source,))
    row = await cur.fetchone()
    return row[0] if row is not None and isinstance(row[0], datetime) else None


@dataclass(frozen=True, slots=True)
class LightingTotals:
    key: str  # district name, or the city slug
    energy_wh: float
    full_power_energy_wh: float
    burn_h: float
    lamp_hours_reporting: int
    lamp_hours_faulty: int

    @property
    def energy_kwh(self) -> float:
        return self.energy_wh / 1000.0

    @property
    def saved_by_dimming_kwh(self) -> float:
        """Energy the same lamps would have used more at full power (docs/kpis.md)."""
        return (self.full_power_energy_wh - self.energy_wh) / 1000.0

    @property
    def availability_pct(self) -> float | None:
        """Share of reporting lamp-hours without a fault (docs/kpis.md)."""
        if self.lamp_hours_reporting == 0:
            return None
        return 100.0 * (1 - self.lamp_hours_faulty / self.lamp_hours_reporting)


async def lighting_totals(
    conn: AsyncConnection[tuple[object, ...]],
    city: str,
    start: datetime,
    end: datetime,
    *,
    by_district: bool,
    tiers: list[Segment] | None = None,
    lookback: timedelta = timedelta(hours=DEFAULT_LOOKBACK_H),
) -> tuple[list[LightingTotals], list[Segment]]:
    """Energy, full-power energy, burn hours and lamp-hours in [start, end), per district or
    for the whole city, and the segments that answered. `tiers` forces a plan (the benchmark
    uses it to time the raw tier alone); `lookback` must be the maintainer's
    (SMARTCITY_ROLLUP_LOOKBACK_H) for the raw tier to agree with the rollups."""
    zone = get_city(city).tz
    segments = (
        tiers
        if tiers is not None
        else plan(start, end, zone, await watermark(conn, "lighting_readings"))
    )
    if not segments:
        return [], []
    level = "district" if by_district else "city"
    params: dict[str, object] = {"city": city, "lookback": lookback}
    parts: list[sql.Composable] = []
    for n, seg in enumerate(segments):
        q, p = _segment_sql(seg, level, n)
        parts.append(q)
        params.update(p)
    query = sql.SQL("SELECT key, {sums} FROM ({union}) s GROUP BY key ORDER BY key").format(
        sums=sql.SQL(", ").join(
            sql.SQL("coalesce(sum({m}), 0)").format(m=sql.Identifier(m)) for m in _MEASURES
        ),
        union=sql.SQL(" UNION ALL ").join(parts),
    )
    cur = await conn.execute(query, params)
    rows = await cur.fetchall()
    out = [
        LightingTotals(
            key=str(r[0]),
            energy_wh=float(r[1]),  # type: ignore[arg-type]
            full_power_energy_wh=float(r[2]),  # type: ignore[arg-type]
            burn_h=float(r[3]),  # type: ignore[arg-type]
            lamp_hours_reporting=int(r[4]),  # type: ignore[call-overload]
            lamp_hours_faulty=int(r[5]),  # type: ignore[call-overload]
        )
        for r in rows
    ]
    return out, segments
