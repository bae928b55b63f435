"""Hourly and daily rollups of lighting and metering, and the rollup watermark.

One table per domain and tier; the hierarchy (lamp → cabinet → district → city, meter →
district → city) is the `level` column, so every level of a tier has the same columns and a
query reads one index range. `key` is the lamp, cabinet, district or city the row is about;
it is unique within (level, city) only, because district names repeat across cities.

Hourly buckets are UTC hours; daily rows are the city's local day (`day`), built from the
hourly lamp/meter rows of that day, so the two tiers always agree. See docs/storage.md.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from smartcity.db.storage import StorageMode, create_rollup_table

VERSION = 10
DESCRIPTION = "hourly and daily rollups (lighting, metering), rollup watermarks"

# Counts are lamps (or lamp-hours) so that every level's figure is a plain sum or max of the
# level below: averages are stored as (sum, count) pairs for the same reason.
_LIGHTING_MEASURES = """
    city                 text             NOT NULL,
    level                text             NOT NULL
                         CHECK (level IN ('lamp', 'cabinet', 'district', 'city')),
    key                  text             NOT NULL,
    district             text,
    cabinet_id           text,
    readings             integer          NOT NULL,
    lamps_reporting      integer          NOT NULL,
    lamps_on             integer          NOT NULL,
    lamps_faulty         integer          NOT NULL,
    lamp_hours_reporting integer          NOT NULL,
    lamp_hours_faulty    integer          NOT NULL,
    energy_wh            double precision NOT NULL,
    full_power_energy_wh double precision NOT NULL,
    burn_h               double precision NOT NULL,
    dim_pct_sum          double precision NOT NULL,
    on_readings          integer          NOT NULL
"""

_METER_MEASURES = """
    city             text             NOT NULL,
    level            text             NOT NULL CHECK (level IN ('meter', 'district', 'city')),
    key              text             NOT NULL,
    kind             text             NOT NULL CHECK (kind IN ('electricity', 'water')),
    district         text,
    readings         integer          NOT NULL,
    meters_reporting integer          NOT NULL,
    energy_kwh       double precision NOT NULL,
    volume_m3        double precision NOT NULL,
    peak_power_w     double precision,
    peak_flow_lph    double precision
"""


def apply(conn: psycopg.Connection[tuple[object, ...]], mode: StorageMode) -> None:
    for table, time_col, time_type, measures, key in (
        ("lighting_hourly", "bucket", "timestamptz", _LIGHTING_MEASURES, "level, city, key"),
        ("lighting_daily", "day", "date", _LIGHTING_MEASURES, "level, city, key"),
        ("meter_hourly", "bucket", "timestamptz", _METER_MEASURES, "level, city, key, kind"),
        ("meter_daily", "day", "date", _METER_MEASURES, "level, city, key, kind"),
    ):
        body = sql.SQL("{} {} NOT NULL, {}, PRIMARY KEY ({}, {})").format(
            sql.Identifier(time_col),
            sql.SQL(time_type),
            sql.SQL(measures),
            sql.SQL(key),
            sql.Identifier(time_col),
        )
        create_rollup_table(conn, mode, table, body, time_column=time_col)
        # The query layer reads one level of one city over a time range.
        conn.execute(
            sql.SQL("CREATE INDEX ON {} (city, level, {})").format(
                sql.Identifier(table), sql.Identifier(time_col)
            )
        )

    # How far `smartcity maintain` has folded raw rows (by ingested_at) into the rollups, per
    # raw table; refreshed_at is when that happened (for the refresh-lag metric and the docs).
    conn.execute(
        """
        CREATE TABLE rollup_state (
            source       text        PRIMARY KEY,
            watermark    timestamptz NOT NULL,
            refreshed_at timestamptz NOT NULL
        )
        """
    )
