"""Load for the ingest benchmark and the ingest tests: a QoS 1 publisher that remembers which
messages the broker acknowledged, and fast makers of valid meter payloads.

A reading counts as published only when the broker acknowledged it (PUBACK); `AckedPublisher`
keeps each message's paho `MQTTMessageInfo`, whose `is_published()` turns true on PUBACK — even
for a message paho had to resend after a reconnect — so after a run `acknowledged_keys()` is
exactly the set of readings that must be in the database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from datetime import UTC, datetime

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from smartcity.errors import ServiceUnavailableError

# Unacknowledged publishes on the wire at once; paho queues the rest in memory. Large, so a
# loopback broker is never starved by the round trip.
MAX_INFLIGHT = 2000
# Published but not yet acknowledged, in total (in flight + paho's queue): `publish` waits
# beyond this, which bounds memory and keeps paho's 16-bit packet ids from wrapping onto a
# message still outstanding. Small, because paho scans its whole queue on every PUBACK.
MAX_OUTSTANDING = 3000
CONNECT_TIMEOUT_S = 10.0


def _acknowledged(info: mqtt.MQTTMessageInfo) -> bool:
    # Not `info.is_published()`: that raises for a message published while the connection was
    # down, although paho keeps such a QoS 1 message and sends it after reconnecting — and then
    # marks it published on PUBACK like any other.
    with info._condition:
        return bool(info._published)


class AckedPublisher:
    """paho QoS 1 publisher (its own network thread, paho's automatic reconnect)."""

    def __init__(self, host: str, port: int, client_id: str) -> None:
        self._host, self._port = host, port
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv311
        )
        self._client.max_inflight_messages_set(MAX_INFLIGHT)
        self._client.max_queued_messages_set(0)  # unbounded: the caller bounds the run
        # Fault tests restart the broker under us: come back quickly.
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._client.on_connect = self._on_connect
        self._client.on_publish = self._on_publish
        self._acks = 0  # written by the network thread only
        self._connected = threading.Event()
        self._sent: list[tuple[Hashable, mqtt.MQTTMessageInfo]] = []

    def __enter__(self) -> AckedPublisher:
        try:
            self._client.connect(self._host, self._port, keepalive=30)
        except OSError as exc:
            raise ServiceUnavailableError(
                f"cannot connect to the MQTT broker at {self._host}:{self._port}: {exc}"
            ) from exc
        self._client.loop_start()
        if not self._connected.wait(CONNECT_TIMEOUT_S):
            self._client.loop_stop()
            raise ServiceUnavailableError(f"broker {self._host}:{self._port} refused us")
        return self

    def __exit__(self, *_: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes, key: Hashable = None) -> None:
        while len(self._sent) - self._acks >= MAX_OUTSTANDING:
            time.sleep(0.001)
        self._sent.append((key, self._client.publish(topic, payload, qos=1)))

    @property
    def sent(self) -> int:
        return len(self._sent)

    def acknowledged(self) -> int:
        return sum(1 for _, info in self._sent if _acknowledged(info))

    def acknowledged_keys(self) -> list[Hashable]:
        return [key for key, info in self._sent if _acknowledged(info)]

    def flush(self, timeout_s: float = 60.0) -> bool:
        """Wait until the broker acknowledged everything sent; False on timeout."""
        deadline = time.monotonic() + timeout_s
        pending = [info for _, info in self._sent]
        while pending:
            pending = [info for info in pending if not _acknowledged(info)]
            if not pending:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _mid: int,
        _reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self._acks += 1

    def _on_connect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if not reason_code.is_failure:
            self._connected.set()


def iso(ts_s: float) -> str:
    return datetime.fromtimestamp(ts_s, tz=UTC).isoformat().replace("+00:00", "Z")


def meter_payload(meter_id: str, ts_ms: int, register_kwh: float) -> bytes:
    """One valid electricity `MeterReading` (epoch-ms event time)."""
    return orjson.dumps(
        {
            "meter_id": meter_id,
            "ts": ts_ms,
            "kind": "electricity",
            "energy_import_kwh": register_kwh,
            "power_w": 1830.0,
            "voltage_v": 229.4,
        }
    )


def senml_pack(meter_ids: list[str], ts_s: float, registers_kwh: list[float]) -> bytes:
    """A SenML pack with one register record per meter, all at `ts_s` (RFC 8428 base time)."""
    records: list[dict[str, object]] = []
    for i, (meter_id, reg) in enumerate(zip(meter_ids, registers_kwh, strict=True)):
        rec: dict[str, object] = {"bn": f"{meter_id}:", "n": "energy_import", "u": "kWh", "v": reg}
        if i == 0:
            rec["bt"] = ts_s
        records.append(rec)
    return orjson.dumps(records)
