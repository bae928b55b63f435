"""Fault injection with private servers: kill -9 the ingest, restart the broker, stop the
database for 10 s — each mid-stream. Every reading the broker acknowledged to the publisher
(PUBACK) must end up in the database exactly once.

The broker is a private Mosquitto with the shipped tuned configuration (persistence on), as
deployed: the shared development broker runs Debian's defaults, which drop queued messages.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from smartcity import topics
from smartcity.bench.mqttload import AckedPublisher, meter_payload
from smartcity.db.connect import with_database
from smartcity.db.migrate import migrate
from smartcity.servers import PrivateMosquitto, PrivatePostgres
from smartcity.settings import Settings
from tests.helpers import count_rows, running_ingest, wait_until

pytestmark = pytest.mark.slow

METERS = 200
TOTAL = 6000
RATE_PER_S = 1500.0


@pytest.fixture
def broker() -> Iterator[PrivateMosquitto]:
    with PrivateMosquitto.tuned() as b:
        yield b


class Stream:
    """Publishes TOTAL meter readings at RATE_PER_S in a thread; remembers what was PUBACKed."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._t0_ms = (int(time.time()) - 3 * 3600) * 1000
        self.published = 0
        self.acked: list[Hashable] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="test-stream", daemon=True)

    def _run(self) -> None:
        s = self._settings
        try:
            with AckedPublisher(s.mqtt_host, s.mqtt_port, f"pub-{s.mqtt_topic_root}") as pub:
                start = time.monotonic()
                for i in range(TOTAL):
                    meter, k = f"ast-em-{i % METERS:06d}", i // METERS
                    ts_ms = self._t0_ms + k * 1000
                    pub.publish(
                        topics.meter_reading(s.mqtt_topic_root, "astana", meter),
                        meter_payload(meter, ts_ms, float(k)),
                        key=(meter, ts_ms),
                    )
                    self.published = i + 1
                    ahead_s = start + (i + 1) / RATE_PER_S - time.monotonic()
                    if ahead_s > 0:
                        time.sleep(ahead_s)  # pacing the publisher, not waiting for a result
                pub.flush(timeout_s=90)
                self.acked = pub.acknowledged_keys()
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._thread.join(120)

    def wait_published(self, fraction: float) -> None:
        wait_until(
            lambda: self.published >= TOTAL * fraction or self.error is not None,
            timeout_s=60,
            what=f"{fraction:.0%} of the stream published",
        )


def _assert_exactly_once(settings: Settings, stream: Stream) -> None:
    assert stream.error is None, stream.error
    assert len(stream.acked) >= TOTAL * 0.9, f"only {len(stream.acked)} PUBACKed"
    wait_until(
        lambda: count_rows(settings, "meter_readings") >= len(stream.acked),
        timeout_s=60,
        what=f"{len(stream.acked)} acknowledged readings in the database",
    )
    with psycopg.connect(settings.database_conninfo) as conn:
        rows = conn.execute(
            "SELECT meter_id, (extract(epoch FROM ts) * 1000)::bigint FROM meter_readings"
        ).fetchall()
    stored = [(str(m), int(str(t))) for m, t in rows]
    assert len(stored) == len(set(stored)), "duplicate rows"
    missing = set(stream.acked) - set(stored)
    assert not missing, f"{len(missing)} PUBACKed readings lost, e.g. {list(missing)[:3]}"
    assert count_rows(settings, "dead_letters") == 0


def _ingest_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCITY_")}
    env.update(
        SMARTCITY_DATABASE_URL=settings.database_url,
        SMARTCITY_MQTT_HOST=settings.mqtt_host,
        SMARTCITY_MQTT_PORT=str(settings.mqtt_port),
        SMARTCITY_MQTT_TOPIC_ROOT=settings.mqtt_topic_root,
        SMARTCITY_INGEST_CLIENT_ID=settings.ingest_client_id,
        SMARTCITY_INGEST_METRICS_PORT="0",
        SMARTCITY_LOG_FORMAT="json",
    )
    return env


@contextmanager
def _ingest_process(settings: Settings, cwd: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "smartcity", "ingest", *args],
        env=_ingest_env(settings),
        cwd=cwd,  # no .env file here
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_kill_9_the_ingest_mid_stream_and_restart_it(
    settings: Settings, broker: PrivateMosquitto, tmp_path: Path
) -> None:
    s = settings.model_copy(update={"mqtt_host": broker.host, "mqtt_port": broker.port})
    with running_ingest(s):
        pass  # creates the persistent session and its subscriptions, then stops cleanly
    with Stream(s) as stream:
        with _ingest_process(s, tmp_path) as first:
            stream.wait_published(0.4)
            wait_until(
                lambda: count_rows(s, "meter_readings") > 0, timeout_s=30, what="rows committed"
            )
            first.send_signal(signal.SIGKILL)
            first.wait()
        stream.wait_published(0.6)  # more arrives while no ingest runs
        with _ingest_process(s, tmp_path) as second:
            _assert_exactly_once(s, stream_done(stream))
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0, "SIGTERM: the ingest should flush and exit 0"


def stream_done(stream: Stream) -> Stream:
    stream.__exit__()
    return stream


def test_restart_the_broker_mid_stream(settings: Settings, broker: PrivateMosquitto) -> None:
    s = settings.model_copy(update={"mqtt_host": broker.host, "mqtt_port": broker.port})
    with running_ingest(s), Stream(s) as stream:
        stream.wait_published(0.4)
        broker.restart()  # SIGTERM: Mosquitto saves its persistence file, as in a deployment
        _assert_exactly_once(s, stream_done(stream))


def test_stop_the_database_for_10_s_mid_stream(
    settings: Settings, broker: PrivateMosquitto
) -> None:
    with PrivatePostgres() as pg:
        s = settings.model_copy(
            update={
                "mqtt_host": broker.host,
                "mqtt_port": broker.port,
                "database_url": with_database(pg.conninfo, "smartcity"),
            }
        )
        migrate(s)
        with running_ingest(s) as ingest, Stream(s) as stream:
            stream.wait_published(0.3)
            pg.stop()
            down_at = time.monotonic()

            def db_errors() -> float:
                return (
                    ingest.metrics.registry.get_sample_value(
                        "smartcity_ingest_db_errors_total", {"kind": "unavailable"}
                    )
                    or 0.0
                )

            # The outage itself lasts 10 s; the ingest must have noticed it meanwhile.
            wait_until(
                lambda: time.monotonic() - down_at >= 10 and db_errors() > 0,
                timeout_s=30,
                what="a 10 s outage the ingest noticed",
                poll_s=0.2,
            )
            pg.start()
            _assert_exactly_once(s, stream_done(stream))


def test_workers_share_the_stream_and_stop_cleanly_on_sigterm(
    settings: Settings, broker: PrivateMosquitto, tmp_path: Path
) -> None:
    s = settings.model_copy(update={"mqtt_host": broker.host, "mqtt_port": broker.port})
    # The workers' sessions exist before the stream starts (worker n is client id "<id>-n").
    for n in range(2):
        worker = s.model_copy(update={"ingest_client_id": f"{s.ingest_client_id}-{n}"})
        with running_ingest(worker):
            pass
    with _ingest_process(s, tmp_path, "--workers", "2") as supervisor, Stream(s) as stream:
        _assert_exactly_once(s, stream_done(stream))
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(60) == 0, "the supervisor should stop its workers and exit 0"
