"""Small helpers shared by the tests: waiting for conditions, publishing, counting rows."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.pipeline import Pipeline
from smartcity.settings import Settings

POLL_S = 0.05
TIMEOUT_SCALE = float(os.environ.get("SMARTCITY_TEST_TIMEOUT_SCALE", "3"))


def wait_until(
    predicate: Callable[[], bool], *, timeout_s: float, what: str, poll_s: float = POLL_S
) -> None:
    """Poll `predicate` until it holds; fail with `what` after `timeout_s` × TIMEOUT_SCALE.

    The timeouts in the tests are what an idle 2-core machine needs with room to spare; on a
    loaded one (several test runs at once) conditions take longer to arrive, so the limit is
    scaled. Waiting longer costs nothing when the condition holds: only a failure is slower.
    """
    limit_s = timeout_s * TIMEOUT_SCALE
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_s:g} s waiting for {what}")
        time.sleep(poll_s)


def count_rows(settings: Settings, table: str, where: str = "TRUE") -> int:
    with psycopg.connect(settings.database_conninfo, autocommit=True) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()  # noqa: S608
        assert row is not None
        return int(row[0])


@contextmanager
def running_ingest(settings: Settings) -> Iterator[Pipeline]:
    """An ingest pipeline in a thread, subscribed before this yields; stopped cleanly after."""
    pipeline = Pipeline(settings)
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            pipeline.run(stop)
        except BaseException as exc:
            errors.append(exc)
            raise

    thread = threading.Thread(target=target, name="test-ingest", daemon=True)
    thread.start()
    try:
        wait_until(
            lambda: pipeline.ready.is_set() or bool(errors),
            timeout_s=15,
            what="the ingest to subscribe",
        )
        if errors:
            raise errors[0]
        yield pipeline
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "the ingest did not stop within 30 s"
    if errors:
        raise errors[0]


def discard_session(settings: Settings, client_id: str) -> None:
    """Remove a persistent MQTT session from the broker (connect clean, expiry 0)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0
    client.connect(settings.mqtt_host, settings.mqtt_port, clean_start=True, properties=props)
    client.loop_start()
    client.disconnect()
    client.loop_stop()
