"""The ingest's MQTT receive path (`ingest.fastclient`) against the real broker."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.fastclient import RECV_BYTES, FastClient
from tests.helpers import TIMEOUT_SCALE

Received = list[tuple[str, bytes, int, int]]


def _connect_props() -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 300
    props.ReceiveMaximum = 65535
    return props


def _subscriber(host: str, port: int, client_id: str, got: Received) -> FastClient:
    client = FastClient(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=True,
        deliver=lambda topic, payload, mid, qos: got.append((topic, payload, mid, qos)),
    )

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        got.append((msg.topic, bytes(msg.payload), msg.mid, msg.qos))

    client.on_message = on_message
    client.connect(host, port, clean_start=False, properties=_connect_props())
    return client


def _pump(client: FastClient, until: int, got: Received, *, ack: bool) -> None:
    deadline = time.monotonic() + 30 * TIMEOUT_SCALE
    acked = 0
    while len(got) < until:
        assert time.monotonic() < deadline, f"received {len(got)} of {until}"
        assert client.loop(0.05) == mqtt.MQTT_ERR_SUCCESS
        if ack and len(got) > acked:
            client.ack_many([mid for _, _, mid, qos in got[acked:] if qos == 1])
            acked = len(got)


def _publisher(host: str, port: int, client_id: str) -> mqtt.Client:
    pub = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    pub.max_inflight_messages_set(1000)
    pub.connect(host, port)
    pub.loop_start()
    return pub


def _subscribe(client: FastClient, topic: str) -> None:
    acked: list[int] = []
    client.on_subscribe = lambda _c, _u, mid, _rc, _p: acked.append(mid)
    result, mid = client.subscribe(topic, qos=1)
    assert result == mqtt.MQTT_ERR_SUCCESS
    deadline = time.monotonic() + 10 * TIMEOUT_SCALE
    while mid not in acked:
        assert time.monotonic() < deadline, "no SUBACK"
        client.loop(0.05)


def test_every_message_arrives_intact_and_in_order(
    mqtt_server: tuple[str, int], topic_root: str
) -> None:
    host, port = mqtt_server
    got: Received = []
    sub = _subscriber(host, port, f"{topic_root}-sub", got)
    _subscribe(sub, f"{topic_root}/#")
    pub = _publisher(host, port, f"{topic_root}-pub")
    sent: list[tuple[str, bytes]] = []
    with_props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    with_props.UserProperty = ("k", "v")  # paho's own path (PUBLISH with properties)
    try:
        for i in range(3000):
            # Sizes around and above one recv() so that packets span buffer refills.
            size = RECV_BYTES + 17 if i == 1500 else (i * 37) % 2000
            payload = bytes([i % 251]) * size
            topic = f"{topic_root}/d{i % 7}/ä"  # non-ASCII topic level
            sent.append((topic, payload))
            info = pub.publish(
                topic, payload, qos=1, properties=with_props if i % 500 == 0 else None
            )
            if i % 200 == 0:
                info.wait_for_publish(10 * TIMEOUT_SCALE)
                _pump(sub, len(sent) - 200, got, ack=True)  # keep the broker's queue short
        _pump(sub, len(sent), got, ack=True)
    finally:
        pub.loop_stop()
        pub.disconnect()
    assert [(t, p) for t, p, _, _ in got] == sent
    assert {qos for _, _, _, qos in got} == {1}
    sub.disconnect()
    _end_session(host, port, f"{topic_root}-sub")


def test_acked_messages_are_not_redelivered_and_the_rest_are(
    mqtt_server: tuple[str, int], topic_root: str
) -> None:
    host, port = mqtt_server
    client_id = f"{topic_root}-sub"
    got: Received = []
    sub = _subscriber(host, port, client_id, got)
    _subscribe(sub, f"{topic_root}/#")
    pub = _publisher(host, port, f"{topic_root}-pub")
    try:
        for i in range(100):
            pub.publish(f"{topic_root}/m", str(i).encode(), qos=1).wait_for_publish(10)
    finally:
        pub.loop_stop()
        pub.disconnect()
    _pump(sub, 100, got, ack=False)
    assert sub.ack_many([mid for _, p, mid, _ in got if int(p) < 60]) == mqtt.MQTT_ERR_SUCCESS
    _round_trip(sub)
    sub.disconnect()

    again: Received = []
    sub = _subscriber(host, port, client_id, again)
    _pump(sub, 40, again, ack=True)
    _round_trip(sub)  # a redelivery beyond these 40 would have arrived before the PINGRESP
    assert sorted(int(p) for _, p, _, _ in again) == list(range(60, 100))
    sub.disconnect()
    _end_session(host, port, client_id)


def _round_trip(client: FastClient) -> None:
    """PINGREQ → PINGRESP: every PUBACK sent before has been processed by the broker."""
    ticket = client.round_trip()
    assert ticket is not None
    deadline = time.monotonic() + 10 * TIMEOUT_SCALE
    while not client.answered(ticket):
        assert time.monotonic() < deadline, "no PINGRESP"
        client.loop(0.05)


def _end_session(host: str, port: int, client_id: str) -> None:
    """Connect once with a clean start and no expiry: the broker drops the session."""
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    c.connect(host, port, clean_start=True)
    c.loop(0.2)
    c.disconnect()
