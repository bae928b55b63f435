"""The city's KPIs, from the rollups (formulas and reasons in docs/kpis.md).

Energy saved by dimming and lamp availability are additive over any range, so they come
from `smartcity.queries.energy.lighting_totals` (tier planner). The KPIs here are defined on
whole buckets — local days or hours — and read those tiers directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime

from psycopg import AsyncConnection

from smartcity.cities import get_city
from smartcity.transit.eta_accuracy import BUCKETS, overall

# Night-flow window, local time: 02:00–05:00, when legitimate use is lowest (the standard
# minimum-night-flow window of water-loss practice).
NIGHT_FLOW_FIRST_HOUR = 2
NIGHT_FLOW_END_HOUR = 5


async def energy_per_lamp_night_kwh(
    conn: AsyncConnection[tuple[object, ...]], city: str, first: date, last: date
) -> float | None:
    """kWh per reporting lamp per local day (a lamp burns once per night), days first..last."""
    cur = await conn.execute(
        "SELECT sum(energy_wh) / 1000.0 / nullif(sum(lamps_reporting), 0) FROM lighting_daily "
        "WHERE city = %s AND level = 'city' AND day >= %s AND day <= %s",
        (city, first, last),
    )
    row = await cur.fetchone()
    return None if row is None or row[0] is None else float(row[0])  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Mttr:
    repairs: int
    mean_hours: float | None


_MTTR_SQL = """
WITH h AS (
    SELECT key, bucket, lamps_faulty > 0 AS faulty FROM lighting_hourly
    WHERE level = 'lamp' AND city = %(city)s AND bucket >= %(a)s AND bucket < %(b)s
      AND key IN (SELECT key FROM lighting_hourly
                  WHERE level = 'lamp' AND city = %(city)s AND bucket >= %(a)s
                    AND bucket < %(b)s AND lamps_faulty > 0)
),
c AS (SELECT *, lag(faulty) OVER (PARTITION BY key ORDER BY bucket) AS was FROM h),
starts AS (SELECT key, bucket AS s FROM c WHERE faulty AND NOT coalesce(was, false)),
repairs AS (SELECT key, bucket AS e FROM c WHERE NOT faulty AND was)
SELECT count(e), avg(extract(epoch FROM e - s)) / 3600.0
FROM starts CROSS JOIN LATERAL (
    SELECT min(e) AS e FROM repairs r WHERE r.key = starts.key AND r.e > starts.s
) x
WHERE e IS NOT NULL
"""


async def fault_mttr(
    conn: AsyncConnection[tuple[object, ...]], city: str, start: datetime, end: datetime
) -> Mttr:
    """Mean time to repair of lamp faults repaired in [start, end), in hours (hour buckets):
    from a lamp's first faulty hour to its first later reported hour without a fault."""
    cur = await conn.execute(_MTTR_SQL, {"city": city, "a": start, "b": end})
    row = await cur.fetchone()
    assert row is not None
    return Mttr(int(row[0]), None if row[1] is None else float(row[1]))  # type: ignore[call-overload,arg-type]


@dataclass(frozen=True, slots=True)
class NightFlow:
    district: str
    night_m3_per_h: float
    mean_m3_per_h: float

    @property
    def ratio(self) -> float | None:
        """Night flow over mean flow: high values point to leaks and other non-revenue water."""
        return None if self.mean_m3_per_h == 0 else self.night_m3_per_h / self.mean_m3_per_h


async def water_night_flow(
    conn: AsyncConnection[tuple[object, ...]], city: str, first: date, last: date
) -> list[NightFlow]:
    """Per district: mean hourly water volume in the local 02:00–05:00 hours and over all
    hours of local days first..last (hours with water readings)."""
    tz = get_city(city).tz_name
    cur = await conn.execute(
        """
        SELECT key,
               coalesce(avg(volume_m3) FILTER (WHERE extract(hour FROM bucket AT TIME ZONE %(tz)s)
                                               >= %(h0)s AND extract(hour FROM bucket
                                               AT TIME ZONE %(tz)s) < %(h1)s), 0),
               avg(volume_m3)
        FROM meter_hourly
        WHERE city = %(city)s AND level = 'district' AND kind = 'water'
          AND (bucket AT TIME ZONE %(tz)s)::date BETWEEN %(d0)s AND %(d1)s
        GROUP BY key ORDER BY key
        """,
        {
            "tz": tz,
            "h0": NIGHT_FLOW_FIRST_HOUR,
            "h1": NIGHT_FLOW_END_HOUR,
            "city": city,
            "d0": first,
            "d1": last,
        },
    )
    return [
        NightFlow(str(k), float(n), float(m))  # type: ignore[arg-type]
        for k, n, m in await cur.fetchall()
    ]


async def meter_reporting_rate(
    conn: AsyncConnection[tuple[object, ...]], city: str, first: date, last: date
) -> dict[str, float]:
    """Per kind: mean over local days first..last (a day without any reading counts as 0) of
    meters reporting that day ÷ meters that reported at all in the period, in %."""
    cur = await conn.execute(
        """
        SELECT kind, 100.0 * sum(meters_reporting) / (%(d1)s::date - %(d0)s::date + 1)
                     / (SELECT count(DISTINCT key) FROM meter_daily m
                        WHERE m.city = d.city AND m.kind = d.kind AND m.level = 'meter'
                          AND m.day BETWEEN %(d0)s AND %(d1)s)
        FROM meter_daily d
        WHERE city = %(city)s AND level = 'city' AND day BETWEEN %(d0)s AND %(d1)s
        GROUP BY city, kind ORDER BY kind
        """,
        {"city": city, "d0": first, "d1": last},
    )
    return {str(k): float(v) for k, v in await cur.fetchall()}  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class TransitKpis:
    """Bus punctuality, regularity and ETA accuracy over local days (docs/kpis.md)."""

    arrivals: int
    on_time_pct: float | None
    headways: int
    headway_adherence_pct: float | None
    cv_h: float | None
    eta_samples: int
    # Per horizon bucket (labels of smartcity.transit.eta_accuracy.BUCKETS): accurate share,
    # 0..1, None for a bucket without samples.
    eta_accuracy: dict[str, float | None]
    eta_score: float | None


async def transit_kpis(
    conn: AsyncConnection[tuple[object, ...]], city: str, first: date, last: date
) -> TransitKpis:
    """On-time %, headway adherence % and cv_h, ETA accuracy by horizon bucket and its score,
    over the city's local days first..last (transit daily rollups)."""
    cur = await conn.execute(
        """
        SELECT coalesce(sum(arrivals), 0), sum(on_time), coalesce(sum(headways), 0),
               sum(headways_regular), sum(headway_dev_sum_s), sum(headway_dev_sq_sum_s),
               sum(headway_sched_sum_s)
        FROM transit_daily WHERE city = %s AND day BETWEEN %s AND %s
        """,
        (city, first, last),
    )
    row = await cur.fetchone()
    assert row is not None
    n, on_time, h, regular, dev, dev_sq, sched = (
        0.0 if v is None else float(v)  # type: ignore[arg-type]
        for v in row
    )
    cur = await conn.execute(
        """
        SELECT horizon, sum(samples), sum(accurate) FROM transit_eta_daily
        WHERE city = %s AND day BETWEEN %s AND %s GROUP BY horizon
        """,
        (city, first, last),
    )
    by_bucket = {str(b): (int(s), int(a)) for b, s, a in await cur.fetchall()}  # type: ignore[call-overload]
    accuracy: dict[str, float | None] = {
        label: (by_bucket[label][1] / by_bucket[label][0]) if label in by_bucket else None
        for label, *_ in BUCKETS
    }
    samples = sum(s for s, _ in by_bucket.values())
    return TransitKpis(
        arrivals=int(n),
        on_time_pct=100 * on_time / n if n else None,
        headways=int(h),
        headway_adherence_pct=100 * regular / h if h else None,
        cv_h=math.sqrt(max(dev_sq / h - (dev / h) ** 2, 0.0)) / (sched / h)
        if h and sched
        else None,
        eta_samples=samples,
        eta_accuracy=accuracy,
        eta_score=overall({k: v for k, v in accuracy.items() if v is not None})
        if samples
        else None,
    )
