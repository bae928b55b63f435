"""SenML packs (RFC 8428, JSON) from metering data concentrators, and their meaning here.

Topic: `city/{city}/metering/gateway/{gw_id}/senml`. A pack is a JSON array of records. Base
fields (`bn`, `bt`, `bu`, `bv`) apply to the record that carries them and to every later
record until changed (RFC 8428 §4.1). Resolved name = `bn` + `n`; resolved time = `bt` + `t`
(seconds since the epoch; values below 2**28 are relative to now, which a concentrator must not
send here, so they are rejected).

Each resolved name is `{meter_id}:{quantity}`, for example:

    [{"bn": "ast-em-000123:", "bt": 1795456800, "n": "energy_import", "u": "kWh", "v": 10234.125},
     {"n": "power", "u": "W", "v": 1830},
     {"bn": "ast-wm-000045:", "n": "volume", "u": "m3", "v": 512.337}]

Records of the same meter and time make one `MeterReading` (one row). The quantities and
their required units are in `QUANTITIES`; `district` (string value `vs`) and the boolean
flags `tamper` and `leak` (`vb`) are allowed too. A concentrator that sends one register
record per meter per interval (the common case) makes one row per record.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from smartcity.models.metering import MeterReading

# Times below this are "relative to now" in SenML (RFC 8428 §4.5.3); a concentrator forwarding
# stored interval readings must send absolute times.
SENML_RELATIVE_TIME_LIMIT_S = 2**28

# quantity name → (unit, MeterReading field, meter kind)
QUANTITIES: dict[str, tuple[str, str, str]] = {
    "energy_import": ("kWh", "energy_import_kwh", "electricity"),
    "energy_export": ("kWh", "energy_export_kwh", "electricity"),
    "power": ("W", "power_w", "electricity"),
    "voltage": ("V", "voltage_v", "electricity"),
    "volume": ("m3", "volume_m3", "water"),
    "flow": ("l/h", "flow_lph", "water"),
}
FLAGS = ("tamper", "leak")


class SenMLRecord(BaseModel):
    """One SenML record; only the fields this service understands (others are ignored)."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)

    bn: Annotated[str, Field(max_length=128)] | None = None
    bt: float | None = None
    bu: Annotated[str, Field(max_length=16)] | None = None
    bv: float | None = None
    n: Annotated[str, Field(max_length=128)] = ""
    u: Annotated[str, Field(max_length=16)] | None = None
    v: float | None = None
    vs: Annotated[str, Field(max_length=64)] | None = None
    vb: bool | None = None
    t: float = 0.0


class SenMLError(ValueError):
    """A pack that cannot be resolved; the message names the record (0-based index)."""


def resolve_pack(records: Sequence[SenMLRecord]) -> list[MeterReading]:
    """Resolve base fields and group a pack's records into one reading per meter and time."""
    bn, bt, bu, bv = "", 0.0, None, 0.0
    grouped: dict[tuple[str, float], dict[str, object]] = {}
    for i, rec in enumerate(records):
        bn = rec.bn if rec.bn is not None else bn
        bt = rec.bt if rec.bt is not None else bt
        bu = rec.bu if rec.bu is not None else bu
        bv = rec.bv if rec.bv is not None else bv
        name = bn + rec.n
        meter_id, sep, quantity = name.rpartition(":")
        if not sep or not meter_id:
            raise SenMLError(f"record {i}: name {name!r} is not '{{meter_id}}:{{quantity}}'")
        when = bt + rec.t
        if not math.isfinite(when) or when < SENML_RELATIVE_TIME_LIMIT_S:
            raise SenMLError(f"record {i}: time {when!r} is not an absolute epoch time")
        fields = grouped.setdefault((meter_id, when), {"meter_id": meter_id})
        if quantity in QUANTITIES:
            unit, field, kind = QUANTITIES[quantity]
            got_unit = rec.u if rec.u is not None else bu
            if got_unit != unit:
                raise SenMLError(f"record {i}: {quantity} must be in {unit!r}, got {got_unit!r}")
            if rec.v is None:
                raise SenMLError(f"record {i}: {quantity} needs a numeric value 'v'")
            if fields.setdefault("kind", kind) != kind:
                raise SenMLError(f"record {i}: meter {meter_id} mixes electricity and water")
            fields[field] = bv + rec.v
        elif quantity in FLAGS:
            if rec.vb is None:
                raise SenMLError(f"record {i}: {quantity} needs a boolean value 'vb'")
            fields[quantity] = rec.vb
        elif quantity == "district":
            if rec.vs is None:
                raise SenMLError(f"record {i}: district needs a string value 'vs'")
            fields["district"] = rec.vs
        else:
            raise SenMLError(
                f"record {i}: unknown quantity {quantity!r}; known: "
                f"{', '.join([*QUANTITIES, *FLAGS, 'district'])}"
            )
    readings = []
    for (meter_id, when), fields in grouped.items():
        if "kind" not in fields:
            raise SenMLError(f"meter {meter_id} at t={when:g} has no measured quantity")
        fields["ts"] = datetime.fromtimestamp(when, tz=UTC)
        readings.append(MeterReading.model_validate(fields))
    return readings


def encode_pack(readings: Sequence[MeterReading]) -> list[dict[str, object]]:
    """The SenML records for `readings` (one register record per reading, plus its other
    fields), using base name and base time to keep the pack small."""
    records: list[dict[str, object]] = []
    for r in readings:
        base: dict[str, object] = {"bn": f"{r.meter_id}:", "bt": r.ts.timestamp()}
        for quantity, (unit, field, kind) in QUANTITIES.items():
            value = getattr(r, field)
            if kind == r.kind and value is not None:
                records.append({**base, "n": quantity, "u": unit, "v": value})
                base = {}
        for flag in FLAGS:
            if getattr(r, flag):
                records.append({**base, "n": flag, "vb": True})
                base = {}
        if r.district is not None:
            records.append({**base, "n": "district", "vs": r.district})
    return records
