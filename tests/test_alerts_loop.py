"""The scheduled side of alerts: the offline sweep and MQTT delivery, on the real servers."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from smartcity import topics
from smartcity.alerts import delivery, loop, offline
from smartcity.settings import Settings
from smartcity.topics import Domain
from tests.helpers import running_ingest, wait_until
from tests.test_alerts import CITY, _alerts, _lamp_topic, _publish, lamp


@contextmanager
def _listener(settings: Settings) -> Iterator[list[tuple[str, bytes, bool]]]:
    """Every message on the test's alert topics: (topic, payload, retained flag)."""
    got: list[tuple[str, bytes, bool]] = []
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"l-{uuid.uuid4().hex[:10]}")
    client.on_message = lambda _c, _u, m: got.append((m.topic, bytes(m.payload), bool(m.retain)))
    client.on_subscribe = lambda *_a: subscribed.set()
    client.on_connect = lambda c, *_a: c.subscribe(f"{settings.mqtt_topic_root}/+/alerts/#", qos=1)
    client.connect(settings.mqtt_host, settings.mqtt_port)
    client.loop_start()
    try:
        wait_until(subscribed.is_set, timeout_s=10, what="the listener to subscribe")
        yield got
    finally:
        client.disconnect()
        client.loop_stop()


def test_offline_fires_with_its_reason_is_delivered_and_clears_after_the_hold_off(
    settings: Settings,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    # The lamps are off: the lighting rules (day-burning by day) raise nothing beside offline,
    # whatever the hour the test runs at.
    status_topic = topics.device_status(
        settings.mqtt_topic_root, CITY, Domain.LIGHTING, "ast-lamp-will"
    )
    with running_ingest(settings):
        _publish(
            settings,
            [
                (
                    _lamp_topic(settings, "ast-lamp-silent"),
                    lamp("ast-lamp-silent", now - timedelta(minutes=10), on=False),
                ),
                (_lamp_topic(settings, "ast-lamp-fresh"), lamp("ast-lamp-fresh", now, on=False)),
                (_lamp_topic(settings, "ast-lamp-will"), lamp("ast-lamp-will", now, on=False)),
            ],
        )
        _publish(
            settings,
            [
                (
                    status_topic,
                    orjson.dumps({"status": "offline", "ts": int(now.timestamp() * 1000) + 1000}),
                )
            ],
        )
        with psycopg.connect(settings.database_conninfo) as conn:
            wait_until(
                lambda: (
                    conn.execute(
                        "SELECT count(*) FROM devices WHERE last_status = 'offline'"
                    ).fetchone()
                    == (1,)
                ),
                timeout_s=20,
                what="the last will in the registry",
            )
    with (
        _listener(settings) as got,
        psycopg.connect(settings.database_conninfo, autocommit=True) as conn,
        delivery.MqttPublisher(settings.mqtt_host, settings.mqtt_port) as publish,
    ):
        raised, cleared, sent = loop.one_pass(conn, settings, publish)
        assert (raised, cleared, sent) == (2, 0, 2)
        assert _alerts(settings) == [
            ("ast-lamp-silent", "offline", "active", 1),
            ("ast-lamp-will", "offline", "active", 1),
        ]
        messages: dict[object, object] = dict(
            conn.execute("SELECT device_id, message FROM alerts").fetchall()
        )
        assert str(messages["ast-lamp-silent"]).startswith("no reading since")
        assert str(messages["ast-lamp-will"]).startswith("device reported offline")
        topic = topics.alert(settings.mqtt_topic_root, CITY, "major", "offline")
        wait_until(lambda: len(got) == 2, timeout_s=10, what="two alert messages")
        assert {orjson.loads(p)["device_id"] for t, p, _ in got if t == topic} == {
            "ast-lamp-silent",
            "ast-lamp-will",
        }
        # A second pass publishes nothing new and raises no second alert.
        assert loop.one_pass(conn, settings, publish)[1:] == (0, 0)
        assert len(_alerts(settings)) == 2

        # The silent lamp reports again: back only after the hold-off (3 intervals).
        conn.execute(
            "UPDATE devices SET last_seen = %s WHERE device_id = 'ast-lamp-silent'", (now,)
        )
        assert offline.sweep(conn, now, settings.alerts_offline_factor) == (1, 0)
        later = now + offline.hold_off("lighting", settings.alerts_offline_factor)
        conn.execute(
            "UPDATE devices SET last_seen = %s WHERE device_id = 'ast-lamp-silent'", (later,)
        )
        assert offline.sweep(conn, later, settings.alerts_offline_factor) == (1, 1)
        assert ("ast-lamp-silent", "offline", "cleared", 1) in _alerts(settings)
        got.clear()
        assert delivery.deliver_pending(conn, settings.mqtt_topic_root, publish) == 1
        # The cleared state, then the topic's retained message: the alert still open there.
        wait_until(lambda: len(got) == 2, timeout_s=10, what="cleared + retained")
        states = [orjson.loads(p)["state"] for _, p, _ in got]
        assert states[0] == "cleared"
        assert orjson.loads(got[1][1])["device_id"] == "ast-lamp-will"
    # A late subscriber sees what is still wrong (retained), and only that.
    with _listener(settings) as late:
        wait_until(lambda: len(late) == 1, timeout_s=10, what="the retained alert")
        assert late[0][2]
        assert orjson.loads(late[0][1])["device_id"] == "ast-lamp-will"
    # Remove the retained message this test left on the shared broker.
    with delivery.MqttPublisher(settings.mqtt_host, settings.mqtt_port) as publish:
        publish(topic, b"", retain=True)
