"""Metering payloads: electricity (FIWARE ACMeasurement / OBIS) and water (FIWARE
WaterConsumptionObserved), in snake_case with units.

A meter reports either directly (`city/{city}/metering/{meter_id}/reading`, one `MeterReading`)
or through a data concentrator as a SenML pack (see `smartcity.models.senml`).
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from smartcity.models.common import DeviceId, EventTime

MeterKind = Literal["electricity", "water"]

# A household or business connection never draws more than this; more is a unit error.
MAX_METER_POWER_W = 1_000_000.0


class MeterReading(BaseModel):
    """One interval reading of one meter."""

    model_config = ConfigDict(
        strict=True,
        extra="ignore",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "meter_id": "ast-em-000123",
                    "ts": "2026-11-23T18:15:00Z",
                    "kind": "electricity",
                    "district": "esil",
                    "energy_import_kwh": 10234.125,
                    "energy_export_kwh": 0.0,
                    "power_w": 1830.0,
                    "voltage_v": 229.4,
                },
                {
                    "meter_id": "ast-wm-000045",
                    "ts": "2026-11-23T18:15:00Z",
                    "kind": "water",
                    "district": "esil",
                    "volume_m3": 512.337,
                    "flow_lph": 42.0,
                    "tamper": False,
                    "leak": False,
                },
            ]
        },
    )

    meter_id: DeviceId
    ts: EventTime
    kind: MeterKind
    district: DeviceId | None = None
    # Electricity (OBIS 1.8.0 import and 2.8.0 export registers, monotonic).
    energy_import_kwh: Annotated[float, Field(ge=0)] | None = None
    energy_export_kwh: Annotated[float, Field(ge=0)] | None = None
    power_w: Annotated[float, Field(ge=0, le=MAX_METER_POWER_W)] | None = None
    voltage_v: Annotated[float, Field(ge=0, le=500)] | None = None
    # Water (monotonic volume register).
    volume_m3: Annotated[float, Field(ge=0)] | None = None
    flow_lph: Annotated[float, Field(ge=0, le=100_000)] | None = None
    tamper: bool = False
    leak: bool = False

    @model_validator(mode="after")
    def _register_of_its_kind(self) -> Self:
        if self.kind == "electricity" and self.energy_import_kwh is None:
            raise ValueError("an electricity reading needs energy_import_kwh")
        if self.kind == "water" and self.volume_m3 is None:
            raise ValueError("a water reading needs volume_m3")
        return self
