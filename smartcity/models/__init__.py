"""Payload models: the single source of truth for what devices send (see DESIGN.md, "Payloads").

Field names follow the public models (TALQ / FIWARE Streetlight for lamps), in snake_case with
the unit in the name. Their JSON Schemas are exported to `docs/schemas/`.
"""

from smartcity.models.common import EventTime
from smartcity.models.lighting import LampTelemetry

__all__ = ["EventTime", "LampTelemetry"]
