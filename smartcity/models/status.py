"""Device status (`city/{city}/{domain}/{device_id}/status`, retained, also the last will)
and lamp commands (`city/{city}/lighting/{lamp_id}/cmd`, published by the API)."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from smartcity.models.common import EventTime


class DeviceStatus(BaseModel):
    """A device saying it is online, or its broker-published last will saying it is offline."""

    model_config = ConfigDict(
        strict=True,
        extra="ignore",
        json_schema_extra={"examples": [{"status": "online", "ts": "2026-11-23T18:00:00Z"}]},
    )

    status: Literal["online", "offline"]
    # A last will is fixed when the device connects, so it may carry no time; the ingest then
    # uses the time it received the message.
    ts: EventTime | None = None


class LampCommand(BaseModel):
    """A command to one lamp: switch on/off and/or set the dim level, optionally until a time."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "command_id": "6f1c1f9e-3c43-4a53-a3f8-8f3c2f1b9a10",
                    "ts": "2026-11-23T18:00:00Z",
                    "lamp_on": True,
                    "dim_pct": 60.0,
                    "expires_at": "2026-11-24T01:00:00Z",
                }
            ]
        },
    )

    command_id: Annotated[str, Field(min_length=1, max_length=64)]
    ts: EventTime
    lamp_on: bool | None = None
    dim_pct: Annotated[float, Field(ge=0, le=100)] | None = None
    expires_at: EventTime | None = Field(
        default=None, description="After this the lamp returns to its own schedule."
    )

    @model_validator(mode="after")
    def _does_something(self) -> Self:
        if self.lamp_on is None and self.dim_pct is None:
            raise ValueError("a command sets lamp_on, dim_pct or both")
        return self
