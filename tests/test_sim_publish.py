"""The simulators' batching QoS 1 publisher: every message acknowledged exactly once, also
across a broker restart (paho resends what was unacknowledged; the pump reconnects)."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from simulators.publish import MAX_INFLIGHT, Publisher
from smartcity.servers import PrivateMosquitto
from smartcity.settings import Settings
from tests.helpers import TIMEOUT_SCALE, wait_until


def _settings(broker: PrivateMosquitto) -> Settings:
    return Settings(_env_file=None, mqtt_host=broker.host, mqtt_port=broker.port)  # type: ignore[call-arg]


@pytest.mark.slow
def test_every_message_arrives_and_is_acknowledged_once() -> None:
    count = 3 * MAX_INFLIGHT + 17  # more than the window: publish must wait for PUBACKs
    received: set[bytes] = set()
    with PrivateMosquitto.tuned() as broker:
        sub = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="sub", protocol=MQTTProtocolVersion.MQTTv311
        )
        subscribed = threading.Event()
        sub.on_message = lambda _c, _u, msg: received.add(bytes(msg.payload))
        sub.on_subscribe = lambda *_: subscribed.set()
        sub.connect(broker.host, broker.port)
        sub.subscribe("pubtest/#", qos=1)
        sub.loop_start()
        try:
            wait_until(subscribed.is_set, timeout_s=10, what="the subscription")
            with Publisher(_settings(broker), client_id="pubtest") as pub:
                for i in range(count):
                    pub.publish(f"pubtest/{i % 7}/x", str(i).encode())
                assert pub.flush(30 * TIMEOUT_SCALE)
                assert (pub.sent, pub.acknowledged) == (count, count)
            wait_until(
                lambda: len(received) == count, timeout_s=30, what="every message at the subscriber"
            )
        finally:
            sub.disconnect()
            sub.loop_stop()
    assert received == {str(i).encode() for i in range(count)}


@pytest.mark.slow
def test_messages_published_across_a_broker_restart_are_all_acknowledged() -> None:
    with (
        PrivateMosquitto.tuned() as broker,
        Publisher(_settings(broker), client_id="restart") as pub,
    ):
        for i in range(500):
            pub.publish("restart/a", str(i).encode())
        broker.stop()
        # Queued while the broker is down (fewer than the window, so publish does not block).
        for i in range(500):
            pub.publish("restart/b", str(i).encode())
        broker.start()
        assert pub.flush(30 * TIMEOUT_SCALE)
        assert (pub.sent, pub.acknowledged) == (1000, 1000)
