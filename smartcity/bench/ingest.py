"""`smartcity bench ingest`: our ingest against the C client `mosquitto_sub`, in one run.

Design (why the numbers mean what they say):

* A private Mosquitto with the shipped tuned config (`deploy/mosquitto/mosquitto.conf`,
  persistence on) and a throw-away database on the configured PostgreSQL server.
* **Backlog, then drain.** Persistent sessions are created first — one for `mosquitto_sub`
  (plain subscription) and one per ingest worker (the shared subscription the ingest uses) —
  and only then is the test stream published, while nobody is connected. The broker queues a
  copy for `mosquitto_sub` and one share per worker. Each consumer then drains its backlog
  alone, so the publisher (a Python client, slower than either consumer) is never the
  bottleneck, and both consumers face the same broker with the same stream.
* (a) `mosquitto_sub -c -q 1 -C N` drains N single-reading messages (QoS 1, acknowledging
  each); timed from its start to its exit.
* (b) `smartcity ingest --workers W` drains the same N messages; timed from the moment the
  first worker is connected (Python start-up is excluded, connecting is not) until the N-th
  row is committed (the database is polled).
* (c) the same for P SenML packs of 100 readings each (one message = 100 rows).
* Row counts: every PUBACKed reading must be in the database (`lost`), and no reading twice
  (`duplicates`; rows minus distinct (meter, ts)).
* (d) Latency: with the ingest running, readings are published live at half the drain rate
  measured in (b) (or the publisher's maximum, if lower) with `ts` = the time of publishing;
  `p99_publish_to_commit_ms` is the 99th percentile of `ingested_at - ts` over those rows.
  `ingested_at` is the start of the inserting transaction, so it omits that batch's own
  write time (reported beside it as the ingest's flush p99 is not visible from here).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Annotated

import psycopg
import typer
from psycopg import sql
from rich.console import Console
from rich.table import Table

from smartcity import topics
from smartcity.bench.mqttload import AckedPublisher, meter_payload, senml_pack
from smartcity.db.connect import with_database
from smartcity.errors import ServiceUnavailableError
from smartcity.servers import PrivateMosquitto
from smartcity.settings import Settings
from smartcity.topics import Feed, subscription

CITY = "astana"
SHARE_GROUP = "bench-ingest"
CLIENT_ID = "bench-ingest"
C_CLIENT_ID = "bench-mosquitto-sub"
SESSION_EXPIRY_S = 3600
METERS = 10_000  # distinct meters in the single-reading stream
PACK_READINGS = 100
LATENCY_DURATION_S = 5.0
LATENCY_MAX_RATE_PER_S = 5000.0  # what one Python publisher sustains live on this machine
DRAIN_TIMEOUT_S = 600.0
# How often the drain is checked with a count(*) of the rows so far. Each check is a scan that
# competes with the ingest for the database's CPU, so not too often; the end of a drain is
# seen at most this late (the rate errs low).
POLL_S = 0.1


@dataclass
class IngestBenchResult:
    messages: int
    packs: int
    workers: int
    alerts_on_ingest: bool
    c_client_msgs_per_s: float
    ingest_msgs_per_s: float
    ingest_ratio: float
    batched_readings_per_s: float
    lost: int
    duplicates: int
    dead_letters: int
    latency_rate_per_s: float
    latency_readings: int
    p50_publish_to_commit_ms: float
    p99_publish_to_commit_ms: float


def _mosquitto_sub() -> str:
    found = shutil.which("mosquitto_sub")
    if found is None:
        raise ServiceUnavailableError(
            "mosquitto_sub is not installed; install it with 'apt-get install mosquitto-clients'"
        )
    return found


def _filters(root: str) -> list[str]:
    # The feeds the ingest subscribes to (all that have a decoder), as a share of the group.
    return [f"$share/{SHARE_GROUP}/{subscription(root, feed)}" for feed in Feed]


def _make_session(broker: PrivateMosquitto, client_id: str, filters: list[str]) -> None:
    """Create a persistent session with `filters` (connect, subscribe, leave at once)."""
    args = [_mosquitto_sub(), "-h", broker.host, "-p", str(broker.port), "-V", "mqttv5"]
    args += ["-c", "-i", client_id, "-q", "1", "-x", str(SESSION_EXPIRY_S), "-E"]
    for f in filters:
        args += ["-t", f]
    subprocess.run(args, check=True, timeout=30, stdout=subprocess.DEVNULL)


def _c_client_drain(broker: PrivateMosquitto, topic_filter: str, n: int) -> float:
    """Drain `n` queued messages with mosquitto_sub; returns messages per second."""
    args = [_mosquitto_sub(), "-h", broker.host, "-p", str(broker.port), "-V", "mqttv5"]
    args += ["-c", "-i", C_CLIENT_ID, "-q", "1", "-x", str(SESSION_EXPIRY_S)]
    args += ["-t", topic_filter, "-C", str(n)]
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        subprocess.run(args, check=True, timeout=DRAIN_TIMEOUT_S, stdout=out)
        elapsed = time.perf_counter() - started
        out.seek(0)
        got = sum(chunk.count(b"\n") for chunk in iter(lambda: out.read(1 << 20), b""))
    if got != n:
        raise RuntimeError(f"mosquitto_sub received {got} messages, expected {n}")
    return n / elapsed


class _Ingest:
    """`smartcity ingest --workers W` as a user runs it, in a subprocess."""

    def __init__(self, settings: Settings, workers: int, cwd: str, alerts: bool) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCITY_")}
        env.update(
            SMARTCITY_DATABASE_URL=settings.database_url,
            SMARTCITY_MQTT_HOST=settings.mqtt_host,
            SMARTCITY_MQTT_PORT=str(settings.mqtt_port),
            SMARTCITY_MQTT_TOPIC_ROOT=settings.mqtt_topic_root,
            SMARTCITY_INGEST_CLIENT_ID=CLIENT_ID,
            SMARTCITY_INGEST_SHARE_GROUP=SHARE_GROUP,
            SMARTCITY_INGEST_METRICS_PORT="0",
            SMARTCITY_LOG_FORMAT="json",
            SMARTCITY_ALERTS_ON_INGEST="true" if alerts else "false",
        )
        args = [sys.executable, "-m", "smartcity", "ingest", "--workers", str(workers)]
        self.connected_at: float | None = None
        self._proc = subprocess.Popen(args, env=env, cwd=cwd, stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            if self.connected_at is None and b'"mqtt connected"' in line:
                self.connected_at = time.perf_counter()

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(5)
        if self._proc.returncode != 0:
            raise RuntimeError(f"the ingest exited with {self._proc.returncode} on SIGTERM")


def _count(conn: psycopg.Connection[tuple[object, ...]], like: str) -> tuple[int, int]:
    row = conn.execute(
        "SELECT count(*), count(DISTINCT (meter_id, ts)) FROM meter_readings "
        "WHERE meter_id LIKE %s",
        (like,),
    ).fetchone()
    assert row is not None
    return int(str(row[0])), int(str(row[1]))


def _rows(conn: psycopg.Connection[tuple[object, ...]], like: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM meter_readings WHERE meter_id LIKE %s", (like,)
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


def _drain_rate(
    ingest: _Ingest, conn: psycopg.Connection[tuple[object, ...]], like: str, rows: int
) -> float:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while _rows(conn, like) < rows:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the ingest did not commit {rows} rows in {DRAIN_TIMEOUT_S:g} s")
        time.sleep(POLL_S)
    done = time.perf_counter()
    if ingest.connected_at is None:
        raise RuntimeError("the ingest never logged 'mqtt connected'")
    return rows / (done - ingest.connected_at)


def run(
    settings: Settings, messages: int, packs: int, workers: int, alerts: bool = True
) -> IngestBenchResult:
    root = f"bench{uuid.uuid4().hex[:8]}"
    db_name = f"smartcity_bench_{uuid.uuid4().hex[:8]}"
    admin = with_database(settings.database_conninfo, "postgres")
    with PrivateMosquitto.tuned() as broker, tempfile.TemporaryDirectory() as cwd:
        s = settings.model_copy(
            update={
                "database_url": with_database(settings.database_conninfo, db_name),
                "mqtt_host": broker.host,
                "mqtt_port": broker.port,
                "mqtt_topic_root": root,
            }
        )
        from smartcity.db.migrate import migrate

        migrate(s)
        try:
            return _measure(s, broker, cwd, messages, packs, workers, alerts)
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(db_name)
                    )
                )


def _measure(
    s: Settings,
    broker: PrivateMosquitto,
    cwd: str,
    messages: int,
    packs: int,
    workers: int,
    alerts: bool,
) -> IngestBenchResult:
    root = s.mqtt_topic_root
    reading_filter = subscription(root, Feed.METER_READING)
    _make_session(broker, C_CLIENT_ID, [reading_filter])
    ids = [CLIENT_ID] if workers == 1 else [f"{CLIENT_ID}-{n}" for n in range(workers)]
    for client_id in ids:
        _make_session(broker, client_id, _filters(root))
    t0_s = int(time.time()) - 7200
    with AckedPublisher(broker.host, broker.port, f"pub-{root}") as pub:
        for i in range(messages):
            meter, k = f"bench-em-{i % METERS:06d}", i // METERS
            pub.publish(
                topics.meter_reading(root, CITY, meter),
                meter_payload(meter, (t0_s + k) * 1000, float(k)),
            )
        if not pub.flush(DRAIN_TIMEOUT_S):
            raise RuntimeError("the broker did not acknowledge the single-reading stream")
        acked_single = pub.acknowledged()
    c_rate = _c_client_drain(broker, reading_filter, messages)

    with psycopg.connect(s.database_conninfo, autocommit=True) as conn:
        ingest = _Ingest(s, workers, cwd, alerts)
        try:
            ingest_rate = _drain_rate(ingest, conn, "bench-em-%", messages)
        finally:
            ingest.stop()

        groups = METERS // PACK_READINGS
        with AckedPublisher(broker.host, broker.port, f"pub-{root}") as pub:
            for p in range(packs):
                g, k = p % groups, p // groups
                meters = [f"bench-gm-{g * PACK_READINGS + j:06d}" for j in range(PACK_READINGS)]
                pub.publish(
                    topics.gateway_senml(root, CITY, f"bench-gw-{g:03d}"),
                    senml_pack(meters, float(t0_s + k), [float(k)] * PACK_READINGS),
                )
            if not pub.flush(DRAIN_TIMEOUT_S):
                raise RuntimeError("the broker did not acknowledge the SenML stream")
            acked_packs = pub.acknowledged()
        ingest = _Ingest(s, workers, cwd, alerts)
        try:
            senml_rate = _drain_rate(ingest, conn, "bench-gm-%", packs * PACK_READINGS)
            latency_rate = min(ingest_rate / 2, LATENCY_MAX_RATE_PER_S)
            latency_n = _publish_live(broker, root, latency_rate)
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while _rows(conn, "bench-lat-%") < latency_n and time.monotonic() < deadline:
                time.sleep(POLL_S)
        finally:
            ingest.stop()

        rows_single, distinct_single = _count(conn, "bench-em-%")
        rows_senml, distinct_senml = _count(conn, "bench-gm-%")
        rows_lat, distinct_lat = _count(conn, "bench-lat-%")
        lat = conn.execute(
            "SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP ("
            " ORDER BY extract(epoch FROM ingested_at - ts) * 1000)"
            " FROM meter_readings WHERE meter_id LIKE 'bench-lat-%'"
        ).fetchone()
        dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    percentiles = list(lat[0]) if lat is not None and isinstance(lat[0], list) else []
    p50, p99 = (float(v) for v in percentiles) if percentiles else (float("nan"),) * 2
    lost = (
        max(0, acked_single - distinct_single)
        + max(0, acked_packs * PACK_READINGS - distinct_senml)
        + max(0, latency_n - distinct_lat)
    )
    duplicates = (rows_single - distinct_single) + (rows_senml - distinct_senml)
    duplicates += rows_lat - distinct_lat
    return IngestBenchResult(
        messages=messages,
        packs=packs,
        workers=workers,
        alerts_on_ingest=alerts,
        c_client_msgs_per_s=round(c_rate),
        ingest_msgs_per_s=round(ingest_rate),
        ingest_ratio=round(ingest_rate / c_rate, 3),
        batched_readings_per_s=round(senml_rate),
        lost=lost,
        duplicates=duplicates,
        dead_letters=int(str(dead[0])) if dead is not None else -1,
        latency_rate_per_s=round(latency_rate),
        latency_readings=latency_n,
        p50_publish_to_commit_ms=round(p50, 1),
        p99_publish_to_commit_ms=round(p99, 1),
    )


def _publish_live(broker: PrivateMosquitto, root: str, rate_per_s: float) -> int:
    """Publish readings stamped with the time of publishing, paced at `rate_per_s`."""
    total = int(rate_per_s * LATENCY_DURATION_S)
    with AckedPublisher(broker.host, broker.port, f"pub-live-{root}") as pub:
        start = time.monotonic()
        for i in range(total):
            meter = f"bench-lat-{i % 1000:04d}"
            ts_ms = int(time.time() * 1000)
            pub.publish(topics.meter_reading(root, CITY, meter), meter_payload(meter, ts_ms, i))
            ahead_s = start + (i + 1) / rate_per_s - time.monotonic()
            if ahead_s > 0:
                time.sleep(ahead_s)
        if not pub.flush(DRAIN_TIMEOUT_S):
            raise RuntimeError("the broker did not acknowledge the live stream")
        return pub.acknowledged()


def command(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    messages: Annotated[
        int, typer.Option(min=1000, help="Single-reading messages in the stream.")
    ] = 100_000,
    packs: Annotated[int, typer.Option(min=10, help="SenML packs of 100 readings.")] = 2000,
    workers: Annotated[
        int, typer.Option(min=1, help="Ingest worker processes (smartcity ingest --workers).")
    ] = 2,
    alerts: Annotated[
        bool,
        typer.Option(
            "--alerts/--no-alerts",
            help="Evaluate the alert rules on every committed batch, as the ingest does by "
            "default (SMARTCITY_ALERTS_ON_INGEST); --no-alerts measures the pipeline alone.",
        ),
    ] = True,
) -> None:
    """Ingest rate vs mosquitto_sub on the same backlog, SenML rate, loss, duplicates, latency.

    Uses a private Mosquitto (tuned config) and a temporary database on the configured
    PostgreSQL server (SMARTCITY_DATABASE_URL); both are removed afterwards.
    """
    result = run(Settings(), messages, packs, workers, alerts)
    if as_json:
        print(json.dumps(asdict(result)))
        return
    table = Table(title="smartcity bench ingest")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in asdict(result).items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    Console().print(table)
