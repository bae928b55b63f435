"""Alert rules fed by real readings through the broker and the ingest, on the real database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta

import orjson
import psycopg

from simulators.lighting import LampFleet
from smartcity import solar, topics
from smartcity.bench.mqttload import AckedPublisher
from smartcity.cities import get_city
from smartcity.settings import Settings
from tests.helpers import count_rows, discard_session, running_ingest, wait_until

CITY = "astana"
LAMP_RATED_W = 100.0


def _night() -> datetime:
    """01:00 in Astana (UTC+5) two days ago: dark all year, inside the ingest's time window."""
    day = datetime.now(UTC).replace(hour=20, minute=0, second=0, microsecond=0)
    return day - timedelta(days=2)


def _noon() -> datetime:
    return _night() - timedelta(hours=13)  # 12:00 local the day before


def lamp(
    lamp_id: str,
    ts: datetime,
    *,
    on: bool = True,
    dim: float = 100.0,
    power: float | None = None,
    volts: float = 230.0,
) -> bytes:
    if power is None:
        power = LAMP_RATED_W * (0.1 + 0.9 * dim / 100) if on else 0.5
    return orjson.dumps(
        {
            "lamp_id": lamp_id,
            "ts": int(ts.timestamp() * 1000),
            "lamp_on": on,
            "dim_pct": dim if on else 0.0,
            "power_w": power,
            "voltage_v": volts,
            "current_a": round(power / volts, 3) if volts > 0 else 0.0,
            "power_factor": 0.95,
            "energy_wh": 1000.0,
            "operating_hours": 10.0,
        }
    )


def meter(
    meter_id: str,
    ts: datetime,
    register_kwh: float,
    *,
    tamper: bool = False,
    export_kwh: float = 12.5,
) -> bytes:
    return orjson.dumps(
        {
            "meter_id": meter_id,
            "ts": int(ts.timestamp() * 1000),
            "kind": "electricity",
            "energy_import_kwh": register_kwh,
            "energy_export_kwh": export_kwh,
            "power_w": 800.0,
            "voltage_v": 229.0,
            "tamper": tamper,
        }
    )


@contextmanager
def _publisher(settings: Settings) -> Iterator[AckedPublisher]:
    with AckedPublisher(
        settings.mqtt_host, settings.mqtt_port, f"pub-{settings.mqtt_topic_root}"
    ) as pub:
        yield pub


def _publish(settings: Settings, messages: list[tuple[str, bytes]]) -> None:
    with _publisher(settings) as pub:
        for topic, payload in messages:
            pub.publish(topic, payload)
        assert pub.flush(), "the broker did not acknowledge every reading"


def _lamp_topic(settings: Settings, lamp_id: str) -> str:
    return topics.lamp_telemetry(settings.mqtt_topic_root, CITY, lamp_id)


def _alerts(settings: Settings) -> list[tuple[str, str, str, int]]:
    """(device, rule, state, occurrence_count) of every alert, sorted."""
    with psycopg.connect(settings.database_conninfo) as conn:
        rows = conn.execute(
            "SELECT device_id, rule, state, occurrence_count FROM alerts ORDER BY 1, 2, alert_id"
        ).fetchall()
    return [(str(d), str(r), str(s), int(c)) for d, r, s, c in rows]


def test_each_rule_fires_from_readings_through_the_broker(settings: Settings) -> None:
    night, noon = _night(), _noon()
    msgs: list[tuple[str, bytes]] = []
    for k in range(3):
        t = night + timedelta(minutes=k)
        msgs += [
            (_lamp_topic(settings, "ast-lamp-dark"), lamp("ast-lamp-dark", t, power=0.4)),
            (
                _lamp_topic(settings, "ast-lamp-nopower"),
                lamp("ast-lamp-nopower", t, power=0.0, volts=0.0),
            ),
            (_lamp_topic(settings, "ast-lamp-ok"), lamp("ast-lamp-ok", t, dim=60.0)),
            (
                _lamp_topic(settings, "ast-lamp-day"),
                lamp("ast-lamp-day", noon + timedelta(minutes=k)),
            ),
            (
                topics.meter_reading(settings.mqtt_topic_root, CITY, "ast-em-tamper"),
                meter("ast-em-tamper", t, 100.0 + k, tamper=True),
            ),
            (
                topics.meter_reading(settings.mqtt_topic_root, CITY, "ast-em-ok"),
                meter("ast-em-ok", t, 100.0 + k),
            ),
            (
                topics.meter_reading(settings.mqtt_topic_root, CITY, "ast-em-reverse"),
                meter("ast-em-reverse", t, 100.0, export_kwh=12.5 + 0.4 * k),
            ),
        ]
    with running_ingest(settings):
        _publish(settings, msgs)
        wait_until(
            lambda: count_rows(settings, "lighting_readings") == 12, timeout_s=20, what="rows"
        )
    assert _alerts(settings) == [
        ("ast-em-reverse", "reverse_energy", "active", 1),
        ("ast-em-tamper", "meter_tamper", "active", 1),
        ("ast-lamp-dark", "lamp_failure", "active", 1),
        ("ast-lamp-day", "day_burning", "active", 1),
        ("ast-lamp-nopower", "supply_loss", "active", 1),
    ]


def _switching_day(settings: Settings, lamps: int) -> list[tuple[str, bytes]]:
    """The lighting simulator's lamps (no faults), every 2 min across dusk and dawn (±90 min)."""
    city = get_city(CITY)
    fleet = LampFleet(city, lamps, seed=5)
    day = _night().astimezone(city.tz).date() - timedelta(days=1)
    events = solar.sunrise_sunset(city.lat, city.lon, day, city.tz)
    assert events is not None
    sunrise, sunset = events
    sunrise += timedelta(days=1)  # the dawn that ends this night
    msgs: list[tuple[str, bytes]] = []
    for centre in (sunset, sunrise):
        for k in range(-45, 46):
            t = centre + timedelta(minutes=2 * k)
            for i, spec in enumerate(fleet.lamps):
                msgs.append(
                    (_lamp_topic(settings, spec.lamp_id), orjson.dumps(fleet.reading(i, t)))
                )
    return msgs


def test_quiet_on_normal_data_through_dusk_and_dawn(settings: Settings) -> None:
    msgs = _switching_day(settings, lamps=10)
    night = _night()
    for k in range(8):
        msgs.append(
            (
                topics.meter_reading(settings.mqtt_topic_root, CITY, "ast-em-1"),
                meter("ast-em-1", night + timedelta(minutes=15 * k), 10.0 + k),
            )
        )
    with running_ingest(settings):
        _publish(settings, msgs)
        wait_until(
            lambda: (
                count_rows(settings, "lighting_readings") + count_rows(settings, "meter_readings")
                == len(msgs)
            ),
            timeout_s=30,
            what="every reading committed",
        )
    assert count_rows(settings, "lighting_readings", "lamp_on") > 0, "lamps never switched on"
    assert count_rows(settings, "lighting_readings", "NOT lamp_on") > 0, "lamps never went off"
    assert _alerts(settings) == []


def test_two_workers_raise_exactly_one_alert_per_fault(settings: Settings) -> None:
    second = settings.model_copy(update={"ingest_client_id": f"{settings.ingest_client_id}-b"})
    night = _night()
    lamps = [f"ast-lamp-f{i:03d}" for i in range(30)]
    msgs = [
        (_lamp_topic(settings, lamp_id), lamp(lamp_id, night + timedelta(minutes=k), power=0.3))
        for k in range(6)
        for lamp_id in lamps
    ]
    try:
        with ExitStack() as stack:
            a = stack.enter_context(running_ingest(settings))
            b = stack.enter_context(running_ingest(second))
            _publish(settings, msgs)
            wait_until(
                lambda: count_rows(settings, "lighting_readings") == len(msgs),
                timeout_s=30,
                what="every reading committed",
            )

            def taken(p: object) -> float:
                registry = p.metrics.registry  # type: ignore[attr-defined]
                value = registry.get_sample_value(
                    "smartcity_ingest_messages_total", {"feed": "lamp_telemetry"}
                )
                return float(value or 0.0)

            wait_until(lambda: taken(a) + taken(b) == len(msgs), timeout_s=30, what="both")
            assert min(taken(a), taken(b)) > 0, "the shared subscription did not split the load"
    finally:
        discard_session(second, second.ingest_client_id)
    assert _alerts(settings) == [(lamp_id, "lamp_failure", "active", 1) for lamp_id in lamps]


def test_a_flapping_lamp_is_one_alert_with_a_count_then_clears_after_the_hold_off(
    settings: Settings,
) -> None:
    night = _night()
    lamp_id = "ast-lamp-flap"
    # Dark, fine, dark, ... a minute apart: five onsets, each gap shorter than the hold-off.
    msgs = [
        (
            _lamp_topic(settings, lamp_id),
            lamp(lamp_id, night + timedelta(minutes=k), power=0.2 if k % 2 == 0 else None),
        )
        for k in range(10)
    ]
    with running_ingest(settings):
        _publish(settings, msgs)
        wait_until(
            lambda: count_rows(settings, "lighting_readings") == 10, timeout_s=20, what="rows"
        )
        # The rules run after the commit: wait for them, not for the rows.
        wait_until(
            lambda: _alerts(settings) == [(lamp_id, "lamp_failure", "active", 5)],
            timeout_s=20,
            what="one alert with five occurrences",
        )
        # Fine for longer than the hold-off (5 min): the alert clears itself.
        _publish(
            settings,
            [
                (_lamp_topic(settings, lamp_id), lamp(lamp_id, night + timedelta(minutes=10 + k)))
                for k in range(6)
            ],
        )
        wait_until(
            lambda: _alerts(settings) == [(lamp_id, "lamp_failure", "cleared", 5)],
            timeout_s=20,
            what="the alert to clear after the hold-off",
        )
    with psycopg.connect(settings.database_conninfo) as conn:
        row = conn.execute("SELECT cleared_by, clear_reason FROM alerts").fetchone()
    assert row == ("auto", "condition ended")


def test_an_alert_failure_never_stops_ingest_or_loses_readings(settings: Settings) -> None:
    with psycopg.connect(settings.database_conninfo, autocommit=True) as conn:
        conn.execute("DROP TABLE alerts CASCADE")  # every alert evaluation now fails
    night = _night()
    msgs = [
        (
            _lamp_topic(settings, "ast-lamp-x"),
            lamp("ast-lamp-x", night + timedelta(minutes=k), power=0.1),
        )
        for k in range(1, 6)
    ]
    with running_ingest(settings) as pipeline:
        _publish(settings, msgs)
        wait_until(
            lambda: count_rows(settings, "lighting_readings") == 5, timeout_s=20, what="rows"
        )
        registry = pipeline.metrics.registry
        wait_until(
            lambda: (registry.get_sample_value("smartcity_ingest_alert_errors_total") or 0) >= 1,
            timeout_s=20,
            what="the failed alert evaluation to be counted",
        )
        # Still ingesting: a later reading is committed too.
        _publish(settings, [(_lamp_topic(settings, "ast-lamp-x"), lamp("ast-lamp-x", night))])
        wait_until(lambda: count_rows(settings, "lighting_readings") == 6, timeout_s=20, what="6")
