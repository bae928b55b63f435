"""Row layouts of the raw tables, as the writer COPYs them (column name, PostgreSQL type)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TableSpec:
    table: str
    key: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.columns]

    @property
    def types(self) -> list[str]:
        return [kind for _, kind in self.columns]


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
