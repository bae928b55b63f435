"""Street-lighting payloads (TALQ / FIWARE Streetlight, in snake_case with units)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from smartcity.models.common import DeviceId, EventTime

# A single street lamp never draws more than this; a larger figure is a unit error (W vs kW)
# or a broken sensor. The largest LED road luminaires are around 300 W.
MAX_LAMP_POWER_W = 2000.0


class LampTelemetry(BaseModel):
    """One lamp reading: topic `city/{city}/lighting/{lamp_id}/telemetry`."""

    model_config = ConfigDict(
        # Strict: "80" is not 80 and "true" is not true. A device that sends strings for numbers
        # has a firmware bug that an operator should see in dead_letters, not have papered over.
        strict=True,
        # Unknown fields are ignored so that newer firmware with extra fields still reports.
        extra="ignore",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "lamp_id": "ast-lamp-000042",
                    "ts": "2026-11-23T18:00:00Z",
                    "district": "esil",
                    "cabinet_id": "ast-cab-0003",
                    "lamp_on": True,
                    "dim_pct": 100.0,
                    "power_w": 96.4,
                    "voltage_v": 229.8,
                    "current_a": 0.44,
                    "power_factor": 0.95,
                    "energy_wh": 183220.5,
                    "operating_hours": 2011.2,
                    "lamp_failure": False,
                }
            ]
        },
    )

    lamp_id: DeviceId
    ts: EventTime
    district: DeviceId | None = Field(default=None, description="District slug of the lamp.")
    cabinet_id: DeviceId | None = Field(default=None, description="Control cabinet feeding it.")
    lamp_on: bool = Field(description="Commanded/actual power state (FIWARE powerState).")
    dim_pct: Annotated[float, Field(ge=0, le=100)]
    power_w: Annotated[float, Field(ge=0, le=MAX_LAMP_POWER_W)]
    voltage_v: Annotated[float, Field(ge=0, le=500)]
    current_a: Annotated[float, Field(ge=0, le=50)]
    power_factor: Annotated[float, Field(ge=0, le=1)]
    energy_wh: Annotated[float, Field(ge=0, description="Lifetime energy register.")]
    operating_hours: Annotated[float, Field(ge=0)]
    lamp_failure: bool = False
    lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180)] | None = None
