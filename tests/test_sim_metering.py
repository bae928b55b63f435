"""The metering simulator: valid payloads, monotonic registers, load shapes, private ids."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime

import orjson

from simulators.faults import FaultLog
from simulators.metering import MeterFleet
from smartcity import topics
from smartcity.cities import get_city
from smartcity.models import MeterReading, SenMLRecord, resolve_pack

START = datetime(2026, 1, 12, tzinfo=UTC)  # a Monday in an Astana winter


def _readings(
    fleet: MeterFleet, intervals: int, start: datetime = START
) -> list[tuple[str, MeterReading]]:
    """(topic, reading) for every reading of `intervals` intervals, each checked by its model."""
    out: list[tuple[str, MeterReading]] = []
    limit = fleet.interval_s * (intervals + 1)
    for _t, topic, payload in itertools.takewhile(
        lambda m: m[0] < limit, fleet.messages(start, "city")
    ):
        info = topics.parse_inbound("city", topic)
        assert info is not None, topic
        if info.feed is topics.Feed.GATEWAY_SENML:
            pack = [SenMLRecord.model_validate(r) for r in orjson.loads(payload)]
            out.extend((topic, r) for r in resolve_pack(pack))
        else:
            reading = MeterReading.model_validate_json(payload)
            assert reading.meter_id == info.device_id
            out.append((topic, reading))
    return out


def test_every_meter_reports_each_interval_directly_or_through_a_gateway() -> None:
    fleet = MeterFleet(get_city("astana"), 400, seed=5, gateway_share=0.5)
    readings = _readings(fleet, 4)
    assert len(readings) == 400 * 4
    via_gateway = {r.meter_id for topic, r in readings if topic.endswith("/senml")}
    assert 150 <= len(via_gateway) <= 250
    assert all(r.ts.minute % 15 == 0 and r.ts.second == 0 for _, r in readings)


def test_registers_never_decrease_and_follow_the_power() -> None:
    fleet = MeterFleet(get_city("astana"), 200, seed=9)
    by_meter: dict[str, list[MeterReading]] = defaultdict(list)
    for _, r in _readings(fleet, 96):  # one day
        by_meter[r.meter_id].append(r)
    for series in by_meter.values():
        series.sort(key=lambda r: r.ts)
        for a, b in itertools.pairwise(series):
            if a.kind == "electricity":
                assert a.energy_import_kwh is not None
                assert b.energy_import_kwh is not None
                assert b.energy_import_kwh >= a.energy_import_kwh
                # The register grows by the interval's mean power × 0.25 h (to rounding).
                assert b.power_w is not None
                step = b.energy_import_kwh - a.energy_import_kwh
                assert abs(step - b.power_w * 0.25 / 1000) < 0.002
            else:
                assert a.volume_m3 is not None
                assert b.volume_m3 is not None
                assert b.volume_m3 >= a.volume_m3


def test_evening_peak_night_trough_and_winter_heating() -> None:
    def mean_power_by_local_hour(start_month: int) -> dict[int, float]:
        fleet = MeterFleet(get_city("astana"), 300, seed=2)
        sums: dict[int, list[float]] = defaultdict(list)
        for _, r in _readings(fleet, 96, datetime(2026, start_month, 12, tzinfo=UTC)):
            if r.kind == "electricity" and r.power_w is not None:
                sums[(r.ts.hour + 5) % 24].append(r.power_w)
        return {h: sum(v) / len(v) for h, v in sums.items()}

    winter, summer = mean_power_by_local_hour(1), mean_power_by_local_hour(7)
    assert winter[20] > 1.5 * winter[4]  # evening peak over the small hours
    assert sum(winter.values()) > 1.3 * sum(summer.values())  # electric heating in January


def test_meter_ids_are_not_sequential_or_guessable() -> None:
    ids = MeterFleet(get_city("aktobe"), 500, seed=1).meter_ids
    assert len(set(ids)) == 500
    suffixes = sorted(int(i.rpartition("-")[2], 16) for i in ids)
    # 48 random bits: neighbours are far apart, never consecutive.
    assert min(b - a for a, b in itertools.pairwise(suffixes)) > 1
    assert all(topics.is_valid_level(i) for i in ids)


def test_faults_are_logged_and_shape_the_readings() -> None:
    log = FaultLog()
    fleet = MeterFleet(
        get_city("astana"),
        300,
        seed=4,
        gateway_share=0.0,
        fault_rates={"leak": 0.5, "silent": 0.3, "tamper": 0.3, "reverse_energy": 0.3},
        fault_log=log,
    )
    readings = [r for _, r in _readings(fleet, 96)]
    kinds = {str(e["fault"]) for e in log.entries}
    assert kinds == {"leak", "silent", "tamper", "reverse_energy"}
    water = set(fleet.water.nonzero()[0])
    for entry in log.entries:
        index = fleet.meter_ids.index(str(entry["device_id"]))
        if entry["fault"] == "leak":
            assert index in water
        if entry["fault"] == "reverse_energy":
            assert index not in water
    assert len(readings) < 300 * 96  # silent meters skipped intervals
    assert any(r.tamper for r in readings)
    assert any((r.energy_export_kwh or 0) > 0 for r in readings)
