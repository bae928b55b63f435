"""Raw readings of the three feeds, the device registry and the dead-letter store."""

from __future__ import annotations

import psycopg
from psycopg import sql

from smartcity.db.storage import StorageMode, create_time_series_table

VERSION = 1
DESCRIPTION = "raw readings, devices, dead_letters"

# `ingested_at` is when the row was committed: rollup maintenance reads rows newer than its
# watermark by it, so readings that arrive late still reach their (old) buckets.
_LIGHTING = """
    ts              timestamptz      NOT NULL,
    lamp_id         text             NOT NULL,
    city            text             NOT NULL,
    district        text,
    cabinet_id      text,
    lamp_on         boolean          NOT NULL,
    dim_pct         real             NOT NULL,
    power_w         real             NOT NULL,
    voltage_v       real             NOT NULL,
    current_a       real             NOT NULL,
    power_factor    real             NOT NULL,
    energy_wh       double precision NOT NULL,
    operating_hours double precision NOT NULL,
    lamp_failure    boolean          NOT NULL DEFAULT false,
    ingested_at     timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (lamp_id, ts)
"""

_METERING = """
    ts                timestamptz      NOT NULL,
    meter_id          text             NOT NULL,
    city              text             NOT NULL,
    district          text,
    kind              text             NOT NULL CHECK (kind IN ('electricity', 'water')),
    energy_import_kwh double precision,
    energy_export_kwh double precision,
    power_w           real,
    voltage_v         real,
    volume_m3         double precision,
    flow_lph          real,
    tamper            boolean          NOT NULL DEFAULT false,
    leak              boolean          NOT NULL DEFAULT false,
    gateway_id        text,
    ingested_at       timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (meter_id, ts)
"""

_TRANSIT = """
    ts          timestamptz      NOT NULL,
    vehicle_id  text             NOT NULL,
    city        text             NOT NULL,
    trip_id     text,
    route_id    text,
    lat         double precision NOT NULL,
    lon         double precision NOT NULL,
    bearing     real,
    speed_mps   real,
    occupancy   text,
    ingested_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (vehicle_id, ts)
"""


def apply(conn: psycopg.Connection[tuple[object, ...]], mode: StorageMode) -> None:
    create_time_series_table(conn, mode, "lighting_readings", sql.SQL(_LIGHTING))
    create_time_series_table(conn, mode, "meter_readings", sql.SQL(_METERING))
    create_time_series_table(conn, mode, "vehicle_positions", sql.SQL(_TRANSIT))
    conn.execute("CREATE INDEX ON lighting_readings (city, ts DESC)")
    conn.execute("CREATE INDEX ON meter_readings (city, ts DESC)")
    conn.execute("CREATE INDEX ON vehicle_positions (city, ts DESC)")
    conn.execute("CREATE INDEX ON lighting_readings (ingested_at)")
    conn.execute("CREATE INDEX ON meter_readings (ingested_at)")
    conn.execute("CREATE INDEX ON vehicle_positions (ingested_at)")

    # One row per device ever seen. (domain, device_id) is the identity: device ids are unique
    # within a domain across all cities (simulators and real fleets prefix them with the city).
    conn.execute(
        """
        CREATE TABLE devices (
            domain      text        NOT NULL CHECK (domain IN ('lighting', 'metering', 'transit')),
            device_id   text        NOT NULL,
            city        text        NOT NULL,
            district    text,
            first_seen  timestamptz NOT NULL,
            last_seen   timestamptz NOT NULL,
            last_status text        CHECK (last_status IN ('online', 'offline')),
            status_ts   timestamptz,
            lat         double precision,
            lon         double precision,
            attrs       jsonb       NOT NULL DEFAULT '{}'::jsonb,
            PRIMARY KEY (domain, device_id)
        )
        """
    )
    conn.execute("CREATE INDEX ON devices (city, domain, district)")

    conn.execute(
        """
        CREATE TABLE dead_letters (
            id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            received_at   timestamptz NOT NULL DEFAULT now(),
            topic         text        NOT NULL,
            payload       bytea       NOT NULL,
            payload_bytes integer     NOT NULL,
            reason        text        NOT NULL,
            detail        text        NOT NULL
        )
        """
    )
    conn.execute("CREATE INDEX ON dead_letters (received_at)")
    conn.execute("CREATE INDEX ON dead_letters (reason, received_at)")
