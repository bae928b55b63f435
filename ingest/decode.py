"""Decode and validate one MQTT message into rows, or say exactly why not.

Each feed has a decoder: bytes → orjson → pydantic model → row tuples in the layout of
`ingest.rows`. Anything that cannot become rows raises `PayloadError` with a stable reason code
(the `dead_letters.reason` column and a metric label) and a detail a person can act on.

Reasons (stable; dashboards and alerts key on them):

    unknown_topic       the topic matches no feed in DESIGN.md
    unknown_city        the topic's city is not one of `smartcity.cities`
    payload_too_large   over SMARTCITY_INGEST_MAX_PAYLOAD_BYTES (checked before parsing)
    malformed_json      not UTF-8 JSON (NaN/Infinity are not JSON either)
    not_an_object       JSON, but not the object (or, for SenML, the array) the feed needs
    invalid_fields      a field is missing, of the wrong type or out of range (e.g. power_w < 0)
    device_mismatch     the device id in the payload is not the one in the topic
    outside_city        a position outside the topic city's bounding box
    invalid_senml       a SenML pack that cannot be resolved; the detail names the record
    future_timestamp    event time further ahead than SMARTCITY_INGEST_MAX_FUTURE_S
    too_old             event time older than SMARTCITY_INGEST_MAX_AGE_DAYS
    register_backwards  (database side, see ingest.writer) a meter register below its previous
                        reading by more than SMARTCITY_INGEST_REGISTER_TOLERANCE
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from smartcity.cities import CITIES
from smartcity.errors import PayloadError
from smartcity.models import (
    DeviceStatus,
    LampTelemetry,
    MeterReading,
    SenMLError,
    SenMLRecord,
    VehiclePosition,
    resolve_pack,
)
from smartcity.topics import Domain, Feed, TopicInfo

Row = tuple[object, ...]
M = TypeVar("M", bound=BaseModel)

# A concentrator's pack larger than this is a misconfigured device, not a batch to honour.
MAX_SENML_RECORDS = 10_000
_SENML_PACK = TypeAdapter(list[SenMLRecord])


@dataclass(frozen=True, slots=True)
class DeviceSighting:
    domain: Domain
    device_id: str
    city: str
    district: str | None
    ts: datetime
    lat: float | None = None
    lon: float | None = None


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    domain: Domain
    device_id: str
    city: str
    status: str
    ts: datetime


@dataclass(slots=True)
class Decoded:
    """The rows one message becomes, per table, and the devices it shows alive."""

    rows: dict[str, list[Row]] = field(default_factory=dict)
    sightings: list[DeviceSighting] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)

    def add(self, table: str, row: Row) -> None:
        self.rows.setdefault(table, []).append(row)


@dataclass(frozen=True, slots=True)
class Limits:
    """What a plausible message looks like; built from the settings by the pipeline.

    `max_future_s` / `max_age_s` of None switch the event-time window off (unit tests of the
    decoders with fixed dates)."""

    max_payload_bytes: int = 65536
    max_future_s: float | None = None
    max_age_s: float | None = None


def _validation_detail(exc: ValidationError, prefix: str = "") -> str:
    # Field locations and messages only: the input values may be huge or hold bytes that do
    # not belong in a log line; the raw payload is kept in dead_letters anyway.
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(payload)"
        parts.append(f"{prefix}{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def _load(payload: bytes) -> object:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PayloadError("malformed_json", f"payload is not valid UTF-8 JSON: {exc}") from None


def _load_object(payload: bytes) -> dict[str, object]:
    value = _load(payload)
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


def _parse(model: type[M], payload: bytes) -> M:
    """Parse and validate in one step (pydantic-core's JSON parser: about twice as fast as
    orjson + model_validate). Only for valid payloads: on any error the message takes the slow
    path, whose errors are classified (malformed_json, not_an_object, invalid_fields)."""
    try:
        return model.model_validate_json(payload)
    except ValidationError:
        return _validate(model, _load_object(payload))


def _same_device(field_name: str, value: str, info: TopicInfo) -> None:
    if value != info.device_id:
        raise PayloadError(
            "device_mismatch",
            f"payload {field_name} {value!r} does not match topic device {info.device_id!r}; "
            "a device may publish only under its own topic",
        )


def decode_lamp_telemetry(info: TopicInfo, payload: bytes, _received: datetime) -> Decoded:
    reading = _parse(LampTelemetry, payload)
    _same_device("lamp_id", reading.lamp_id, info)
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


def _meter_row(r: MeterReading, city: str, gateway_id: str | None) -> Row:
    return (
        r.ts,
        r.meter_id,
        city,
        r.district,
        r.kind,
        r.energy_import_kwh,
        r.energy_export_kwh,
        r.power_w,
        r.voltage_v,
        r.volume_m3,
        r.flow_lph,
        r.tamper,
        r.leak,
        gateway_id,
    )


def decode_meter_reading(info: TopicInfo, payload: bytes, _received: datetime) -> Decoded:
    reading = _parse(MeterReading, payload)
    _same_device("meter_id", reading.meter_id, info)
    out = Decoded()
    out.add("meter_readings", _meter_row(reading, info.city, None))
    out.sightings.append(
        DeviceSighting(Domain.METERING, reading.meter_id, info.city, reading.district, reading.ts)
    )
    return out


def _senml_records(payload: bytes) -> list[SenMLRecord]:
    value = _load(payload)
    if not isinstance(value, list):
        raise PayloadError(
            "not_an_object",
            f"a SenML pack must be a JSON array of records, got {type(value).__name__}",
        )
    try:
        return _SENML_PACK.validate_python(value)
    except ValidationError as exc:
        # Locations start with the record index, e.g. "record 3.v: Input should be a number".
        raise PayloadError("invalid_senml", _validation_detail(exc, prefix="record ")) from None


def decode_gateway_senml(info: TopicInfo, payload: bytes, _received: datetime) -> Decoded:
    try:
        records = _SENML_PACK.validate_json(payload)  # fast path, as in `_parse`
    except ValidationError:
        records = _senml_records(payload)
    if not records:
        raise PayloadError("invalid_senml", "the pack is empty; send at least one record")
    if len(records) > MAX_SENML_RECORDS:
        raise PayloadError(
            "invalid_senml",
            f"the pack has {len(records)} records; the limit is {MAX_SENML_RECORDS}",
        )
    try:
        readings = resolve_pack(records)
    except SenMLError as exc:
        raise PayloadError("invalid_senml", str(exc)) from None
    except ValidationError as exc:
        # A resolved reading is impossible (e.g. negative power); MeterReading says which field.
        raise PayloadError("invalid_senml", _validation_detail(exc, prefix="reading ")) from None
    out = Decoded()
    for r in readings:
        out.add("meter_readings", _meter_row(r, info.city, info.device_id))
        out.sightings.append(
            DeviceSighting(Domain.METERING, r.meter_id, info.city, r.district, r.ts)
        )
    return out


def decode_vehicle_position(info: TopicInfo, payload: bytes, _received: datetime) -> Decoded:
    pos = _parse(VehiclePosition, payload)
    _same_device("vehicle_id", pos.vehicle_id, info)
    city = CITIES[info.city]
    if not city.contains(pos.lat, pos.lon):
        raise PayloadError(
            "outside_city",
            f"position {pos.lat:.5f},{pos.lon:.5f} is outside {city.name}'s bounding box "
            f"({city.lat - city.half_lat_deg:.3f}..{city.lat + city.half_lat_deg:.3f} N, "
            f"{city.lon - city.half_lon_deg:.3f}..{city.lon + city.half_lon_deg:.3f} E)",
        )
    out = Decoded()
    out.add(
        "vehicle_positions",
        (
            pos.ts,
            pos.vehicle_id,
            info.city,
            pos.trip_id,
            pos.route_id,
            pos.start_date,
            pos.lat,
            pos.lon,
            pos.bearing,
            pos.speed_mps,
            pos.occupancy,
        ),
    )
    out.sightings.append(
        DeviceSighting(Domain.TRANSIT, pos.vehicle_id, info.city, None, pos.ts, pos.lat, pos.lon)
    )
    return out


def decode_device_status(info: TopicInfo, payload: bytes, received: datetime) -> Decoded:
    status = _validate(DeviceStatus, _load_object(payload))
    out = Decoded()
    # A last will is fixed at connect time and usually has no ts: the broker sends it when the
    # device is gone, so the time we receive it is the best event time there is.
    out.statuses.append(
        StatusUpdate(info.domain, info.device_id, info.city, status.status, status.ts or received)
    )
    return out


Decoder = Callable[[TopicInfo, bytes, datetime], Decoded]

# The ingest subscribes to exactly these feeds (see ingest.pipeline).
DECODERS: dict[Feed, Decoder] = {
    Feed.LAMP_TELEMETRY: decode_lamp_telemetry,
    Feed.METER_READING: decode_meter_reading,
    Feed.GATEWAY_SENML: decode_gateway_senml,
    Feed.VEHICLE_POSITION: decode_vehicle_position,
    Feed.DEVICE_STATUS: decode_device_status,
}


def _check_times(out: Decoded, limits: Limits, now_s: float) -> None:
    if limits.max_future_s is None and limits.max_age_s is None:
        return
    # Fast path: compare epoch seconds; only a message out of the window builds the detail.
    latest_s = now_s + limits.max_future_s if limits.max_future_s is not None else math.inf
    earliest_s = now_s - limits.max_age_s if limits.max_age_s is not None else -math.inf
    for rows in out.rows.values():
        for row in rows:
            ts = row[0]
            if not isinstance(ts, datetime) or not earliest_s <= ts.timestamp() <= latest_s:
                _time_error(out, limits, now_s)
    for s in out.statuses:
        if not earliest_s <= s.ts.timestamp() <= latest_s:
            _time_error(out, limits, now_s)


def _time_error(out: Decoded, limits: Limits, now_s: float) -> None:
    """Raise the PayloadError for the first reading of `out` outside the time window."""
    latest = datetime.fromtimestamp(now_s + (limits.max_future_s or 0.0), tz=UTC)
    earliest = (
        datetime.fromtimestamp(now_s, tz=UTC) - timedelta(seconds=limits.max_age_s)
        if limits.max_age_s is not None
        else None
    )
    times = [row[0] for rows in out.rows.values() for row in rows]
    times += [s.ts for s in out.statuses]
    for i, ts in enumerate(times):
        assert isinstance(ts, datetime)
        where = f"reading {i} " if len(times) > 1 else ""
        if limits.max_future_s is not None and ts > latest:
            raise PayloadError(
                "future_timestamp",
                f"{where}ts {ts.isoformat()} is more than {limits.max_future_s:g} s ahead of the "
                "ingest's clock; fix the device clock (NTP)",
            )
        if limits.max_age_s is not None and earliest is not None and ts < earliest:
            raise PayloadError(
                "too_old",
                f"{where}ts {ts.isoformat()} is older than the {limits.max_age_s / 86400:g}-day "
                "limit (SMARTCITY_INGEST_MAX_AGE_DAYS); check the device clock",
            )


def decode(
    info: TopicInfo | None,
    payload: bytes,
    *,
    max_payload_bytes: int | None = None,
    limits: Limits | None = None,
    received_at: float | None = None,
) -> Decoded:
    """Decode a message whose topic parsed to `info` (None: not a topic we understand)."""
    limits = limits or Limits()
    if max_payload_bytes is not None:
        limits = Limits(max_payload_bytes, limits.max_future_s, limits.max_age_s)
    if info is None:
        raise PayloadError("unknown_topic", "topic does not match any feed in DESIGN.md")
    if len(payload) > limits.max_payload_bytes:
        raise PayloadError(
            "payload_too_large",
            f"payload is {len(payload)} bytes; the limit is {limits.max_payload_bytes}",
        )
    if info.city not in CITIES:
        raise PayloadError(
            "unknown_city",
            f"topic city {info.city!r} is not served here; known: {', '.join(sorted(CITIES))}",
        )
    decoder = DECODERS.get(info.feed)
    if decoder is None:
        raise PayloadError("unsupported_feed", f"no decoder for feed {info.feed.value} yet")
    now_s = time.time() if received_at is None else received_at
    out = decoder(info, payload, datetime.fromtimestamp(now_s, tz=UTC))
    _check_times(out, limits, now_s)
    return out
