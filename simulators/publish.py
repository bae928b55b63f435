"""A QoS 1 MQTT publisher (paho-mqtt) that counts what the broker acknowledged.

A reading counts as published only when the broker has acknowledged it (PUBACK): that is the
figure tests and benchmarks compare with the rows in the database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from smartcity.errors import ServiceUnavailableError
from smartcity.settings import Settings

# Unacknowledged publishes allowed on the wire at once: large enough to keep the broker busy
# on loopback, small enough to bound memory when the broker is slow. We enforce the window
# ourselves and leave paho's own limit off: paho walks its whole queue of outgoing messages
# on every PUBACK when its limit is set, which cost ~170 µs per message at 5,000 queued.
MAX_INFLIGHT = 1000
CONNECT_TIMEOUT_S = 10.0


class Publisher:
    def __init__(self, settings: Settings, client_id: str) -> None:
        self._settings = settings
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        if settings.mqtt_username:
            self._client.username_pw_set(settings.mqtt_username, settings.mqtt_password)
        self._client.max_inflight_messages_set(0)
        self._client.max_queued_messages_set(0)
        self._client.on_publish = self._on_publish
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._subscriptions: dict[str, Callable[[str, bytes], None]] = {}
        self._connected = threading.Event()
        self._acked = threading.Condition()
        self._waiting = False
        self.sent = 0
        self.acknowledged = 0

    def __enter__(self) -> Publisher:
        self.connect()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def connect(self) -> None:
        s = self._settings
        try:
            self._client.connect(s.mqtt_host, s.mqtt_port, keepalive=s.mqtt_keepalive_s)
        except OSError as exc:
            raise ServiceUnavailableError(
                f"cannot connect to the MQTT broker at {s.mqtt_host}:{s.mqtt_port}: {exc}. "
                "Start Mosquitto (e.g. 'mosquitto -d') or set SMARTCITY_MQTT_HOST/PORT."
            ) from exc
        self._client.loop_start()
        if not self._connected.wait(CONNECT_TIMEOUT_S):
            self._client.loop_stop()
            raise ServiceUnavailableError(
                f"the MQTT broker at {s.mqtt_host}:{s.mqtt_port} did not accept the connection"
            )

    def subscribe(self, topic_filter: str, handler: Callable[[str, bytes], None]) -> None:
        """Receive messages on `topic_filter` (QoS 1) in `handler(topic, payload)`, called on
        paho's network thread: keep it short (hand the message to a queue). Subscriptions are
        renewed on every reconnect."""
        self._subscriptions[topic_filter] = handler
        self._client.subscribe(topic_filter, qos=1)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        # Block while the window is full, so memory stays bounded and the reported rate is the
        # rate the broker really accepted.
        if self.sent - self.acknowledged >= MAX_INFLIGHT:
            with self._acked:
                self._waiting = True
                while self.sent - self.acknowledged >= MAX_INFLIGHT:
                    self._acked.wait(0.1)
                self._waiting = False
        self._client.publish(topic, payload, qos=1, retain=retain)
        self.sent += 1

    def flush(self, timeout_s: float = 60.0) -> bool:
        """Wait until the broker acknowledged everything sent; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self.acknowledged < self.sent:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if not reason_code.is_failure:
            for topic_filter in self._subscriptions:
                self._client.subscribe(topic_filter, qos=1)
            self._connected.set()

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        for topic_filter, handler in self._subscriptions.items():
            if mqtt.topic_matches_sub(topic_filter, msg.topic):
                handler(msg.topic, bytes(msg.payload))

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _mid: int,
        _reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        with self._acked:
            self.acknowledged += 1
            if self._waiting:
                self._acked.notify()
