"""A QoS 1 MQTT publisher (paho-mqtt) that counts what the broker acknowledged.

A reading counts as published only when the broker has acknowledged it (PUBACK): that is the
figure tests and benchmarks compare with the rows in the database.

Throughput: paho's own network thread (`loop_start`) costs a wake-up per message (a byte on
its socket pair, a `select`, a GIL hand-over) and paho reads every incoming packet with two or
three `recv` calls; at city scale that was ~110 µs of CPU per message (docs/benchmarks.md).
Here paho still does the MQTT work — packet ids, the QoS 1 state of every message, resending
unacknowledged messages after a reconnect, PUBACK and PINGRESP handling — but the I/O is
driven by one pump thread of ours every `PUMP_INTERVAL_S`: the PUBLISH packets queued since the
last pump go out in one `send`, and the PUBACKs that arrived come in with one `recv`. QoS 1 and
its guarantees are unchanged; only the syscalls and wake-ups are batched.
"""

from __future__ import annotations

import random
import select
import struct
import threading
import time
from collections.abc import Callable
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MessageState, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from smartcity.errors import ServiceUnavailableError
from smartcity.settings import Settings

# Unacknowledged publishes allowed on the wire at once: large enough that the broker is never
# starved between two pumps (58,000 msg/s × 5 ms ≈ 300), small enough to bound memory when the
# broker is slow and to keep paho's 16-bit packet ids from wrapping onto an outstanding one.
MAX_INFLIGHT = 4000
CONNECT_TIMEOUT_S = 10.0
# How often the pump flushes queued packets and reads acknowledgements while messages are
# outstanding; the GIL's switch interval (5 ms) bounds it anyway when the producer is busy.
PUMP_INTERVAL_S = 0.002
# With nothing outstanding the pump waits on the socket (commands, PINGRESP) up to this long.
IDLE_WAIT_S = 0.1
# One `recv` takes up to this much: ~16,000 PUBACKs of 4 bytes.
RECV_CHUNK_BYTES = 65536
RECONNECT_DELAY_S = (0.5, 8.0)  # capped, jittered backoff after a lost connection
_MID = struct.Struct("!H")
MAX_PAYLOAD_BYTES = 268_435_455  # MQTT's largest remaining length


class _Message(mqtt.MQTTMessage):
    """A QoS 1 message as paho's `publish` leaves it in flight, sharing one info object."""

    __slots__ = ()

    def __init__(self, mid: int, topic: bytes, payload: bytes) -> None:
        self.timestamp = time.monotonic()
        self.state = MessageState.MQTT_MS_WAIT_FOR_PUBACK
        self.dup = False
        self.mid = mid
        self._topic = topic
        self.payload = payload
        self.qos = 1
        self.retain = False
        self.info = _UNTRACKED
        self.properties = None


_UNTRACKED = mqtt.MQTTMessageInfo(0)


class _BatchingClient(mqtt.Client):
    """paho's client with buffered socket I/O: `_sock_send` appends to an output buffer that
    `flush_output` writes in one call; `_sock_recv` serves paho's small reads from one large
    `recv`. Only the pump thread calls these (through paho's loop_* methods)."""

    def __init__(self, client_id: str) -> None:
        super().__init__(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv311
        )
        self.acknowledged = 0  # PUBACKs received; written by the pump thread only
        self._wbuf = bytearray()
        self._rbuf = b""
        self._rpos = 0

    def _sock_send(self, buf: bytes | bytearray) -> int:
        if self._sock is None:
            raise ConnectionError("self._sock is None")
        self._wbuf += buf
        return len(buf)

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(RECV_CHUNK_BYTES)  # BlockingIOError when nothing came
            if not data:
                return data  # connection closed
            self._rbuf, self._rpos = data, 0
        out = self._rbuf[self._rpos : self._rpos + bufsize]
        self._rpos += len(out)
        return out

    def publish_qos1(self, topic: str, payload: bytes) -> None:
        """`publish(topic, payload, qos=1)` for MQTT 3.1.1 without properties, minus the
        per-message `MQTTMessageInfo` (a `threading.Condition` each: a quarter of the
        simulator's publishing time at city scale) that nobody here waits on. The message goes
        into paho's `_out_messages` in the state paho's own `publish` gives it, so PUBACKs,
        and resending after a reconnect, are paho's. Written against paho-mqtt 2.2 (pinned)."""
        topic_bytes = topic.encode()
        self._raise_for_invalid_topic(topic_bytes)
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ValueError("Payload too large.")
        mid = self._mid_generate()
        message = _Message(mid, topic_bytes, payload)
        with self._out_message_mutex:
            if mid in self._out_messages:  # only if 65,535 messages were outstanding
                raise RuntimeError(f"MQTT packet id {mid} is still in flight")
            self._out_messages[mid] = message
            self._inflight_messages += 1
            rc = self._send_publish(mid, topic_bytes, payload, 1, False, False, _UNTRACKED)
            if rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                # Not connected: sent after the next CONNACK, as paho does.
                self._inflight_messages -= 1
                message.state = MessageState.MQTT_MS_PUBLISH

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> MQTTErrorCode:
        # A PUBACK of MQTT 3.1.1 is just a packet id; paho's general path builds a ReasonCode
        # and a Properties object per acknowledgement (half the pump's time at city scale).
        # Same bookkeeping as paho's `_do_on_publish` for our settings (no inflight limit of
        # paho's, nobody waiting on a message's info object), with a plain counter instead of
        # an `on_publish` call per message.
        packet = self._in_packet["packet"]
        if cmd != "PUBACK" or self._protocol == MQTTProtocolVersion.MQTTv5 or len(packet) != 2:
            return super()._handle_pubackcomp(cmd)
        (mid,) = _MID.unpack(packet)
        with self._out_message_mutex:
            if self._out_messages.pop(mid, None) is not None:
                self._inflight_messages -= 1
                self.acknowledged += 1
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _sock_close(self) -> None:
        # Best effort for a wanted close (paho closes right after queueing DISCONNECT); then
        # bytes of this connection must not reach the next one: paho resends every
        # unacknowledged QoS 1 message itself after reconnecting.
        self.flush_output()
        self._wbuf.clear()
        self._rbuf, self._rpos = b"", 0
        super()._sock_close()

    def flush_output(self) -> bool:
        """Write as much of the output buffer as the socket takes; False if it is lost."""
        sock = self._sock
        if sock is None:
            return False
        while self._wbuf:
            try:
                sent = sock.send(self._wbuf)
            except BlockingIOError:
                return True  # the kernel's buffer is full: the rest goes on the next pump
            except OSError:
                return False
            del self._wbuf[:sent]
        return True

    def pending_output(self) -> bool:
        return bool(self._wbuf) or self.want_write()


class Publisher:
    def __init__(self, settings: Settings, client_id: str) -> None:
        self._settings = settings
        self._client = _BatchingClient(client_id)
        if settings.mqtt_username:
            self._client.username_pw_set(settings.mqtt_username, settings.mqtt_password)
        self._client.max_inflight_messages_set(0)  # our window below, not paho's (see above)
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        # Set, so that paho queues packets for our pump instead of writing each one at once.
        self._client.on_socket_register_write = _no_op
        self._client.on_socket_unregister_write = _no_op
        self._subscriptions: dict[str, Callable[[str, bytes], None]] = {}
        self._connected = threading.Event()
        self._closing = threading.Event()
        self._room = threading.Event()  # set by the pump when acknowledgements came in
        self._pump_thread: threading.Thread | None = None
        self.sent = 0

    @property
    def acknowledged(self) -> int:
        """Messages the broker acknowledged (PUBACK)."""
        return self._client.acknowledged

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
        self._pump_thread = threading.Thread(target=self._pump, name="mqtt-pump", daemon=True)
        self._pump_thread.start()
        if not self._connected.wait(CONNECT_TIMEOUT_S):
            self._stop_pump()
            raise ServiceUnavailableError(
                f"the MQTT broker at {s.mqtt_host}:{s.mqtt_port} did not accept the connection"
            )

    def subscribe(self, topic_filter: str, handler: Callable[[str, bytes], None]) -> None:
        """Receive messages on `topic_filter` (QoS 1) in `handler(topic, payload)`, called on
        the pump thread: keep it short (hand the message to a queue). Subscriptions are
        renewed on every reconnect."""
        self._subscriptions[topic_filter] = handler
        self._client.subscribe(topic_filter, qos=1)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        # Block while the window is full, so memory stays bounded and the reported rate is the
        # rate the broker really accepted.
        while self.sent - self.acknowledged >= MAX_INFLIGHT:
            self._room.clear()
            if self.sent - self.acknowledged < MAX_INFLIGHT:
                break
            self._room.wait(0.1)
        if retain:
            self._client.publish(topic, payload, qos=1, retain=True)
        else:
            self._client.publish_qos1(topic, payload)
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
        self._client.disconnect()  # queued; the pump writes it before it stops
        self._stop_pump()

    def _stop_pump(self) -> None:
        self._closing.set()
        if self._pump_thread is not None:
            self._pump_thread.join(CONNECT_TIMEOUT_S)
            self._pump_thread = None
        self._client._sock_close()

    def _pump(self) -> None:
        """The only thread that touches the socket: write what paho queued, read what came,
        keep the connection alive, reconnect when it is lost."""
        client = self._client
        delay_s = RECONNECT_DELAY_S[0]
        while True:
            closing = self._closing.is_set()
            ok = client.loop_write() == MQTTErrorCode.MQTT_ERR_SUCCESS and client.flush_output()
            if closing:
                return
            if ok:
                ok = client.loop_read() == MQTTErrorCode.MQTT_ERR_SUCCESS
                self._room.set()
            if ok:
                ok = client.loop_misc() == MQTTErrorCode.MQTT_ERR_SUCCESS
            if not ok:
                self._connected.clear()
                if self._closing.wait(delay_s * random.uniform(0.5, 1.0)):
                    return
                delay_s = min(delay_s * 2, RECONNECT_DELAY_S[1])
                try:
                    client.reconnect()
                except OSError:
                    continue
                continue
            if self._connected.is_set():
                delay_s = RECONNECT_DELAY_S[0]
            if self.sent > self.acknowledged or client.pending_output():
                time.sleep(PUMP_INTERVAL_S)
            else:
                sock = client.socket()
                if sock is not None:
                    select.select([sock], [], [], IDLE_WAIT_S)

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


def _no_op(_client: mqtt.Client, _userdata: object, _sock: object) -> None:
    return None
