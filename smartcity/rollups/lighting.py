"""Lighting rollups: per lamp, then cabinet → district → city, hourly (UTC) and daily (local).

Figures per bucket (docs/kpis.md has the formulas built on them):
* `energy_wh` — register deltas of `energy_wh` (rule in `smartcity.rollups.registers`);
* `burn_h` — register deltas of `operating_hours` (the lamp counts hours lit itself);
* `full_power_energy_wh` — what the same deltas would have been at 100 % dim: each on-reading's
  delta divided by the driver's draw fraction at its dim level;
* `dim_pct_sum` / `on_readings` — average dim level while on, kept as a sum and a count;
* `lamps_reporting` / `lamps_on` / `lamps_faulty` — lamps with any reading, any reading on, any
  reading faulty in the bucket; `lamp_hours_*` — the same counted per lamp-hour (additive).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import psycopg
from psycopg import sql

from smartcity.queries.lighting import FAULT_POWER_FLOOR_W
from smartcity.rollups.registers import delta, previous

# LED drivers draw about 10 % of rated power plus 90 % × dim level (the simulator's model, and
# typical of constant-current drivers): draw fraction = base + (1 − base) × dim / 100.
DRIVER_BASE_FRACTION = 0.1

_COLUMNS = (
    "city, level, key, district, cabinet_id, readings, lamps_reporting, lamps_on, lamps_faulty, "
    "lamp_hours_reporting, lamp_hours_faulty, energy_wh, full_power_energy_wh, burn_h, "
    "dim_pct_sum, on_readings"
)


def lamp_deltas(a: str = "a", b: str = "b", *, one_city: bool = False) -> sql.Composable:
    """CTEs ending in `d`: the readings with ts in [%(a)s, %(b)s) (of %(city)s only when
    `one_city`), each with its register deltas `de` (Wh) and `dh` (h) and its `faulty` flag.
    Parameters: `a`, `b` (named as given), lookback, and city when `one_city`."""
    return sql.SQL(
        """
        cur AS (
            SELECT ts, lamp_id, city, coalesce(district, 'unknown') AS district,
                   coalesce(cabinet_id, 'unknown') AS cabinet_id, lamp_on, dim_pct, power_w,
                   lamp_failure, energy_wh, operating_hours, true AS inside
            FROM lighting_readings WHERE ts >= {a} AND ts < {b} {city}
        ),
        prev AS (
            SELECT p.* FROM (SELECT DISTINCT lamp_id FROM cur) l
            CROSS JOIN LATERAL (
                SELECT r.ts, r.lamp_id, NULL::text AS city, NULL::text AS district,
                       NULL::text AS cabinet_id, NULL::boolean AS lamp_on, NULL::real AS dim_pct,
                       NULL::real AS power_w, NULL::boolean AS lamp_failure, r.energy_wh,
                       r.operating_hours, false AS inside
                FROM lighting_readings r
                WHERE r.lamp_id = l.lamp_id AND r.ts < {a}
                  AND r.ts >= {a} - %(lookback)s::interval
                ORDER BY r.ts DESC LIMIT 1
            ) p
        ),
        seq AS (SELECT * FROM cur UNION ALL SELECT * FROM prev),
        lagged AS (
            SELECT *, {prev_e} AS prev_e, {prev_h} AS prev_h FROM seq
        ),
        d AS (
            SELECT *, {de} AS de, {dh} AS dh,
                   (lamp_failure OR (lamp_on AND dim_pct > 0 AND power_w < {floor})) AS faulty
            FROM lagged WHERE inside
        )
        """
    ).format(
        a=sql.Placeholder(a),
        b=sql.Placeholder(b),
        city=sql.SQL("AND city = %(city)s") if one_city else sql.SQL(""),
        prev_e=previous("energy_wh", "lamp_id", sql.SQL("%(lookback)s::interval")),
        prev_h=previous("operating_hours", "lamp_id", sql.SQL("%(lookback)s::interval")),
        de=delta("energy_wh", "prev_e"),
        dh=delta("operating_hours", "prev_h"),
        floor=sql.Literal(FAULT_POWER_FLOOR_W),
    )


def full_power(de: str = "de") -> sql.Composable:
    """SQL: a reading's energy delta scaled to 100 % dim (unchanged when off or at dim 0)."""
    return sql.SQL(
        "CASE WHEN lamp_on AND dim_pct > 0 THEN {de} / ({b} + (1 - {b}) * dim_pct / 100.0) "
        "ELSE {de} END"
    ).format(de=sql.Identifier(de), b=sql.Literal(DRIVER_BASE_FRACTION))


_LAMP_HOURLY = sql.SQL(
    """
    INSERT INTO lighting_hourly (bucket, {cols})
    WITH {ctes}
    SELECT date_trunc('hour', ts, 'UTC'), (array_agg(city ORDER BY ts DESC))[1], 'lamp', lamp_id,
           (array_agg(district ORDER BY ts DESC))[1], (array_agg(cabinet_id ORDER BY ts DESC))[1],
           count(*), 1, max(lamp_on::int), max(faulty::int), 1, max(faulty::int),
           sum(de), sum({full}), sum(dh),
           coalesce(sum(dim_pct) FILTER (WHERE lamp_on), 0), count(*) FILTER (WHERE lamp_on)
    FROM d GROUP BY 1, lamp_id
    """
)

_LAMP_DAILY = sql.SQL(
    """
    INSERT INTO lighting_daily (day, {cols})
    SELECT (bucket AT TIME ZONE %(tz)s)::date, city, 'lamp', key,
           (array_agg(district ORDER BY bucket DESC))[1],
           (array_agg(cabinet_id ORDER BY bucket DESC))[1],
           sum(readings), 1, max(lamps_on), max(lamps_faulty), sum(lamp_hours_reporting),
           sum(lamp_hours_faulty), sum(energy_wh), sum(full_power_energy_wh), sum(burn_h),
           sum(dim_pct_sum), sum(on_readings)
    FROM lighting_hourly
    WHERE level = 'lamp' AND city = ANY(%(cities)s) AND bucket >= %(a)s AND bucket < %(b)s
    GROUP BY 1, city, key
    """
)

# Cabinet, district and city rows from the lamp rows of the same tier, in one pass.
_LEVELS = sql.SQL(
    """
    INSERT INTO {table} ({t}, {cols})
    SELECT {t}, city,
           CASE WHEN GROUPING(cabinet_id) = 0 THEN 'cabinet'
                WHEN GROUPING(district) = 0 THEN 'district' ELSE 'city' END,
           CASE WHEN GROUPING(cabinet_id) = 0 THEN cabinet_id
                WHEN GROUPING(district) = 0 THEN district ELSE city END,
           CASE WHEN GROUPING(cabinet_id) = 0 THEN min(district)
                WHEN GROUPING(district) = 0 THEN district END,
           CASE WHEN GROUPING(cabinet_id) = 0 THEN cabinet_id END,
           sum(readings), sum(lamps_reporting), sum(lamps_on), sum(lamps_faulty),
           sum(lamp_hours_reporting), sum(lamp_hours_faulty), sum(energy_wh),
           sum(full_power_energy_wh), sum(burn_h), sum(dim_pct_sum), sum(on_readings)
    FROM {table}
    WHERE level = 'lamp' AND {where}
    GROUP BY {t}, city, GROUPING SETS ((cabinet_id), (district), ())
    """
)


def refresh_hourly(
    conn: psycopg.Connection[tuple[object, ...]],
    start: datetime,
    end: datetime,
    lookback: timedelta,
) -> None:
    """Rebuild every hourly bucket in [start, end) (hour-aligned) from the raw readings."""
    params = {"a": start, "b": end, "lookback": lookback}
    conn.execute("DELETE FROM lighting_hourly WHERE bucket >= %(a)s AND bucket < %(b)s", params)
    conn.execute(
        _LAMP_HOURLY.format(cols=sql.SQL(_COLUMNS), ctes=lamp_deltas(), full=full_power()),
        params,
    )
    conn.execute(
        _LEVELS.format(
            table=sql.Identifier("lighting_hourly"),
            t=sql.Identifier("bucket"),
            cols=sql.SQL(_COLUMNS),
            where=sql.SQL("bucket >= %(a)s AND bucket < %(b)s"),
        ),
        params,
    )


def refresh_daily(
    conn: psycopg.Connection[tuple[object, ...]],
    tz: str,
    cities: list[str],
    first: date,
    last: date,
    start: datetime,
    end: datetime,
) -> None:
    """Rebuild local days first..last of `cities` (all in zone `tz`) from the hourly lamp rows;
    [start, end) is the same span in UTC."""
    params = {"tz": tz, "cities": cities, "d0": first, "d1": last, "a": start, "b": end}
    conn.execute(
        "DELETE FROM lighting_daily WHERE city = ANY(%(cities)s) AND day >= %(d0)s "
        "AND day <= %(d1)s",
        params,
    )
    conn.execute(_LAMP_DAILY.format(cols=sql.SQL(_COLUMNS)), params)
    conn.execute(
        _LEVELS.format(
            table=sql.Identifier("lighting_daily"),
            t=sql.Identifier("day"),
            cols=sql.SQL(_COLUMNS),
            where=sql.SQL("city = ANY(%(cities)s) AND day >= %(d0)s AND day <= %(d1)s"),
        ),
        params,
    )
