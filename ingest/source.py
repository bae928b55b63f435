"""The MQTT side of the ingest: a persistent QoS 1 session with manual acknowledgement.

paho-mqtt runs its network loop in its own thread and hands each message to `_on_message`,
which puts it on a bounded queue. When the queue is full the put blocks the network thread, so
the ingest stops reading the socket and the broker stops sending: back-pressure without loss.
Messages are acknowledged (PUBACK) only by `ack`, which the pipeline calls after the rows are
committed. A message that is never acknowledged is redelivered by the broker after a reconnect
or restart, because the session is persistent.

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
# Reconnect backoff: from 0.5 s doubling to 2 s, each wait drawn uniformly from [0, delay].
# The cap is short on purpose: Mosquitto 2.0 does not restore shared subscriptions when it
# restarts, so until the ingest has subscribed again the broker accepts readings that no one
# receives (see docs/ingest.md). A few workers retrying every ≤ 2 s cost the broker nothing.
RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 2.0
# The network loop wakes at least this often to send acknowledgements queued by `ack`.
_LOOP_TIMEOUT_S = 0.02
_CLOSE_ACK_WAIT_S = 5.0


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
        self, settings: Settings, inbox: queue.Queue[Inbound], feeds: Sequence[Feed]
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
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
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
                while self._client.loop(timeout=_LOOP_TIMEOUT_S) == mqtt.MQTT_ERR_SUCCESS:
                    self._send_acks()
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
        """Disconnect (after sending any acknowledgements queued so far) and end the thread."""
        self._reading.clear()
        deadline = time.monotonic() + _CLOSE_ACK_WAIT_S
        while self._connected.is_set() and time.monotonic() < deadline:
            with self._ack_lock:
                if not self._to_ack:
                    break
            time.sleep(_LOOP_TIMEOUT_S)
        self._closing.set()
        self._client.disconnect()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._connected.clear()

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
            current = self._generation
            ack = self._client.ack
            for msg in self._to_ack:
                if msg.qos > 0 and msg.generation == current:
                    ack(msg.mid, msg.qos)
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

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        item = Inbound(
            msg.topic, bytes(msg.payload), msg.mid, msg.qos, self._generation, time.time()
        )
        while self._reading.is_set():
            try:
                self._inbox.put(item, timeout=_PUT_POLL_S)
                return
            except queue.Full:
                continue  # back-pressure: the network thread waits, the broker holds the rest
