"""The MQTT side of the ingest: a persistent QoS 1 session with manual acknowledgement.

paho-mqtt (with the faster receive path of `ingest.fastclient`) runs its network loop in our
own thread and hands each message to `_deliver`, which collects them; at the end of each read
(or every `CHUNK` messages) the collected list goes onto a bounded queue. When the queue is full
the put blocks the network thread, so the ingest stops reading the socket and the broker stops
sending: back-pressure without loss. Messages are acknowledged (PUBACK) only by `ack`, which
the pipeline calls after the rows are committed; the network thread sends the PUBACKs of a
batch in one write. A message that is never acknowledged is redelivered by the broker after a
reconnect or restart, because the session is persistent.

The network loop is our own thread rather than paho's `loop_start`: paho's reconnect waits a
fixed doubling delay, so after a broker restart every worker of every host would reconnect in
lock step. Ours waits a capped, jittered delay ("full jitter") between attempts.

Several workers share the feeds through MQTT shared subscriptions (`$share/<group>/<filter>`,
SMARTCITY_INGEST_SHARE_GROUP): the broker hands each message to one member of the group. Each
worker has its own client id and so its own persistent session: messages it received but did
not acknowledge are redelivered to it when it comes back.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ingest.fastclient import FastClient
from smartcity.settings import Settings
from smartcity.topics import Feed, subscription

log = structlog.get_logger("ingest.source")

# The broker keeps our session (and the unacknowledged messages in it) this long while we are
# away: a week covers a weekend outage of the ingest without losing a reading.
SESSION_EXPIRY_S = 7 * 24 * 3600
# MQTT 5 Receive Maximum: how many unacknowledged QoS 1 messages the broker may have in flight
# to us. We acknowledge only after commit, so this must exceed a batch or the broker would stall
# waiting for acknowledgements of a batch that is waiting for more messages. 65535 is the
# protocol's maximum.
RECEIVE_MAXIMUM = 65535
_PUT_POLL_S = 0.1
# Reconnect backoff: from 0.05 s doubling to 0.5 s, each wait drawn uniformly from [0, delay].
# Short on purpose: Mosquitto 2.0 does not restore shared subscriptions when it restarts, so
# until the ingest has subscribed again the broker accepts readings that no one receives (see
# docs/ingest.md); the ingest must be back before the devices, whose backoff starts at
# 0.25–0.5 s. A few workers retrying a refused connection every ≤ 0.5 s cost the broker nothing.
RECONNECT_MIN_S = 0.05
RECONNECT_MAX_S = 0.5
# The network loop wakes at least this often to send acknowledgements queued by `ack`.
_LOOP_TIMEOUT_S = 0.02
_CLOSE_ACK_WAIT_S = 5.0
# Messages handed to the pipeline per queue item (fewer, larger queue operations). The queue
# holds at most SMARTCITY_INGEST_QUEUE_MAX // CHUNK items, so at most that many messages.
CHUNK = 500


def inbox_chunks(queue_max: int) -> int:
    """The bound of the inbox queue, in chunks, for at most `queue_max` messages."""
    return max(1, queue_max // CHUNK)


def share(group: str, topic_filter: str) -> str:
    """The shared-subscription form of `topic_filter` (plain when `group` is empty)."""
    return f"$share/{group}/{topic_filter}" if group else topic_filter


@dataclass(frozen=True, slots=True)
class Inbound:
    """One received message, as the pipeline sees it."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # which connection delivered it; acks go only to that connection
    received_at: float  # time.time()


class MqttSource:
    """Owns the paho client. `start` connects (and keeps reconnecting); `close` disconnects."""

    def __init__(
        self, settings: Settings, inbox: queue.Queue[list[Inbound]], feeds: Sequence[Feed]
    ) -> None:
        self._settings = settings
        self._inbox = inbox
        self._filters = [
            share(settings.ingest_share_group, subscription(settings.mqtt_topic_root, feed))
            for feed in feeds
        ]
        self._generation = 0
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        # Committed messages waiting for their PUBACK. Only the network thread writes to the
        # socket: paho writes directly from the calling thread when it does not run its own
        # loop thread, and two threads writing one socket could interleave partial packets.
        self._to_ack: list[Inbound] = []
        self._ack_lock = threading.Lock()
        self._reading = threading.Event()
        # `close` asks the network thread to make sure the broker processed the last PUBACKs.
        self._settle = threading.Event()
        self._settled = threading.Event()
        self._settle_ticket: int | None = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        # Received on the network thread, not yet handed to the pipeline.
        self._received: list[Inbound] = []
        self._client = FastClient(
            CallbackAPIVersion.VERSION2,
            deliver=self._deliver,
            after_read=self._hand_over,
            client_id=settings.ingest_client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        if settings.mqtt_username:
            self._client.username_pw_set(settings.mqtt_username, settings.mqtt_password)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    @property
    def connected(self) -> threading.Event:
        return self._connected

    @property
    def subscribed(self) -> threading.Event:
        """Set once the broker confirmed our subscriptions on the current connection."""
        return self._subscribed

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("MqttSource.start() called twice")
        self._reading.set()
        self._thread = threading.Thread(target=self._run, name="ingest-mqtt", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        s = self._settings
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        delay = RECONNECT_MIN_S
        while not self._closing.is_set():
            try:
                self._client.connect(
                    s.mqtt_host,
                    s.mqtt_port,
                    keepalive=s.mqtt_keepalive_s,
                    clean_start=False,
                    properties=props,
                )
                self._settle_ticket = None
                while self._client.loop(timeout=_LOOP_TIMEOUT_S) == mqtt.MQTT_ERR_SUCCESS:
                    self._send_acks()
                    if self._settle.is_set():
                        self._settle_acks()
                    if self._connected.is_set():
                        delay = RECONNECT_MIN_S  # a session was up: start the backoff afresh
            except (OSError, ValueError) as exc:
                log.warning("mqtt connection failed", error=str(exc))
            if self._closing.is_set():
                break
            wait_s = random.uniform(0, delay)
            log.info("mqtt reconnecting", retry_in_s=round(wait_s, 2))
            self._closing.wait(wait_s)
            delay = min(delay * 2, RECONNECT_MAX_S)

    def stop_reading(self) -> None:
        """Take no more messages; the ones not yet queued stay unacknowledged at the broker."""
        self._reading.clear()

    def close(self) -> None:
        """Disconnect (after the broker processed every acknowledgement queued so far) and end
        the thread."""
        self._reading.clear()
        self._settle.set()
        deadline = time.monotonic() + _CLOSE_ACK_WAIT_S
        while self._connected.is_set() and time.monotonic() < deadline:
            if self._settled.wait(_LOOP_TIMEOUT_S):
                break
        self._closing.set()
        self._client.disconnect()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._connected.clear()

    def _settle_acks(self) -> None:
        # Network thread, once `close` asked: when every queued PUBACK is written, a PINGREQ
        # round trip shows the broker has processed them (see FastClient.round_trip).
        with self._ack_lock:
            if self._to_ack:
                return
        if self._settle_ticket is None:
            self._settle_ticket = self._client.round_trip()
        elif self._client.answered(self._settle_ticket):
            self._settled.set()

    def ack(self, messages: Sequence[Inbound]) -> None:
        """Acknowledge committed messages; the network thread sends the PUBACKs at once."""
        with self._ack_lock:
            self._to_ack.extend(messages)

    def _send_acks(self) -> None:
        # Messages from an earlier connection are skipped: their packet ids mean nothing to
        # the new connection, and the broker redelivers them (stored idempotently again).
        # Under the lock: `close` waits for an empty list, which must mean "sent", so that its
        # DISCONNECT never overtakes the last PUBACKs.
        with self._ack_lock:
            if not self._to_ack:
                return
            current = self._generation
            self._client.ack_many(
                [m.mid for m in self._to_ack if m.qos == 1 and m.generation == current]
            )
            for msg in self._to_ack:
                if msg.qos == 2 and msg.generation == current:
                    self._client.ack(msg.mid, msg.qos)
            self._to_ack = []

    # -- paho callbacks (network thread) ----------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("mqtt connect refused", reason=str(reason_code))
            return
        self._generation += 1
        client.subscribe([(f, 1) for f in self._filters])
        self._connected.set()
        log.info(
            "mqtt connected",
            host=self._settings.mqtt_host,
            port=self._settings.mqtt_port,
            session_present=flags.session_present,
            filters=self._filters,
        )

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self._connected.clear()
        self._subscribed.clear()
        if self._reading.is_set():
            log.warning("mqtt disconnected; reconnecting", reason=str(reason_code))

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _mid: int,
        reason_codes: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            log.error("subscription refused by the broker", reasons=refused, filters=self._filters)
            return
        self._subscribed.set()

    def _deliver(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        """A PUBLISH from the fast receive path."""
        self._received.append(Inbound(topic, payload, mid, qos, self._generation, time.time()))
        if len(self._received) >= CHUNK:
            self._hand_over()

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        """A PUBLISH that paho decoded (MQTT 5 properties, QoS 2): same as `_deliver`."""
        self._deliver(msg.topic, bytes(msg.payload), msg.mid, msg.qos)

    def _hand_over(self) -> None:
        """Put what was received onto the pipeline's queue; blocks while the queue is full."""
        if not self._received:
            return
        chunk, self._received = self._received, []
        while self._reading.is_set():
            try:
                self._inbox.put(chunk, timeout=_PUT_POLL_S)
                return
            except queue.Full:
                continue  # back-pressure: the network thread waits, the broker holds the rest
