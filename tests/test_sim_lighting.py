"""The lighting simulator: the sun's schedule, commands, faults, malformed messages."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest
from pydantic import ValidationError

from simulators.faults import MALFORMED_KINDS, FaultLog, corrupt, with_malformed
from simulators.lighting import LampFleet
from smartcity.cities import get_city
from smartcity.models import LampTelemetry

TZ = ZoneInfo("Asia/Almaty")
# Reference sunrise and sunset for Astana (the `astral` package, as in test_solar.py).
ASTANA_SUN = [
    (date(2026, 1, 15), "08:12:11", "16:35:18"),
    (date(2026, 6, 21), "03:58:59", "20:32:59"),
    (date(2026, 9, 23), "06:01:47", "18:10:33"),
]
# Photocells switch at about −2° of solar elevation: some minutes after sunset and before
# sunrise; never more than this (at Astana's latitude it is 8–15 min).
SWITCH_AFTER_SUNSET = timedelta(minutes=20)


def _series(fleet: LampFleet, start: datetime, minutes: int) -> list[LampTelemetry]:
    out = []
    for _t, _topic, payload in itertools.takewhile(
        lambda m: m[0] < minutes * 60, fleet.messages(start, "city", 60.0)
    ):
        out.append(LampTelemetry.model_validate_json(payload))
    return out


@pytest.mark.parametrize(("day", "sunrise", "sunset"), ASTANA_SUN)
def test_lamps_switch_on_after_sunset_and_off_before_sunrise(
    day: date, sunrise: str, sunset: str
) -> None:
    fleet = LampFleet(get_city("astana"), 3, seed=1)
    local_noon = datetime.combine(day, datetime.strptime("12:00", "%H:%M").time(), TZ)
    readings = _series(fleet, local_noon, 24 * 60)
    assert len(readings) == 3 * 24 * 60
    rise = datetime.combine(
        day + timedelta(days=1), datetime.strptime(sunrise, "%H:%M:%S").time(), TZ
    )
    set_ = datetime.combine(day, datetime.strptime(sunset, "%H:%M:%S").time(), TZ)
    on = [r.ts for r in readings if r.lamp_on]
    first_on, last_on = min(on), max(on)
    assert set_ <= first_on <= set_ + SWITCH_AFTER_SUNSET, (first_on.astimezone(TZ), set_)
    # (the reference sunrise is the next day's; it moves by under 2 minutes a day)
    assert rise - SWITCH_AFTER_SUNSET - timedelta(minutes=3) <= last_on <= rise, (
        last_on.astimezone(TZ),
        rise,
    )
    for r in readings:
        if r.lamp_on:
            assert r.power_w > 5
            local = r.ts.astimezone(TZ)
            assert r.dim_pct == (50.0 if local.hour < 12 else 100.0)
        else:
            assert r.power_w < 1
            assert r.dim_pct == 0


def test_registers_never_decrease() -> None:
    fleet = LampFleet(get_city("astana"), 8, seed=2)
    by_lamp: dict[str, list[LampTelemetry]] = {}
    for r in _series(fleet, datetime(2026, 11, 23, 10, tzinfo=UTC), 24 * 60):
        by_lamp.setdefault(r.lamp_id, []).append(r)
    for series in by_lamp.values():
        for a, b in itertools.pairwise(series):
            assert b.energy_wh >= a.energy_wh
            assert b.operating_hours >= a.operating_hours


def test_a_command_overrides_the_schedule_until_it_expires() -> None:
    fleet = LampFleet(get_city("astana"), 5, seed=3)
    start = datetime(2026, 11, 23, 16, tzinfo=UTC)  # 21:00 local: scheduled 100 %
    lamp_id = fleet.lamps[2].lamp_id
    stream = fleet.messages(start, "city", 60.0)
    before = [LampTelemetry.model_validate_json(p) for _, _, p in itertools.islice(stream, 10)]
    assert all(r.dim_pct == 100.0 for r in before)
    command = {
        "command_id": "c-1",
        "ts": "2026-11-23T16:02:00Z",
        "dim_pct": 30.0,
        "expires_at": "2026-11-23T16:20:00Z",
    }
    fleet.commands.put((lamp_id, orjson.dumps(command)))
    fleet.commands.put((lamp_id, b'{"command_id": "c-2"}'))  # does nothing: rejected
    fleet.commands.put(("no-such-lamp", orjson.dumps(command)))
    after = [
        LampTelemetry.model_validate_json(p)
        for t, _, p in itertools.takewhile(lambda m: m[0] < 40 * 60, stream)
    ]
    mine = [r for r in after if r.lamp_id == lamp_id]
    expiry = datetime(2026, 11, 23, 16, 20, tzinfo=UTC)
    assert all(r.dim_pct == 30.0 and r.lamp_on for r in mine if r.ts < expiry)
    assert all(r.dim_pct == 100.0 for r in mine if r.ts >= expiry)
    assert sum(r.ts < expiry for r in mine) >= 15
    dimmed = [r.power_w for r in mine if r.ts < expiry]
    full = [r.power_w for r in mine if r.ts >= expiry]
    assert max(dimmed) < min(full)
    assert all(r.dim_pct == 100.0 for r in after if r.lamp_id != lamp_id)
    assert fleet.commands_applied == 1
    assert len(fleet.commands_rejected) == 2

    fleet.commands.put((lamp_id, orjson.dumps({"command_id": "c-3", "ts": 0, "lamp_on": False})))
    off = [
        LampTelemetry.model_validate_json(p)
        for t, _, p in itertools.takewhile(lambda m: m[0] < 45 * 60, stream)
    ]
    assert all(not r.lamp_on and r.power_w < 1 for r in off if r.lamp_id == lamp_id)


def test_lighting_faults_shape_readings_and_are_logged() -> None:
    log = FaultLog()
    rates = {
        "lamp_failure": 1.0,
        "day_burning": 1.0,
        "dimming_failure": 1.0,
        "supply_loss": 1.0,
        "silent": 1.0,
    }
    fleet = LampFleet(get_city("astana"), 20, seed=5, fault_rates=rates, fault_log=log)
    start = datetime(2026, 11, 23, tzinfo=UTC)
    readings = _series(fleet, start, 24 * 60)
    assert {e["fault"] for e in log.entries} == set(rates)
    windows = [
        (
            str(e["device_id"]),
            str(e["fault"]),
            datetime.fromisoformat(str(e["start"])),
            datetime.fromisoformat(str(e["end"])),
        )
        for e in log.entries
    ]

    def fault_of(r: LampTelemetry) -> str | None:
        for lamp, kind, a, b in windows:
            if lamp == r.lamp_id and a <= r.ts < b:
                return kind
        return None

    seen = set()
    for r in readings:
        kind = fault_of(r)
        scheduled = fleet.dim_pct_at(r.ts)
        if kind is None:
            assert r.lamp_on == (scheduled > 0)
            continue
        seen.add(kind)
        if kind == "supply_loss":
            assert r.voltage_v == 0
            assert r.power_w == 0
        elif kind == "lamp_failure" and r.lamp_on:
            assert r.power_w < 1
        elif kind == "day_burning":
            assert r.lamp_on
            assert r.power_w > 5
        elif kind == "dimming_failure" and r.lamp_on and r.dim_pct == 50:
            rated = next(x.rated_w for x in fleet.lamps if x.lamp_id == r.lamp_id)
            assert r.power_w > 0.85 * rated
    assert len(readings) < 20 * 24 * 60  # silent lamps skipped reports
    assert {"supply_loss", "day_burning", "lamp_failure"} <= seen


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_malformed_messages_fail_the_model(kind: str) -> None:
    fleet = LampFleet(get_city("astana"), 5, seed=1)
    _, _, payload = next(fleet.messages(datetime(2026, 11, 23, tzinfo=UTC), "city"))
    broken = corrupt(payload, kind, random.Random(1))
    with pytest.raises((ValidationError, ValueError)):
        LampTelemetry.model_validate_json(broken)


def test_malformed_share_is_logged() -> None:
    log = FaultLog()
    fleet = LampFleet(get_city("astana"), 50, seed=1)
    start = datetime(2026, 11, 23, tzinfo=UTC)
    stream = with_malformed(
        itertools.islice(fleet.messages(start, "city"), 2000), 0.05, seed=1, start=start, log=log
    )
    bad = 0
    for _, _, payload in stream:
        try:
            LampTelemetry.model_validate_json(payload)
        except ValidationError:
            bad += 1
    assert bad == len(log.entries)
    assert 50 < bad < 150
    assert {str(e["fault"]) for e in log.entries} == {f"malformed:{k}" for k in MALFORMED_KINDS}
