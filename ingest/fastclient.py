"""paho-mqtt's `Client` with a receive path fit for a QoS 1 subscriber draining a backlog.

paho 2.2 spends most of a subscriber's time outside the application: its loop reads one packet
per `select()` (`loop_read` reads as many packets as there are *outgoing* messages in flight,
i.e. one for a subscriber), every packet costs three or more `recv()` calls (command byte,
length bytes, body), and each PUBLISH becomes an `MQTTMessage` with an MQTT 5 `Properties`
object and a debug-log format. Acknowledging manually costs one `send()` per PUBACK.

`FastClient` keeps paho for everything else (connect, session, subscribe, keepalive,
reconnect, QoS 2, TLS) and changes four things, each through a documented extension point or a
method of the pinned version (`paho-mqtt==2.2.0`; `tests/test_ingest_fastclient.py` checks it
against the real broker):

* `_sock_recv`-level buffering: one `recv()` of up to 256 KiB, then packets are cut from it.
* `loop_read` reads packets until the socket would block (up to `MAX_PACKETS_PER_READ`), as the
  documentation of an external loop expects, instead of one per `select()`.
* A PUBLISH with QoS 0 or 1, a UTF-8 topic and no MQTT 5 properties (what a broker sends a
  client that asked for no topic aliases or subscription identifiers) goes straight to
  `deliver(topic, payload, mid, qos)`; any other PUBLISH, and every other packet, is handled
  by paho as before (`on_message` etc.).
* `ack_many(mids)` queues the PUBACKs of many QoS 1 messages as one write.
"""

from __future__ import annotations

import contextlib
import select
import struct
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion, _ConnectionState
from paho.mqtt.exception import MalformedPacket

_PUBLISH = 0x30
_PUBACK = 0x40
_PUBACK_PACKET = struct.Struct("!BBH")
# Bytes asked of the kernel per recv(): many PUBLISH packets at once when a backlog drains.
RECV_BYTES = 256 * 1024
# Packets handled per `loop_read` before the loop looks at its writes (PUBACKs) and keepalive.
MAX_PACKETS_PER_READ = 10_000

Deliver = Callable[[str, bytes, int, int], None]


class FastClient(mqtt.Client):
    """A paho `Client` whose PUBLISH receive path calls `deliver` directly (see the module)."""

    def __init__(
        self,
        *args: Any,
        deliver: Deliver,
        after_read: Callable[[], None] = lambda: None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._deliver = deliver
        self._after_read = after_read
        self._rbuf = b""
        self._rpos = 0
        self._rsock: object = None
        self._pings_sent = 0
        self._pings_answered = 0

    # -- receive ---------------------------------------------------------------------------------

    def buffered(self) -> int:
        """Bytes received from the socket and not yet handled."""
        return len(self._rbuf) - self._rpos if self._rsock is self._sock else 0

    def _fill(self) -> MQTTErrorCode | None:
        """Append one recv() to the buffer; an error code, or None when data came."""
        try:
            data = mqtt.Client._sock_recv(self, RECV_BYTES)
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_AGAIN
        except (OSError, ConnectionError) as err:
            self._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if not data:
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        rest = self._rbuf[self._rpos :]
        self._rbuf = rest + data if rest else data
        self._rpos = 0
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        return None

    def _packet_read(self) -> MQTTErrorCode:
        """Handle one packet from the buffer (reading more when it holds no whole packet)."""
        if self._rsock is not self._sock:  # a new connection: nothing of the old one counts
            self._rsock, self._rbuf, self._rpos = self._sock, b"", 0
        while True:
            buf, pos = self._rbuf, self._rpos
            end = len(buf)
            i = pos + 1
            length, shift = 0, 0
            complete = False
            while i < end:
                byte = buf[i]
                i += 1
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    complete = True
                    break
                shift += 7
                if shift > 21:  # more than 4 length bytes
                    return MQTTErrorCode.MQTT_ERR_PROTOCOL
            if complete and end - i >= length:
                self._rpos = i + length
                return self._handle(buf[pos], buf[i : i + length])
            rc = self._fill()
            if rc is not None:
                return rc

    def _handle(self, command: int, body: bytes) -> MQTTErrorCode:
        if command & 0xF0 == _PUBLISH:
            qos = (command >> 1) & 0x03
            try:
                topic_end = 2 + ((body[0] << 8) | body[1])
                p = topic_end
                mid = 0
                if qos:
                    mid = (body[p] << 8) | body[p + 1]
                    p += 2
                if self._protocol == MQTTProtocolVersion.MQTTv5:
                    no_properties = body[p] == 0
                    p += 1
                else:
                    no_properties = True
                if qos < 2 and no_properties and p <= len(body):
                    topic = body[2:topic_end].decode("utf-8")
                    self._deliver(topic, body[p:], mid, qos)
                    return MQTTErrorCode.MQTT_ERR_SUCCESS
            except (IndexError, UnicodeDecodeError):
                pass  # malformed or unusual: paho decides (and reports) below
        self._in_packet = {
            "command": command,
            "have_remaining": 1,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": len(body),
            "packet": bytearray(body),
            "to_process": 0,
            "pos": 0,
        }
        try:
            return self._packet_handle()
        except MalformedPacket as exc:
            self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            return MQTTErrorCode.MQTT_ERR_PROTOCOL

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Read packets until the socket would block (at most `MAX_PACKETS_PER_READ`)."""
        try:
            for _ in range(max(max_packets, MAX_PACKETS_PER_READ)):
                if self._sock is None:
                    return MQTTErrorCode.MQTT_ERR_NO_CONN
                rc = self._packet_read()
                if rc > 0:
                    return self._loop_rc_handle(rc)
                if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                    return MQTTErrorCode.MQTT_ERR_SUCCESS
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        finally:
            self._after_read()

    def _loop(self, timeout: float = 1.0) -> MQTTErrorCode:
        # paho's `_loop`, reading through `loop_read` whenever the buffer still holds data.
        sock = self._sock
        if sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        pending = self.buffered() or (sock.pending() if hasattr(sock, "pending") else 0)
        rlist: list[Any] = [sock] if self._sockpairR is None else [sock, self._sockpairR]
        wlist: list[Any] = [sock] if self.want_write() else []
        try:
            readable, writable, _ = select.select(rlist, wlist, [], 0.0 if pending else timeout)
        except (TypeError, ValueError, OSError):
            # The socket was closed under us (disconnect from another thread, lost link).
            if self._state not in (
                _ConnectionState.MQTT_CS_DISCONNECTING,
                _ConnectionState.MQTT_CS_DISCONNECTED,
            ):
                self._state = _ConnectionState.MQTT_CS_CONNECTION_LOST
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if sock in readable or pending:
            rc = self.loop_read()
            if rc or self._sock is None:
                return rc
        if self._sockpairR is not None and self._sockpairR in readable:
            writable = [sock, *writable]
            with contextlib.suppress(BlockingIOError):
                self._sockpairR.recv(10000)
        if sock in writable:
            rc = self.loop_write()
            if rc or self._sock is None:
                return rc
        return self.loop_misc()

    # -- round trip ------------------------------------------------------------------------------

    def reconnect(self) -> MQTTErrorCode:
        self._pings_sent = self._pings_answered = 0
        return super().reconnect()

    def _send_pingreq(self) -> MQTTErrorCode:
        rc = super()._send_pingreq()
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._pings_sent += 1
        return rc

    def _handle_pingresp(self) -> MQTTErrorCode:
        rc = super()._handle_pingresp()
        self._pings_answered += 1
        return rc

    def round_trip(self) -> int | None:
        """Send a PINGREQ; returns a ticket for `answered` (None if it could not be sent).

        The broker handles a connection's packets in order, so once the PINGRESP is back every
        packet sent before the PINGREQ (e.g. PUBACKs) has been processed. Mosquitto 2.0 reads
        one packet per socket wake-up and discards what is unread when the client closes the
        socket, so PUBACKs written just before a DISCONNECT can otherwise be lost (the broker
        then redelivers those messages)."""
        if self._send_pingreq() != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return None
        return self._pings_sent

    def answered(self, ticket: int) -> bool:
        return self._pings_answered >= ticket

    # -- acknowledge -----------------------------------------------------------------------------

    def ack_many(self, mids: Iterable[int]) -> MQTTErrorCode:
        """PUBACK many QoS 1 messages (manual acknowledgement) in one write.

        The short PUBACK (packet id only) means success in MQTT 3.1.1 and 5 alike."""
        pack = _PUBACK_PACKET.pack
        packet = b"".join([pack(_PUBACK, 2, mid) for mid in mids])
        if not packet:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return self._packet_queue(_PUBACK, packet, 0, 0)
