"""Delivery: every alert state change published on `{root}/{city}/alerts/{severity}/{rule}`.

The outbox is the alerts table itself: an alert whose `state` differs from its
`delivered_state` has a change to publish. A pass locks those rows (FOR UPDATE SKIP LOCKED, so
several delivery loops share the work), publishes each at QoS 1 and waits for the PUBACK, then
records the state as delivered in the same transaction: a failed publish rolls back and is
retried on the next pass (at least once, never lost).

Retained messages: the retained message of a topic is the newest open (active or
acknowledged) alert on it, so a subscriber that connects later sees what is still wrong. When
an alert clears, the cleared state is published (not retained) and the topic's retained
message becomes the newest alert still open there, or is removed (an empty retained payload).
"""

from __future__ import annotations

import threading
import uuid
from typing import Any, Protocol

import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from psycopg import sql
from psycopg.rows import dict_row

from smartcity import topics
from smartcity.errors import ServiceUnavailableError

# Changes published per pass: bounds the transaction holding the row locks.
BATCH_MAX = 500
PUBACK_TIMEOUT_S = 10.0

_COLUMNS = sql.SQL(
    "alert_id, rule, domain, device_id, city, severity, state, message, first_occurrence, "
    "last_occurrence, occurrence_count, acknowledged_at, acknowledged_by, cleared_at, "
    "cleared_by, clear_reason"
)


ALERT_COLUMNS = _COLUMNS  # an alert as delivery shows it (webhooks send the same)


class Publish(Protocol):
    def __call__(self, topic: str, payload: bytes, *, retain: bool) -> None: ...


def payload(alert: dict[str, Any]) -> bytes:
    return orjson.dumps(alert)


def deliver_pending(
    conn: psycopg.Connection[tuple[object, ...]], root: str, publish: Publish
) -> int:
    """Publish every undelivered state change (up to BATCH_MAX); the number published."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            sql.SQL(
                "SELECT {} FROM alerts WHERE delivered_state IS DISTINCT FROM state "
                "ORDER BY alert_id LIMIT %s FOR UPDATE SKIP LOCKED"
            ).format(_COLUMNS),
            (BATCH_MAX,),
        )
        changes = cur.fetchall()
        for alert in changes:
            topic = topics.alert(root, alert["city"], alert["severity"], alert["rule"])
            if alert["state"] != "cleared":
                publish(topic, payload(alert), retain=True)
                continue
            publish(topic, payload(alert), retain=False)
            cur.execute(
                sql.SQL(
                    "SELECT {} FROM alerts WHERE state <> 'cleared' AND city = %s "
                    "AND severity = %s AND rule = %s ORDER BY alert_id DESC LIMIT 1"
                ).format(_COLUMNS),
                (alert["city"], alert["severity"], alert["rule"]),
            )
            still_open = cur.fetchone()
            publish(topic, payload(still_open) if still_open else b"", retain=True)
        cur.execute(
            "UPDATE alerts SET delivered_state = state WHERE alert_id = ANY(%s)",
            ([a["alert_id"] for a in changes],),
        )
    return len(changes)


class MqttPublisher:
    """A QoS 1 publisher that waits for each PUBACK; a context manager (connects on enter)."""

    def __init__(self, host: str, port: int, client_id: str | None = None) -> None:
        self._host, self._port = host, port
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"smartcity-alerts-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._connected = threading.Event()
        self._client.on_connect = lambda *_args: self._connected.set()

    def __enter__(self) -> MqttPublisher:
        try:
            self._client.connect(self._host, self._port)
        except OSError as exc:
            raise ServiceUnavailableError(
                f"MQTT broker {self._host}:{self._port} unreachable: {exc}"
            ) from exc
        self._client.loop_start()
        if not self._connected.wait(PUBACK_TIMEOUT_S):
            self.__exit__()
            raise ServiceUnavailableError(f"MQTT broker {self._host}:{self._port} did not answer")
        return self

    def __exit__(self, *_: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __call__(self, topic: str, payload: bytes, *, retain: bool) -> None:
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(PUBACK_TIMEOUT_S)
        if not info.is_published():
            raise ServiceUnavailableError(f"no PUBACK for {topic} within {PUBACK_TIMEOUT_S:g} s")
