"""The soak's faults, each injected on the running system and recorded with when it started,
when it was over and what it did.

    kill_ingest_worker   SIGKILL one `smartcity ingest` worker; its supervisor restarts it, and
                         the broker redelivers what it had not acknowledged
    restart_broker       stop and start the (private) broker; persistent sessions survive
    pause_database       SIGSTOP the (private) PostgreSQL for `db_pause_s`, then SIGCONT
    malformed_burst      messages of every malformed kind at once, as a broken firmware would;
                         each must become one dead letter, none a row
    reconnect_storm      thousands of devices connect at once (as after a power cut), each
                         publishes one reading (QoS 1) and stays until all are connected

With `--configured-servers` the broker and database are not the soak's to stop: those two
faults are recorded as not injected, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field

from smartcity import topics
from smartcity.bench.mqttload import AckedPublisher, meter_payload
from smartcity.servers import PrivateMosquitto, PrivatePostgres
from smartcity.soak import SoakError
from smartcity.soak.procs import ingest_workers

WORKER_BACK_TIMEOUT_S = 120.0
STORM_CONNECT_ATTEMPTS = 8
STORM_CONNECT_TIMEOUT_S = 30.0
# How long connected storm devices wait for the rest before they leave anyway.
STORM_HOLD_S = 30.0
BURST_CITY = "astana"
# One more kind than the simulators' malformed kinds: a topic whose city we do not serve, and a
# payload over the ingest's size limit.
BURST_KINDS = ("bad_json", "wrong_types", "missing_fields", "absurd_values", "unknown_city")
OVERSIZED_BYTES = 70_000  # above SMARTCITY_INGEST_MAX_PAYLOAD_BYTES' default of 65,536


@dataclass
class FaultRecord:
    kind: str
    start_s: float
    end_s: float
    injected: bool
    detail: dict[str, object] = field(default_factory=dict)


@dataclass
class FaultContext:
    t0: float  # time.monotonic() at the soak's start
    root: str
    mqtt_host: str
    mqtt_port: int
    ingest: subprocess.Popen[bytes]
    broker: PrivateMosquitto | None
    database: PrivatePostgres | None
    db_pause_s: float
    storm_clients: int
    malformed_messages: int
    stop: threading.Event
    # Readings the faults got acknowledged: they must be in the database like the rest.
    acked_keys: list[Hashable] = field(default_factory=list)

    def now_s(self) -> float:
        return round(time.monotonic() - self.t0, 2)


def inject(kind: str, ctx: FaultContext) -> FaultRecord:
    start = ctx.now_s()
    injectors = {
        "kill_ingest_worker": _kill_ingest_worker,
        "restart_broker": _restart_broker,
        "pause_database": _pause_database,
        "malformed_burst": _malformed_burst,
        "reconnect_storm": _reconnect_storm,
    }
    injected, detail = injectors[kind](ctx)
    return FaultRecord(kind, start, ctx.now_s(), injected, detail)


def _kill_ingest_worker(ctx: FaultContext) -> tuple[bool, dict[str, object]]:
    victim = ingest_workers(ctx.ingest).get(0)
    if victim is None:
        raise SoakError("no ingest worker 0 to kill: the ingest supervisor is not running it")
    os.kill(victim.pid, signal.SIGKILL)
    deadline = time.monotonic() + WORKER_BACK_TIMEOUT_S
    while True:
        back = ingest_workers(ctx.ingest).get(0)
        if back is not None and back.pid != victim.pid:
            return True, {"worker": 0, "killed_pid": victim.pid, "restarted_pid": back.pid}
        if time.monotonic() > deadline or ctx.stop.is_set():
            raise SoakError(
                f"the ingest supervisor did not restart worker 0 in {WORKER_BACK_TIMEOUT_S:g} s"
            )
        time.sleep(0.05)


def _restart_broker(ctx: FaultContext) -> tuple[bool, dict[str, object]]:
    if ctx.broker is None:
        return False, {"reason": "the configured broker is not the soak's to restart"}
    ctx.broker.restart()  # SIGTERM (Mosquitto saves its sessions), then start on the same port
    return True, {"port": ctx.broker.port}


def _pause_database(ctx: FaultContext) -> tuple[bool, dict[str, object]]:
    if ctx.database is None:
        return False, {"reason": "the configured database is not the soak's to pause"}
    ctx.database.pause()
    try:
        ctx.stop.wait(ctx.db_pause_s)
    finally:
        ctx.database.resume()
    return True, {"paused_s": ctx.db_pause_s}


def _malformed_burst(ctx: FaultContext) -> tuple[bool, dict[str, object]]:
    from simulators.faults import corrupt

    rng = random.Random(0xBAD)
    by_kind: dict[str, int] = {}
    ts_ms = int(time.time() * 1000)
    with AckedPublisher(ctx.mqtt_host, ctx.mqtt_port, f"soak-burst-{ctx.root}") as pub:
        for i in range(ctx.malformed_messages):
            device = f"soak-bad-{i:06d}"
            kinds = (*BURST_KINDS, "oversized")
            kind = kinds[i % len(kinds)]
            good = meter_payload(device, ts_ms, 1.0)
            city = BURST_CITY
            if kind == "unknown_city":
                city, payload = "atlantis", good
            elif kind == "oversized":
                payload = good[:-1] + b',"pad":"' + b"x" * OVERSIZED_BYTES + b'"}'
            else:
                payload = corrupt(good, kind, rng)
            pub.publish(topics.meter_reading(ctx.root, city, device), payload)
            by_kind[kind] = by_kind.get(kind, 0) + 1
        pub.flush(timeout_s=60)
        acked = pub.acknowledged()
    return True, {"messages": ctx.malformed_messages, "acknowledged": acked, "by_kind": by_kind}


def _reconnect_storm(ctx: FaultContext) -> tuple[bool, dict[str, object]]:
    stats = asyncio.run(_storm(ctx))
    return True, stats


async def _storm(ctx: FaultContext) -> dict[str, object]:
    import aiomqtt

    n = ctx.storm_clients
    connected = 0
    failures = 0
    peak = 0
    present = 0
    everyone = asyncio.Event()
    acked: list[Hashable] = []
    started = time.monotonic()
    all_in_s: float | None = None

    async def device(i: int) -> None:
        nonlocal connected, failures, peak, present, all_in_s
        meter = f"soak-storm-{i:05d}"
        delay = 0.5
        for _attempt in range(STORM_CONNECT_ATTEMPTS):
            try:
                async with aiomqtt.Client(
                    ctx.mqtt_host,
                    ctx.mqtt_port,
                    identifier=f"{ctx.root}-storm-{i:05d}",
                    protocol=aiomqtt.ProtocolVersion.V311,
                    clean_session=True,
                    timeout=STORM_CONNECT_TIMEOUT_S,
                ) as client:
                    present += 1
                    peak = max(peak, present)
                    try:
                        ts_ms = int(time.time() * 1000)
                        await client.publish(
                            topics.meter_reading(ctx.root, BURST_CITY, meter),
                            meter_payload(meter, ts_ms, 1.0),
                            qos=1,
                        )
                        acked.append(("meter_readings", meter, ts_ms))
                        connected += 1
                        if connected == n:
                            all_in_s = time.monotonic() - started
                            everyone.set()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(everyone.wait(), STORM_HOLD_S)
                    finally:
                        present -= 1
                return
            except aiomqtt.MqttError:
                failures += 1
                # Capped, jittered retry, as real devices do after a failed connect.
                await asyncio.sleep(random.uniform(0, delay))
                delay = min(delay * 2, 8.0)

    async with asyncio.TaskGroup() as tg:
        for i in range(n):
            tg.create_task(device(i), name=f"soak-storm-{i}")
    ctx.acked_keys.extend(acked)
    return {
        "clients": n,
        "published_and_acknowledged": connected,
        "peak_connected_at_once": peak,
        "connect_failures_retried": failures,
        "all_connected_after_s": round(all_in_s, 2) if all_in_s is not None else None,
        "took_s": round(time.monotonic() - started, 2),
    }
