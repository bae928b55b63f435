"""Every feed through the real broker and database: rows exactly once, in event-time order."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import orjson
import psycopg

from smartcity import topics
from smartcity.bench.mqttload import AckedPublisher, meter_payload, senml_pack
from smartcity.settings import Settings
from smartcity.topics import Domain
from tests.helpers import count_rows, discard_session, running_ingest, wait_until

CITY = "astana"


def _now_ms() -> int:
    # Whole seconds, an hour ago: inside the ingest's event-time window, and exact in SQL.
    return (int(time.time()) - 3600) * 1000


@contextmanager
def _publisher(settings: Settings) -> Iterator[AckedPublisher]:
    with AckedPublisher(
        settings.mqtt_host, settings.mqtt_port, f"pub-{settings.mqtt_topic_root}"
    ) as pub:
        yield pub


def _publish_meters(settings: Settings, meters: int, each: int, t0_ms: int) -> int:
    root = settings.mqtt_topic_root
    with _publisher(settings) as pub:
        for k in range(each):
            for m in range(meters):
                meter = f"ast-em-{m:06d}"
                pub.publish(
                    topics.meter_reading(root, CITY, meter),
                    meter_payload(meter, t0_ms + k * 60_000, 100.0 + k),
                )
        assert pub.flush(), "the broker did not acknowledge every reading"
        return pub.acknowledged()


def _query(settings: Settings, q: str) -> list[tuple[object, ...]]:
    with psycopg.connect(settings.database_conninfo) as conn:
        return conn.execute(q).fetchall()


def test_n_meter_readings_over_two_shared_workers_become_n_rows_and_twice_stays_n(
    settings: Settings,
) -> None:
    second = settings.model_copy(update={"ingest_client_id": f"{settings.ingest_client_id}-b"})
    t0 = _now_ms()
    try:
        with ExitStack() as stack:
            a = stack.enter_context(running_ingest(settings))
            b = stack.enter_context(running_ingest(second))
            n = _publish_meters(settings, meters=200, each=5, t0_ms=t0)
            assert n == 1000
            wait_until(
                lambda: count_rows(settings, "meter_readings") == n, timeout_s=30, what="n rows"
            )
            again = _publish_meters(settings, meters=200, each=5, t0_ms=t0)
            assert again == n

            def per_worker() -> list[float]:
                return [
                    p.metrics.registry.get_sample_value(
                        "smartcity_ingest_messages_total", {"feed": "meter_reading"}
                    )
                    or 0.0
                    for p in (a, b)
                ]

            wait_until(lambda: sum(per_worker()) == 2 * n, timeout_s=30, what="both copies")
        # Both workers stopped cleanly, so everything they received is committed.
        assert count_rows(settings, "meter_readings") == n
        split = per_worker()
        assert min(split) > 0, f"the shared subscription did not split the load: {split}"
        assert count_rows(settings, "devices", "domain = 'metering'") == 200
        assert count_rows(settings, "dead_letters") == 0
    finally:
        discard_session(second, second.ingest_client_id)


def _wait_rows(settings: Settings, table: str, n: int) -> None:
    wait_until(lambda: count_rows(settings, table) == n, timeout_s=15, what=f"{n} rows")


def test_out_of_order_readings_land_by_event_time(settings: Settings) -> None:
    root, meter = settings.mqtt_topic_root, "ast-em-000001"
    t0 = _now_ms()
    # Sent newest first; each register fits its own time, so none is "going backwards".
    order = [4, 0, 3, 1, 2]
    with running_ingest(settings), _publisher(settings) as pub:
        for done, k in enumerate(order, start=1):
            pub.publish(
                topics.meter_reading(root, CITY, meter),
                meter_payload(meter, t0 + k * 60_000, 100.0 + k),
            )
            assert pub.flush()
            # One message per batch: the out-of-order arrival really reaches the database.
            _wait_rows(settings, "meter_readings", done)
    rows = _query(
        settings,
        "SELECT extract(epoch FROM ts)::bigint, energy_import_kwh FROM meter_readings ORDER BY ts",
    )
    assert rows == [((t0 + k * 60_000) // 1000, 100.0 + k) for k in range(5)]
    latest = _query(
        settings,
        "SELECT DISTINCT ON (meter_id) energy_import_kwh FROM meter_readings "
        "ORDER BY meter_id, ts DESC",
    )
    assert latest == [(104.0,)]
    seen = _query(
        settings,
        "SELECT extract(epoch FROM first_seen)::bigint, extract(epoch FROM last_seen)::bigint "
        "FROM devices",
    )
    assert seen == [(t0 // 1000, (t0 + 4 * 60_000) // 1000)]
    assert count_rows(settings, "dead_letters") == 0


def test_a_senml_pack_becomes_one_row_per_meter_and_time(settings: Settings) -> None:
    root = settings.mqtt_topic_root
    t0_s = _now_ms() // 1000
    meters = [f"ast-em-{i:06d}" for i in range(100)]
    water = [
        {"bn": "ast-wm-000001:", "bt": t0_s, "n": "volume", "u": "m3", "v": 12.5},
        {"n": "flow", "u": "l/h", "v": 40},
        {"n": "leak", "vb": True},
        {"n": "district", "vs": "esil"},
        {"n": "volume", "u": "m3", "v": 12.75, "t": 900},
    ]
    with running_ingest(settings), _publisher(settings) as pub:
        pub.publish(
            topics.gateway_senml(root, CITY, "ast-gw-01"),
            senml_pack(meters, float(t0_s), [float(i) for i in range(100)]),
        )
        pub.publish(topics.gateway_senml(root, CITY, "ast-gw-02"), orjson.dumps(water))
        assert pub.flush()
        wait_until(
            lambda: count_rows(settings, "meter_readings") == 102, timeout_s=15, what="102 rows"
        )
    assert count_rows(settings, "meter_readings", "gateway_id = 'ast-gw-01'") == 100
    rows = _query(
        settings,
        "SELECT extract(epoch FROM ts)::bigint, kind, volume_m3, flow_lph, leak, district "
        "FROM meter_readings WHERE meter_id = 'ast-wm-000001' ORDER BY ts",
    )
    assert rows == [
        (t0_s, "water", 12.5, 40.0, True, "esil"),
        (t0_s + 900, "water", 12.75, None, False, None),
    ]
    assert count_rows(settings, "devices", "domain = 'metering'") == 101


def test_bus_positions_inside_the_city_land_and_outside_are_dead_lettered(
    settings: Settings,
) -> None:
    root, bus = settings.mqtt_topic_root, "shy-bus-0042"
    t0 = _now_ms()
    inside = {
        "vehicle_id": bus,
        "ts": t0,
        "trip_id": "r07-wd-0815-0",
        "route_id": "r07",
        "start_date": "20261123",
        "lat": 42.3171,
        "lon": 69.5862,
        "bearing": 84.0,
        "speed_mps": 7.9,
        "occupancy": "STANDING_ROOM_ONLY",
    }
    astana = {**inside, "ts": t0 + 1000, "lat": 51.1694, "lon": 71.4491}  # Astana's centre
    with running_ingest(settings), _publisher(settings) as pub:
        topic = topics.vehicle_position(root, "shymkent", bus)
        pub.publish(topic, orjson.dumps(inside))
        pub.publish(topic, orjson.dumps(astana))
        assert pub.flush()
        wait_until(
            lambda: (
                count_rows(settings, "dead_letters") == 1
                and count_rows(settings, "vehicle_positions") == 1
            ),
            timeout_s=15,
            what="one row and one dead letter",
        )
    assert _query(settings, "SELECT start_date, occupancy, city FROM vehicle_positions") == [
        ("20261123", "STANDING_ROOM_ONLY", "shymkent")
    ]
    ((reason, detail),) = _query(settings, "SELECT reason, detail FROM dead_letters")
    assert reason == "outside_city"
    assert "Shymkent" in str(detail)
    assert _query(settings, "SELECT lat, lon FROM devices WHERE device_id = 'shy-bus-0042'") == [
        (42.3171, 69.5862)
    ]


def test_device_status_registers_devices_and_the_newest_status_wins(settings: Settings) -> None:
    root = settings.mqtt_topic_root
    t0 = _now_ms()
    topic = topics.device_status(root, CITY, Domain.LIGHTING, "ast-lamp-000009")
    with running_ingest(settings), _publisher(settings) as pub:
        pub.publish(topic, orjson.dumps({"status": "offline", "ts": t0 + 2000}))
        assert pub.flush()
        wait_until(
            lambda: count_rows(settings, "devices", "last_status = 'offline'") == 1,
            timeout_s=15,
            what="the device registered as offline",
        )
        # An older "online" (e.g. a retained message replayed) must not win over it.
        pub.publish(topic, orjson.dumps({"status": "online", "ts": t0}))
        # A last will carries no ts: the time it arrives is its event time.
        will = topics.device_status(root, CITY, Domain.TRANSIT, "ast-bus-0001")
        pub.publish(will, orjson.dumps({"status": "offline"}))
        assert pub.flush()
        wait_until(
            lambda: count_rows(settings, "devices") == 2, timeout_s=15, what="the second device"
        )
    rows = _query(
        settings,
        "SELECT domain, device_id, city, last_status, status_ts > now() - interval '1 minute' "
        "FROM devices ORDER BY domain",
    )
    assert rows == [
        ("lighting", "ast-lamp-000009", "astana", "offline", False),
        ("transit", "ast-bus-0001", "astana", "offline", True),
    ]


def test_a_meter_register_going_backwards_is_dead_lettered(settings: Settings) -> None:
    root, meter = settings.mqtt_topic_root, "ast-em-000007"
    topic = topics.meter_reading(root, CITY, meter)
    t0 = _now_ms()
    with running_ingest(settings), _publisher(settings) as pub:
        pub.publish(topic, meter_payload(meter, t0, 100.0))
        assert pub.flush()
        wait_until(lambda: count_rows(settings, "meter_readings") == 1, timeout_s=15, what="row")
        # In a later batch: checked against the row in the database.
        pub.publish(topic, meter_payload(meter, t0 + 60_000, 90.0))  # backwards: rejected
        pub.publish(topic, meter_payload(meter, t0 + 120_000, 99.9995))  # within the tolerance
        # In one message stream, possibly one batch: checked against each other.
        pub.publish(topic, meter_payload(meter, t0 + 180_000, 150.0))
        pub.publish(topic, meter_payload(meter, t0 + 240_000, 140.0))  # backwards: rejected
        assert pub.flush()
        wait_until(
            lambda: (
                count_rows(settings, "dead_letters") == 2
                and count_rows(settings, "meter_readings") == 3
            ),
            timeout_s=15,
            what="3 rows and 2 dead letters",
        )
    letters = _query(settings, "SELECT reason, detail FROM dead_letters ORDER BY detail")
    assert [r for r, _ in letters] == ["register_backwards"] * 2
    assert all(meter in str(d) and "tolerance" in str(d) for _, d in letters)
    rows = _query(settings, "SELECT energy_import_kwh FROM meter_readings ORDER BY ts")
    assert rows == [(100.0,), (99.9995,), (150.0,)]
