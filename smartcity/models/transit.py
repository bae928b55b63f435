"""Bus positions, after GTFS-Realtime's VehiclePosition, in snake_case with units."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from smartcity.models.common import DeviceId, EventTime

# GTFS-Realtime OccupancyStatus values.
Occupancy = Literal[
    "EMPTY",
    "MANY_SEATS_AVAILABLE",
    "FEW_SEATS_AVAILABLE",
    "STANDING_ROOM_ONLY",
    "CRUSHED_STANDING_ROOM_ONLY",
    "FULL",
    "NOT_ACCEPTING_PASSENGERS",
]

# GTFS ids may hold characters that are not allowed in a topic level; they are only payload.
GtfsId = Annotated[str, Field(min_length=1, max_length=255)]


class VehiclePosition(BaseModel):
    """One GPS fix: topic `city/{city}/transit/{vehicle_id}/position`."""

    model_config = ConfigDict(
        strict=True,
        extra="ignore",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "vehicle_id": "shy-bus-0042",
                    "ts": "2026-11-23T08:15:10Z",
                    "trip_id": "r07-wd-0815-0",
                    "route_id": "r07",
                    "start_date": "20261123",
                    "lat": 42.3171,
                    "lon": 69.5862,
                    "bearing": 84.0,
                    "speed_mps": 7.9,
                    "occupancy": "STANDING_ROOM_ONLY",
                }
            ]
        },
    )

    vehicle_id: DeviceId
    ts: EventTime
    trip_id: GtfsId | None = None
    route_id: GtfsId | None = None
    start_date: Annotated[str, Field(pattern=r"^\d{8}$")] | None = Field(
        default=None, description="Service date of the trip, YYYYMMDD (GTFS-RT TripDescriptor)."
    )
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    bearing: Annotated[float, Field(ge=0, lt=360)] | None = None
    speed_mps: Annotated[float, Field(ge=0, le=60)] | None = None
    occupancy: Occupancy | None = None
