"""Meter consumption from the raw register readings.

The registers (electricity `energy_import_kwh`, water `volume_m3`) only grow, so consumption over
a range is the sum of the differences between consecutive readings, starting from the last
reading at or before the range's start. A register that goes *down* has been reset or the meter
replaced: that step is not consumption, so it counts as zero and is reported in `resets`.

The storage helper's rollups will answer this for long ranges; this function is the one place
that changes when they do (issue 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection
from psycopg.rows import class_row

UNITS = {"electricity": "kWh", "water": "m3"}

_CONSUMPTION_SQL = """
WITH points AS (
    (SELECT ts, kind, CASE kind WHEN 'electricity' THEN energy_import_kwh ELSE volume_m3 END AS reg
     FROM meter_readings WHERE meter_id = %(meter)s AND ts <= %(since)s
     ORDER BY ts DESC LIMIT 1)
    UNION ALL
    (SELECT ts, kind, CASE kind WHEN 'electricity' THEN energy_import_kwh ELSE volume_m3 END
     FROM meter_readings WHERE meter_id = %(meter)s AND ts > %(since)s AND ts <= %(until)s)
), steps AS (
    SELECT ts, kind, reg - lag(reg) OVER (ORDER BY ts) AS delta FROM points
)
SELECT max(kind)                                          AS kind,
       count(*)::int                                      AS readings,
       min(ts)                                            AS first_ts,
       max(ts)                                            AS last_ts,
       coalesce(sum(greatest(delta, 0)), 0)::float8       AS consumption,
       (count(*) FILTER (WHERE delta < 0))::int           AS resets
FROM steps
"""


@dataclass(frozen=True, slots=True)
class Consumption:
    kind: str | None
    readings: int
    first_ts: datetime | None
    last_ts: datetime | None
    consumption: float
    resets: int


async def meter_consumption(
    conn: AsyncConnection[tuple[object, ...]], meter_id: str, since: datetime, until: datetime
) -> Consumption:
    """What `meter_id` consumed in (since, until], from its register readings."""
    async with conn.cursor(row_factory=class_row(Consumption)) as cur:
        await cur.execute(_CONSUMPTION_SQL, {"meter": meter_id, "since": since, "until": until})
        row = await cur.fetchone()
    assert row is not None  # an aggregate always returns one row
    return row
