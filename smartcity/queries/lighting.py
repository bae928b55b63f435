"""Street-lighting queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg import AsyncConnection
from psycopg.rows import class_row

# A lamp counts as faulty if it says so, or if it is on (dimmed above zero) yet draws less than
# this: an LED driver that is really lighting draws at least a few watts.
FAULT_POWER_FLOOR_W = 1.0

_SUMMARY_SQL = """
WITH latest AS (
    SELECT DISTINCT ON (lamp_id)
           lamp_id, district, lamp_on, lamp_failure, dim_pct, power_w
    FROM lighting_readings
    WHERE city = %(city)s AND ts > %(since)s AND ts <= %(at)s
    ORDER BY lamp_id, ts DESC
)
SELECT coalesce(district, 'unknown')                      AS district,
       count(*)                                           AS lamps_reporting,
       count(*) FILTER (WHERE lamp_on)                    AS lamps_on,
       count(*) FILTER (WHERE lamp_failure
                        OR (lamp_on AND dim_pct > 0 AND power_w < %(floor_w)s)) AS lamps_faulty,
       (coalesce(sum(power_w), 0) / 1000.0)::float8      AS power_kw
FROM latest
GROUP BY 1
ORDER BY 1
"""


@dataclass(frozen=True, slots=True)
class DistrictLighting:
    district: str
    lamps_reporting: int
    lamps_on: int
    lamps_faulty: int
    power_kw: float


async def lighting_summary(
    conn: AsyncConnection[tuple[object, ...]], city: str, at: datetime, window: timedelta
) -> list[DistrictLighting]:
    """Each district's lamps by their latest reading (event time) in (at − window, at]."""
    async with conn.cursor(row_factory=class_row(DistrictLighting)) as cur:
        await cur.execute(
            _SUMMARY_SQL,
            {"city": city, "since": at - window, "at": at, "floor_w": FAULT_POWER_FLOOR_W},
        )
        return await cur.fetchall()
