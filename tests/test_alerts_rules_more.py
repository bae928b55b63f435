"""Dimming failure, water leak, consumption spike and zero consumption: fired by the simulators'
own faults, through the broker and the ingest, and quiet on the simulators' normal data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import psycopg

from simulators.lighting import LampFleet
from simulators.metering import MeterFleet
from smartcity import solar, topics
from smartcity.bench.mqttload import AckedPublisher
from smartcity.cities import get_city
from smartcity.settings import Settings
from tests.helpers import count_rows, running_ingest, wait_until

CITY = "astana"
HISTORY_DAYS = 4  # enough for the spike baseline (SPIKE_MIN_BASELINE: three days)


def _publish_all(settings: Settings, messages: list[tuple[str, bytes]]) -> None:
    with AckedPublisher(
        settings.mqtt_host, settings.mqtt_port, f"pub-{settings.mqtt_topic_root}"
    ) as pub:
        for topic, payload in messages:
            pub.publish(topic, payload)
        assert pub.flush(), "the broker did not acknowledge every message"


def _alerts(settings: Settings) -> list[tuple[str, str]]:
    with psycopg.connect(settings.database_conninfo) as conn:
        rows = conn.execute("SELECT device_id, rule FROM alerts ORDER BY 1, 2").fetchall()
    return [(str(d), str(r)) for d, r in rows]


def _start() -> datetime:
    """Midnight UTC HISTORY_DAYS + 2 days ago: the run ends in the past (the ingest's window)."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=HISTORY_DAYS + 2)


def _meter_run(settings: Settings, fleet: MeterFleet, days: float) -> list[tuple[str, bytes]]:
    """The fleet's messages for `days` (all meters behind gateways: one pack per interval)."""
    msgs: list[tuple[str, bytes]] = []
    for t_s, topic, payload in fleet.messages(_start(), settings.mqtt_topic_root):
        if t_s >= days * 86400:
            break
        msgs.append((topic, payload))
    return msgs


def _ingest(settings: Settings, msgs: list[tuple[str, bytes]], table: str) -> None:
    with running_ingest(settings) as pipeline:
        _publish_all(settings, msgs)
        registry = pipeline.metrics.registry

        def evaluated() -> bool:
            # The hook runs after each commit and before the acknowledgement: once every
            # message is acknowledged, every batch has been evaluated.
            taken = registry.get_sample_value(
                "smartcity_ingest_messages_total", {"feed": _feed(table)}
            )
            return int(taken or 0) >= len(msgs) and not pipeline._entries

        wait_until(evaluated, timeout_s=90, what="every batch evaluated")
        assert (registry.get_sample_value("smartcity_ingest_alert_errors_total") or 0) == 0


def _feed(table: str) -> str:
    return "gateway_senml" if table == "meter_readings" else "lamp_telemetry"


def _meters(faults: bool) -> tuple[MeterFleet, dict[str, str]]:
    """20 meters; with `faults`, one leak, one spike and one stuck register in the last day."""
    fleet = MeterFleet(get_city(CITY), 20, seed=11, gateway_share=1.0)
    expected: dict[str, str] = {}
    if faults:
        water = [int(i) for i in fleet.water.nonzero()[0]]
        elec = [i for i in range(len(fleet)) if i not in water]
        day = HISTORY_DAYS * 86400.0
        # 19:00 UTC is local midnight: the leak runs through the night (and is not flagged).
        fleet.faults.add(water[0], "leak", day + 17 * 3600, day + 30 * 3600, magnitude=0.3)
        # 13:00 UTC = 18:00 local, the evening rush: a spike on top of the rush.
        fleet.faults.add(elec[0], "consumption_spike", day + 13 * 3600, day + 14 * 3600, 0.1)
        fleet.faults.add(elec[1], "stuck_register", day + 2 * 3600, day + 12 * 3600)
        expected = {
            fleet.meter_ids[water[0]]: "water_leak",
            fleet.meter_ids[elec[0]]: "consumption_spike",
            fleet.meter_ids[elec[1]]: "zero_consumption",
        }
    return fleet, expected


def test_metering_rules_fire_on_the_simulators_faults(settings: Settings) -> None:
    fleet, expected = _meters(faults=True)
    msgs = _meter_run(settings, fleet, HISTORY_DAYS + 1.5)
    _ingest(settings, msgs, "meter_readings")
    assert _alerts(settings) == sorted((d, r) for d, r in expected.items())


def test_metering_rules_quiet_on_normal_days_nights_and_rush_hours(settings: Settings) -> None:
    fleet, _ = _meters(faults=False)
    msgs = _meter_run(settings, fleet, HISTORY_DAYS + 1.5)
    _ingest(settings, msgs, "meter_readings")
    assert count_rows(settings, "meter_readings") == 20 * len(msgs)
    assert _alerts(settings) == []


def _lamp_night(settings: Settings, fleet: LampFleet, interval_s: float) -> list[tuple[str, bytes]]:
    """From an hour before sunset to an hour after the next sunrise (full level, then 50 %)."""
    city = get_city(CITY)
    day = _start().astimezone(city.tz).date() + timedelta(days=HISTORY_DAYS)
    events = solar.sunrise_sunset(city.lat, city.lon, day, city.tz)
    assert events is not None
    start = events[1] - timedelta(hours=1)
    end_s = (events[0] + timedelta(days=1, hours=1) - start).total_seconds()
    msgs: list[tuple[str, bytes]] = []
    for t_s, topic, payload in fleet.messages(start, settings.mqtt_topic_root, interval_s):
        if t_s >= end_s:
            break
        msgs.append((topic, payload))
    return msgs


def test_dimming_failure_fires_after_midnight_and_healthy_lamps_stay_quiet(
    settings: Settings,
) -> None:
    fleet = LampFleet(get_city(CITY), 8, seed=3)
    # The whole night: at full level (before local midnight) a broken dimmer is invisible.
    fleet.faults.add(2, "dimming_failure", 0.0, 86400.0)
    msgs = _lamp_night(settings, fleet, interval_s=300.0)
    _ingest(settings, msgs, "lighting_readings")
    assert count_rows(settings, "lighting_readings", "dim_pct = 50") > 0, "never dimmed"
    assert _alerts(settings) == [(fleet.lamps[2].lamp_id, "dimming_failure")]


def _rate(settings: Settings) -> tuple[int, int]:
    with psycopg.connect(settings.database_conninfo) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(raised), 0), coalesce(sum(suppressed), 0) FROM alert_rate"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_the_rate_limit_holds_back_new_alerts_counts_them_and_raises_them_later(
    settings: Settings,
) -> None:
    limited = settings.model_copy(update={"alerts_max_new_per_rule_per_min": 2})
    night = _start() + timedelta(hours=20)  # 01:00 local: dark
    lamps = [f"ast-lamp-r{i}" for i in range(5)]
    with running_ingest(limited):
        # Minute by minute, each waited for: five dark lamps, at most two new alerts a minute.
        for minute, expected in enumerate([(2, 3), (4, 4), (5, 4)]):
            t = night + timedelta(minutes=minute)
            _publish_all(
                limited,
                [
                    (
                        topics.lamp_telemetry(limited.mqtt_topic_root, CITY, lamp_id),
                        _dark_lamp(lamp_id, t),
                    )
                    for lamp_id in lamps
                ],
            )
            wait_until(lambda e=expected: _rate(limited) == e, timeout_s=20, what=f"{expected}")  # type: ignore[misc]
    assert _alerts(limited) == [(lamp_id, "lamp_failure") for lamp_id in lamps]


def _dark_lamp(lamp_id: str, ts: datetime) -> bytes:
    return orjson.dumps(
        {
            "lamp_id": lamp_id,
            "ts": int(ts.timestamp() * 1000),
            "lamp_on": True,
            "dim_pct": 100.0,
            "power_w": 0.3,
            "voltage_v": 230.0,
            "current_a": 0.0,
            "power_factor": 0.5,
            "energy_wh": 1000.0,
            "operating_hours": 10.0,
        }
    )
