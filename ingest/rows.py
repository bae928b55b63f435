"""Row layouts of the raw tables, as the writer COPYs them (column name, PostgreSQL type).

A decoder builds rows as plain tuples in exactly this column order; `ts` is always first.
`stage_only` columns exist in the writer's staging table but not in the target table: the
meter table's `_msg` carries the index of the message a row came from, so a row refused by a
database-side check can be dead-lettered with its message.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TableSpec:
    table: str
    key: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]
    stage_only: tuple[tuple[str, str], ...] = ()

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.columns]

    @property
    def types(self) -> list[str]:
        return [kind for _, kind in self.columns]

    @property
    def stage_columns(self) -> tuple[tuple[str, str], ...]:
        return self.columns + self.stage_only


LIGHTING = TableSpec(
    table="lighting_readings",
    key=("lamp_id", "ts"),
    columns=(
        ("ts", "timestamptz"),
        ("lamp_id", "text"),
        ("city", "text"),
        ("district", "text"),
        ("cabinet_id", "text"),
        ("lamp_on", "bool"),
        ("dim_pct", "float4"),
        ("power_w", "float4"),
        ("voltage_v", "float4"),
        ("current_a", "float4"),
        ("power_factor", "float4"),
        ("energy_wh", "float8"),
        ("operating_hours", "float8"),
        ("lamp_failure", "bool"),
    ),
)

METERS = TableSpec(
    table="meter_readings",
    key=("meter_id", "ts"),
    columns=(
        ("ts", "timestamptz"),
        ("meter_id", "text"),
        ("city", "text"),
        ("district", "text"),
        ("kind", "text"),
        ("energy_import_kwh", "float8"),
        ("energy_export_kwh", "float8"),
        ("power_w", "float4"),
        ("voltage_v", "float4"),
        ("volume_m3", "float8"),
        ("flow_lph", "float4"),
        ("tamper", "bool"),
        ("leak", "bool"),
        ("gateway_id", "text"),
    ),
    stage_only=(("_msg", "int4"),),
)

VEHICLES = TableSpec(
    table="vehicle_positions",
    key=("vehicle_id", "ts"),
    columns=(
        ("ts", "timestamptz"),
        ("vehicle_id", "text"),
        ("city", "text"),
        ("trip_id", "text"),
        ("route_id", "text"),
        ("start_date", "text"),
        ("lat", "float8"),
        ("lon", "float8"),
        ("bearing", "float4"),
        ("speed_mps", "float4"),
        ("occupancy", "text"),
    ),
)

DEVICES = TableSpec(
    table="devices",
    key=("domain", "device_id"),
    columns=(
        ("domain", "text"),
        ("device_id", "text"),
        ("city", "text"),
        ("district", "text"),
        ("first_seen", "timestamptz"),
        ("last_seen", "timestamptz"),
        ("lat", "float8"),
        ("lon", "float8"),
    ),
)

# Staging layout of device status messages (not a table of its own: they update `devices`).
STATUS = TableSpec(
    table="device_status",
    key=("domain", "device_id"),
    columns=(
        ("domain", "text"),
        ("device_id", "text"),
        ("city", "text"),
        ("status", "text"),
        ("status_ts", "timestamptz"),
    ),
)

DEAD_LETTERS = TableSpec(
    table="dead_letters",
    key=(),
    columns=(
        ("received_at", "timestamptz"),
        ("topic", "text"),
        ("payload", "bytea"),
        ("payload_bytes", "int4"),
        ("reason", "text"),
        ("detail", "text"),
    ),
)
