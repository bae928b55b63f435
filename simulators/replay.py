"""Replay a recording (preserving relative timing, or as fast as possible) and record a live
broker's traffic into one."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from simulators.clock import SimClock
from simulators.recording import RecordingReader, RecordingWriter, retarget
from simulators.stream import Message, RunStats, Sink, drive
from smartcity.errors import ServiceUnavailableError
from smartcity.settings import Settings

CONNECT_TIMEOUT_S = 10.0


def recorded_messages(reader: RecordingReader, prefix: str | None = None) -> Iterator[Message]:
    """The recording as a stream: time relative to its first message, topics retargeted."""
    t0: float | None = None
    for t, topic, payload in reader:
        if t0 is None:
            t0 = t
        yield t - t0, retarget(topic, prefix), payload


def replay(
    path: Path,
    sink: Sink,
    *,
    speed: float | None,
    stop: threading.Event,
    prefix: str | None = None,
    progress: Callable[[RunStats, float], None] | None = None,
) -> RunStats:
    """Hand every recorded message to `sink` at its original relative time divided by `speed`
    (None: as fast as possible). `progress` gets the stats and the share of the file read."""
    size = max(path.stat().st_size, 1)
    with RecordingReader(path) as reader:
        clock = SimClock(speed=speed) if speed is not None else None

        def show(stats: RunStats) -> None:
            if progress is not None:
                progress(stats, reader.compressed_offset / size)

        return drive(
            recorded_messages(reader, prefix),
            lambda _t, topic, payload: sink(topic, payload),
            clock=clock,
            stop=stop,
            progress=show,
        )


def record_broker(
    settings: Settings,
    path: Path,
    *,
    topic_filter: str,
    stop: threading.Event,
    duration_s: float | None,
    max_messages: int | None,
    client_id: str,
    progress: Callable[[int], None] | None = None,
    ready: threading.Event | None = None,
) -> int:
    """Write every message seen on `topic_filter` with its arrival time until `stop`, the
    duration (real seconds) or the message count; returns how many were recorded. `ready` is
    set once the broker confirmed the subscription (SUBACK)."""
    writer = RecordingWriter(
        path, {"format": "SCREC1", "made_by": "smartcity record", "topic_filter": topic_filter}
    )
    lock = threading.Lock()
    done = threading.Event()
    subscribed = threading.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv311
    )
    if settings.mqtt_username:
        client.username_pw_set(settings.mqtt_username, settings.mqtt_password)

    def on_connect(
        c: mqtt.Client, _u: object, _f: mqtt.ConnectFlags, rc: ReasonCode, _p: Properties | None
    ) -> None:
        if not rc.is_failure:
            c.subscribe(topic_filter, qos=1)

    def on_subscribe(
        _c: mqtt.Client, _u: object, _mid: int, _rc: list[ReasonCode], _p: Properties | None
    ) -> None:
        subscribed.set()
        if ready is not None:
            ready.set()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with lock:
            if done.is_set():
                return
            writer.write(time.time(), msg.topic, bytes(msg.payload))
            if max_messages is not None and writer.count >= max_messages:
                done.set()

    client.on_connect = on_connect
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    try:
        client.connect(settings.mqtt_host, settings.mqtt_port, keepalive=settings.mqtt_keepalive_s)
    except OSError as exc:
        writer.close()
        raise ServiceUnavailableError(
            f"cannot connect to the MQTT broker at {settings.mqtt_host}:{settings.mqtt_port}: {exc}"
        ) from exc
    client.loop_start()
    try:
        if not subscribed.wait(CONNECT_TIMEOUT_S):
            raise ServiceUnavailableError("the MQTT broker did not accept the connection")
        deadline = time.monotonic() + duration_s if duration_s is not None else None
        while not (stop.is_set() or done.is_set()):
            if deadline is not None and time.monotonic() >= deadline:
                break
            stop.wait(0.2)
            if progress is not None:
                progress(writer.count)
    finally:
        client.disconnect()
        client.loop_stop()
        with lock:
            done.set()
            writer.close()
    return writer.count
