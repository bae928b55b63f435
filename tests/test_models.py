"""The payload models: the contract between devices (and simulators) and the ingest."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from smartcity.models import (
    LampCommand,
    MeterReading,
    SenMLError,
    SenMLRecord,
    VehiclePosition,
    encode_pack,
    resolve_pack,
)

TS = datetime(2026, 11, 23, 13, 15, tzinfo=UTC)


def _pack(records: list[dict[str, object]]) -> list[SenMLRecord]:
    return [SenMLRecord.model_validate(r) for r in records]


def test_every_model_accepts_its_own_examples() -> None:
    for model in (MeterReading, VehiclePosition, LampCommand):
        examples = model.model_config.get("json_schema_extra", {})
        assert isinstance(examples, dict)
        for example in examples["examples"]:  # type: ignore[union-attr]
            model.model_validate(example)


def test_meter_reading_needs_the_register_of_its_kind() -> None:
    with pytest.raises(ValidationError, match="energy_import_kwh"):
        MeterReading.model_validate(
            {"meter_id": "m1", "ts": 1_795_000_000_000, "kind": "electricity"}
        )
    with pytest.raises(ValidationError, match="volume_m3"):
        MeterReading.model_validate({"meter_id": "m1", "ts": 1_795_000_000_000, "kind": "water"})


def test_senml_pack_resolves_base_fields_and_groups_per_meter_and_time() -> None:
    bt = TS.timestamp()
    readings = resolve_pack(
        _pack(
            [
                {"bn": "ast-em-1:", "bt": bt, "n": "energy_import", "u": "kWh", "v": 10.5},
                {"n": "power", "u": "W", "v": 900},
                {"n": "energy_import", "u": "kWh", "v": 10.75, "t": 900},
                {"bn": "ast-wm-2:", "n": "volume", "u": "m3", "v": 5.25},
                {"n": "leak", "vb": True},
                {"n": "district", "vs": "esil"},
            ]
        )
    )
    by_key = {(r.meter_id, r.ts): r for r in readings}
    assert len(readings) == 3
    first = by_key[("ast-em-1", TS)]
    assert (first.kind, first.energy_import_kwh, first.power_w) == ("electricity", 10.5, 900)
    later = by_key[("ast-em-1", datetime.fromtimestamp(bt + 900, tz=UTC))]
    assert later.energy_import_kwh == 10.75
    water = by_key[("ast-wm-2", TS)]
    assert (water.kind, water.volume_m3, water.leak, water.district) == (
        "water",
        5.25,
        True,
        "esil",
    )


def test_encode_then_resolve_gives_back_the_readings() -> None:
    originals = [
        MeterReading(meter_id="e1", ts=TS, kind="electricity", energy_import_kwh=1.5, power_w=10.0),
        MeterReading(
            meter_id="w1", ts=TS, kind="water", volume_m3=2.5, tamper=True, district="nura"
        ),
    ]
    assert resolve_pack(_pack(encode_pack(originals))) == originals


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{"n": "energy_import", "u": "kWh", "v": 1, "bt": 1.8e9}], "is not '{meter_id}"),
        ([{"n": "m:energy_import", "u": "Wh", "v": 1, "bt": 1.8e9}], "must be in 'kWh'"),
        ([{"n": "m:energy_import", "u": "kWh", "v": 1, "t": 5}], "absolute epoch time"),
        ([{"n": "m:energy_import", "u": "kWh", "bt": 1.8e9}], "numeric value"),
        ([{"n": "m:colour", "u": "kWh", "v": 1, "bt": 1.8e9}], "unknown quantity"),
        ([{"n": "m:district", "vs": "x", "bt": 1.8e9}], "no measured quantity"),
        (
            [
                {"bn": "m:", "bt": 1.8e9, "n": "energy_import", "u": "kWh", "v": 1},
                {"n": "volume", "u": "m3", "v": 1},
            ],
            "mixes electricity and water",
        ),
    ],
)
def test_broken_packs_say_which_record_is_wrong(
    records: list[dict[str, object]], message: str
) -> None:
    with pytest.raises(SenMLError, match=message):
        resolve_pack(_pack(records))


def test_lamp_command_must_do_something() -> None:
    with pytest.raises(ValidationError, match="sets lamp_on, dim_pct or both"):
        LampCommand.model_validate({"command_id": "c1", "ts": 1_795_000_000_000})
