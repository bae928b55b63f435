"""Payload models: the single source of truth for what devices send (see DESIGN.md, "Payloads").

Field names follow the public models (TALQ / FIWARE Streetlight for lamps, FIWARE
ACMeasurement / OBIS for electricity, FIWARE WaterConsumptionObserved for water,
GTFS-Realtime VehiclePosition for buses), in snake_case with the unit in the name.
"""

from smartcity.models.common import DeviceId, EventTime
from smartcity.models.lighting import LampTelemetry
from smartcity.models.metering import MeterKind, MeterReading
from smartcity.models.senml import SenMLError, SenMLRecord, encode_pack, resolve_pack
from smartcity.models.status import DeviceStatus, LampCommand
from smartcity.models.transit import Occupancy, VehiclePosition

__all__ = [
    "DeviceId",
    "DeviceStatus",
    "EventTime",
    "LampCommand",
    "LampTelemetry",
    "MeterKind",
    "MeterReading",
    "Occupancy",
    "SenMLError",
    "SenMLRecord",
    "VehiclePosition",
    "encode_pack",
    "resolve_pack",
]
