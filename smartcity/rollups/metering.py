"""Metering rollups: per meter, then district → city, hourly (UTC) and daily (local), with
electricity and water kept apart (`kind`).

* `energy_kwh` (electricity) / `volume_m3` (water) — register deltas of `energy_import_kwh` /
  `volume_m3` (rule in `smartcity.rollups.registers`), never sums of instantaneous power;
* `peak_power_w` / `peak_flow_lph` — at meter level the largest instantaneous reading in the
  bucket; at district and city level the peak *demand* of the area: its hourly consumption as
  a mean rate (kWh → W, m³ → L/h) for an hour, the largest such hour for a day. (Meters are
  not read at the same instants, so adding their instantaneous peaks would overstate it.)
* `meters_reporting` — meters with any reading in the bucket.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import psycopg
from psycopg import sql

from smartcity.rollups.registers import delta, previous

_COLUMNS = (
    "city, level, key, kind, district, readings, meters_reporting, energy_kwh, volume_m3, "
    "peak_power_w, peak_flow_lph"
)

# Rows with no register value still count as readings; only rows with one take part in the
# deltas (a missing value must not break the chain between its neighbours).
_METER_DELTAS = sql.SQL(
    """
    cur AS (
        SELECT ts, meter_id, city, coalesce(district, 'unknown') AS district, kind, power_w,
               flow_lph,
               CASE kind WHEN 'electricity' THEN energy_import_kwh ELSE volume_m3 END AS reg
        FROM meter_readings WHERE ts >= %(a)s AND ts < %(b)s
    ),
    prev AS (
        SELECT p.* FROM (SELECT DISTINCT meter_id FROM cur) m
        CROSS JOIN LATERAL (
            SELECT r.ts, r.meter_id,
                   CASE r.kind WHEN 'electricity' THEN r.energy_import_kwh ELSE r.volume_m3 END
                       AS reg,
                   false AS inside
            FROM meter_readings r
            WHERE r.meter_id = m.meter_id AND r.ts < %(a)s
              AND r.ts >= %(a)s - %(lookback)s::interval
              AND CASE r.kind WHEN 'electricity' THEN r.energy_import_kwh ELSE r.volume_m3 END
                  IS NOT NULL
            ORDER BY r.ts DESC LIMIT 1
        ) p
    ),
    seq AS (
        SELECT ts, meter_id, reg, true AS inside FROM cur WHERE reg IS NOT NULL
        UNION ALL SELECT * FROM prev
    ),
    lagged AS (SELECT *, {prev_reg} AS prev_reg FROM seq),
    d AS (SELECT ts, meter_id, {dreg} AS dreg FROM lagged WHERE inside)
    """
).format(
    prev_reg=previous("reg", "meter_id", sql.SQL("%(lookback)s::interval")),
    dreg=delta("reg", "prev_reg"),
)


def meter_deltas() -> sql.Composable:
    """CTEs `cur` (readings in [%(a)s, %(b)s)) and `d` (their register deltas `dreg`)."""
    return _METER_DELTAS


_METER_HOURLY = sql.SQL(
    """
    INSERT INTO meter_hourly (bucket, {cols})
    WITH {ctes},
    per AS (
        SELECT date_trunc('hour', ts, 'UTC') AS bucket, meter_id,
               (array_agg(city ORDER BY ts DESC))[1] AS city,
               (array_agg(district ORDER BY ts DESC))[1] AS district,
               (array_agg(kind ORDER BY ts DESC))[1] AS kind,
               count(*) AS readings, max(power_w) AS peak_power_w, max(flow_lph) AS peak_flow_lph
        FROM cur GROUP BY 1, meter_id
    ),
    dsum AS (
        SELECT date_trunc('hour', ts, 'UTC') AS bucket, meter_id, sum(dreg) AS dreg
        FROM d GROUP BY 1, meter_id
    )
    SELECT per.bucket, city, 'meter', per.meter_id, kind, district, readings, 1,
           CASE WHEN kind = 'electricity' THEN coalesce(dsum.dreg, 0) ELSE 0 END,
           CASE WHEN kind = 'water' THEN coalesce(dsum.dreg, 0) ELSE 0 END,
           CASE WHEN kind = 'electricity' THEN peak_power_w END,
           CASE WHEN kind = 'water' THEN peak_flow_lph END
    FROM per LEFT JOIN dsum USING (bucket, meter_id)
    """
)

# District and city rows of an hour: peaks are the area's mean demand over the hour.
_LEVELS_HOURLY = sql.SQL(
    """
    INSERT INTO meter_hourly (bucket, {cols})
    SELECT bucket, city, CASE WHEN GROUPING(district) = 0 THEN 'district' ELSE 'city' END,
           CASE WHEN GROUPING(district) = 0 THEN district ELSE city END, kind, district,
           sum(readings), sum(meters_reporting), sum(energy_kwh), sum(volume_m3),
           CASE WHEN kind = 'electricity' THEN sum(energy_kwh) * 1000.0 END,
           CASE WHEN kind = 'water' THEN sum(volume_m3) * 1000.0 END
    FROM meter_hourly
    WHERE level = 'meter' AND bucket >= %(a)s AND bucket < %(b)s
    GROUP BY bucket, city, kind, GROUPING SETS ((district), ())
    """
)

_METER_DAILY = sql.SQL(
    """
    INSERT INTO meter_daily (day, {cols})
    SELECT (bucket AT TIME ZONE %(tz)s)::date, city, level, key, kind,
           (array_agg(district ORDER BY bucket DESC))[1],
           sum(readings), CASE WHEN level = 'meter' THEN 1 ELSE 0 END,
           sum(energy_kwh), sum(volume_m3), max(peak_power_w), max(peak_flow_lph)
    FROM meter_hourly
    WHERE city = ANY(%(cities)s) AND bucket >= %(a)s AND bucket < %(b)s
    GROUP BY 1, city, level, key, kind
    """
)

# meters_reporting of a district/city day counts distinct meters over the day, which the
# hourly area rows cannot give: take it from the day's meter rows.
_DAILY_REPORTING = sql.SQL(
    """
    UPDATE meter_daily t SET meters_reporting = c.n
    FROM (
        SELECT day, city, kind,
               CASE WHEN GROUPING(district) = 0 THEN 'district' ELSE 'city' END AS level,
               CASE WHEN GROUPING(district) = 0 THEN district ELSE city END AS key,
               count(*) AS n
        FROM meter_daily
        WHERE level = 'meter' AND city = ANY(%(cities)s) AND day >= %(d0)s AND day <= %(d1)s
        GROUP BY day, city, kind, GROUPING SETS ((district), ())
    ) c
    WHERE t.day = c.day AND t.city = c.city AND t.kind = c.kind AND t.level = c.level
      AND t.key = c.key
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
    conn.execute("DELETE FROM meter_hourly WHERE bucket >= %(a)s AND bucket < %(b)s", params)
    conn.execute(_METER_HOURLY.format(cols=sql.SQL(_COLUMNS), ctes=_METER_DELTAS), params)
    conn.execute(_LEVELS_HOURLY.format(cols=sql.SQL(_COLUMNS)), params)


def refresh_daily(
    conn: psycopg.Connection[tuple[object, ...]],
    tz: str,
    cities: list[str],
    first: date,
    last: date,
    start: datetime,
    end: datetime,
) -> None:
    """Rebuild local days first..last of `cities` (zone `tz`) from the hourly rows."""
    params = {"tz": tz, "cities": cities, "d0": first, "d1": last, "a": start, "b": end}
    conn.execute(
        "DELETE FROM meter_daily WHERE city = ANY(%(cities)s) AND day >= %(d0)s AND day <= %(d1)s",
        params,
    )
    conn.execute(_METER_DAILY.format(cols=sql.SQL(_COLUMNS)), params)
    conn.execute(_DAILY_REPORTING, params)
