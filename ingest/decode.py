"""Decode and validate one MQTT message into rows, or say exactly why not.

Each feed has a decoder: bytes → orjson → pydantic model → row tuples in the layout of
`ingest.rows`. Anything that cannot become rows raises `PayloadError` with a stable reason code
(the `dead_letters.reason` column and a metric label) and a detail a person can act on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from smartcity.errors import PayloadError
from smartcity.models import LampTelemetry
from smartcity.topics import Domain, Feed, TopicInfo

Row = tuple[object, ...]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class DeviceSighting:
    domain: Domain
    device_id: str
    city: str
    district: str | None
    ts: datetime
    lat: float | None = None
    lon: float | None = None


@dataclass(slots=True)
class Decoded:
    """The rows one message becomes, per table, and the devices it shows alive."""

    rows: dict[str, list[Row]] = field(default_factory=dict)
    sightings: list[DeviceSighting] = field(default_factory=list)

    def add(self, table: str, row: Row) -> None:
        self.rows.setdefault(table, []).append(row)


def _validation_detail(exc: ValidationError) -> str:
    # Field locations and messages only: the input values may be huge or hold bytes that do
    # not belong in a log line; the raw payload is kept in dead_letters anyway.
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(payload)"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def _load_object(payload: bytes) -> dict[str, object]:
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PayloadError("malformed_json", f"payload is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(value, dict):
        raise PayloadError(
            "not_an_object", f"payload must be a JSON object, got {type(value).__name__}"
        )
    return value


def _validate(model: type[M], obj: dict[str, object]) -> M:
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise PayloadError("invalid_fields", _validation_detail(exc)) from None


def decode_lamp_telemetry(info: TopicInfo, payload: bytes) -> Decoded:
    reading = _validate(LampTelemetry, _load_object(payload))
    if reading.lamp_id != info.device_id:
        raise PayloadError(
            "device_mismatch",
            f"payload lamp_id {reading.lamp_id!r} does not match topic device {info.device_id!r}",
        )
    out = Decoded()
    out.add(
        "lighting_readings",
        (
            reading.ts,
            reading.lamp_id,
            info.city,
            reading.district,
            reading.cabinet_id,
            reading.lamp_on,
            reading.dim_pct,
            reading.power_w,
            reading.voltage_v,
            reading.current_a,
            reading.power_factor,
            reading.energy_wh,
            reading.operating_hours,
            reading.lamp_failure,
        ),
    )
    out.sightings.append(
        DeviceSighting(
            Domain.LIGHTING,
            reading.lamp_id,
            info.city,
            reading.district,
            reading.ts,
            reading.lat,
            reading.lon,
        )
    )
    return out


Decoder = Callable[[TopicInfo, bytes], Decoded]

# Feeds without a decoder yet are dead-lettered as `unsupported_feed`, never silently dropped.
DECODERS: dict[Feed, Decoder] = {
    Feed.LAMP_TELEMETRY: decode_lamp_telemetry,
}


def decode(info: TopicInfo | None, payload: bytes, *, max_payload_bytes: int) -> Decoded:
    """Decode a message whose topic parsed to `info` (None: not a topic we understand)."""
    if info is None:
        raise PayloadError("unknown_topic", "topic does not match any feed in DESIGN.md")
    if len(payload) > max_payload_bytes:
        raise PayloadError(
            "payload_too_large",
            f"payload is {len(payload)} bytes; the limit is {max_payload_bytes}",
        )
    decoder = DECODERS.get(info.feed)
    if decoder is None:
        raise PayloadError("unsupported_feed", f"no decoder for feed {info.feed.value} yet")
    return decoder(info, payload)
