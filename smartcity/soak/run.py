"""One soak run, from servers to report (the timeline is in `smartcity.soak.plan`)."""

from __future__ import annotations

import contextlib
import math
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
import psutil
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from psycopg import sql

from smartcity import topics
from smartcity.bench.api import _wait_ready
from smartcity.bench.mqttload import AckedPublisher, meter_payload
from smartcity.db.connect import with_database
from smartcity.db.migrate import migrate
from smartcity.servers import PrivateMosquitto, PrivatePostgres, free_port
from smartcity.settings import Settings
from smartcity.soak import SoakError, count, report, scores, truth
from smartcity.soak.faults import FaultContext, FaultRecord, inject
from smartcity.soak.plan import SoakPlan
from smartcity.soak.procs import (
    INGEST_WORKERS,
    MemorySample,
    MemorySampler,
    SimSpec,
    Simulators,
    ingest_workers,
    start_api,
    start_ingest,
    stop_process,
)
from smartcity.soak.traffic import ApiLoad, LagProbe

if TYPE_CHECKING:
    from simulators.live import RunResult

READY_TIMEOUT_S = 120.0
# The simulators may run late on a loaded machine (their messages are stamped with the
# schedule, so late is not wrong); this much past the planned end they count as failed.
SIM_OVERRUN_SHARE = 0.5
SIM_OVERRUN_MIN_S = 120.0
# After publishing, each simulator walks its run again for the keys and the ground truth
# (count.write_keys): about 100 s for a 5-minute run at --scale 0.2 on the loaded machine.
KEY_WALK_TIMEOUT_S = 600.0
DRAIN_TIMEOUT_S = 900.0
DRAIN_STALL_S = 90.0

Say = Callable[[str], None]


def run(plan: SoakPlan, settings: Settings, say: Say) -> report.SoakReport:
    """Start the servers (private unless `plan.private_servers` is False), run, report."""
    plan.validate()
    root = f"soak{uuid.uuid4().hex[:8]}"
    db_name = f"smartcity_soak_{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as stack:
        broker: PrivateMosquitto | None = None
        database: PrivatePostgres | None = None
        if plan.private_servers:
            say("starting a private Mosquitto (deploy/mosquitto config) and PostgreSQL …")
            broker = stack.enter_context(PrivateMosquitto.tuned())
            database = stack.enter_context(PrivatePostgres())
            admin, host, port = database.conninfo, broker.host, broker.port
        else:
            admin = with_database(settings.database_conninfo, "postgres")
            host, port = settings.mqtt_host, settings.mqtt_port
        s = settings.model_copy(
            update={
                "database_url": with_database(admin, db_name),
                "mqtt_host": host,
                "mqtt_port": port,
                "mqtt_topic_root": root,
                "ingest_client_id": f"soak-ingest-{root}",
            }
        )
        stack.enter_context(_database(admin, db_name))
        migrate(s)
        if not plan.private_servers:
            stack.callback(_discard_sessions, s)
        return _run(plan, s, broker, database, say)
    raise AssertionError("unreachable")  # pragma: no cover - the with block returns


@contextlib.contextmanager
def _database(admin: str, name: str) -> Iterator[None]:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _discard_sessions(s: Settings) -> None:
    """Remove the ingest workers' persistent sessions from a broker that is not ours."""
    for n in range(INGEST_WORKERS):
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{s.ingest_client_id}-{n}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0
        client.connect(s.mqtt_host, s.mqtt_port, clean_start=True, properties=props)
        client.loop_start()
        client.disconnect()
        client.loop_stop()


def _wait_ingest(s: Settings, ingest_alive: Callable[[], bool]) -> None:
    """Until a reading published now is stored: from then on the ingest's shared subscription
    exists and the broker keeps every message for it (readiness readings are not counted)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    with (
        AckedPublisher(s.mqtt_host, s.mqtt_port, f"soak-ready-{s.mqtt_topic_root}") as pub,
        psycopg.connect(s.database_conninfo, autocommit=True) as conn,
    ):
        i = 0
        while time.monotonic() < deadline:
            if not ingest_alive():
                raise SoakError("the ingest exited while starting; see its log above")
            pub.publish(
                topics.meter_reading(s.mqtt_topic_root, "astana", count.READY_DEVICE),
                meter_payload(count.READY_DEVICE, int(time.time() * 1000), float(i)),
            )
            i += 1
            row = conn.execute(
                "SELECT 1 FROM meter_readings WHERE meter_id = %s LIMIT 1", (count.READY_DEVICE,)
            ).fetchone()
            if row:
                return
            time.sleep(0.5)
    raise SoakError(f"the ingest stored nothing within {READY_TIMEOUT_S:g} s of starting")


def _run(
    plan: SoakPlan,
    s: Settings,
    broker: PrivateMosquitto | None,
    database: PrivatePostgres | None,
    say: Say,
) -> report.SoakReport:
    conninfo = s.database_conninfo
    stop = threading.Event()
    keys_dir = tempfile.TemporaryDirectory(prefix="smartcity-soak-")
    # The simulators build their fleets while the ingest and the API start, and publish only
    # once both are up; their event time starts then (`_event_start`), so it is the wall clock.
    specs = [
        SimSpec(
            f,
            _event_start(plan),
            plan.speed,
            plan.duration_s * plan.speed,
            keys_path=str(Path(keys_dir.name) / f"{f.city}.tsv"),
            faults_per_kind=plan.device_faults_per_kind,
            faults_path=str(Path(keys_dir.name) / f"{f.city}.faults.jsonl"),
            arrivals_path=str(Path(keys_dir.name) / f"{f.city}.arrivals.csv"),
        )
        for f in plan.fleets
        if f.lamps + f.meters + f.buses
    ]
    # The tracker follows buses on the feed named after their city: the network each
    # simulator generates, imported as the operator would (`smartcity gtfs import`).
    _import_networks(conninfo, specs, Path(keys_dir.name))
    truth.create_predictions_table(conninfo)
    sims = Simulators(specs, s)
    sims.start()
    ingest = start_ingest(s)
    api_port = free_port()
    api = start_api(s, api_port)
    try:
        _wait_ingest(s, lambda: ingest.poll() is None)
        base = f"http://127.0.0.1:{api_port}"
        _wait_ready(base, api)
        say(f"ingest ({INGEST_WORKERS} workers) and API up; database {conninfo}")
        sims.wait_ready(READY_TIMEOUT_S * 5)
        say("simulators built their fleets; go")
        event_start = _event_start(plan)
        sims.go(event_start)
        t0, t0_wall = time.monotonic(), time.time()
        load = ApiLoad(base, conninfo, list(plan.cities), plan.api_rate_per_s, t0)
        probe = LagProbe(s.mqtt_host, s.mqtt_port, s.mqtt_topic_root, plan.probe_rate_per_s)
        api_cpu_at_go = _cpu_s(api.pid)
        load.start()
        probe.start()
        predictions = truth.PredictionSampler(
            conninfo, truth.wall_to_event(event_start, plan.speed, t0_wall)
        )

        def roles() -> dict[str, int]:
            found: dict[str, int] = {}
            for name, server in (("broker", broker), ("postgres", database)):
                if server is not None and server.pid is not None:
                    found[name] = server.pid
            found["ingest-supervisor"] = ingest.pid
            for n, worker in ingest_workers(ingest).items():
                found[f"ingest-worker-{n}"] = worker.pid
            found["api"] = api.pid
            for city, pid in sims.pids().items():
                found[f"sim-{city}"] = pid
            return found

        totals = plan.totals
        say(
            f"soak {plan.duration_s:g} s: {totals['lamps']:,} lamps, {totals['meters']:,} "
            f"meters, {totals['buses']:,} buses in {', '.join(plan.cities)} (speed ×"
            f"{plan.speed:g}); API {plan.api_rate_per_s:g} req/s; faults at "
            + ", ".join(f"{k} {t:.0f} s" for k, t in plan.fault_times_s().items())
        )
        ctx = FaultContext(
            t0=t0,
            root=s.mqtt_topic_root,
            mqtt_host=s.mqtt_host,
            mqtt_port=s.mqtt_port,
            ingest=ingest,
            broker=broker,
            database=database,
            db_pause_s=plan.db_pause_s,
            storm_clients=plan.storm_clients,
            malformed_messages=plan.malformed_messages,
            stop=stop,
        )
        faults: list[FaultRecord] = []
        with MemorySampler(roles, plan.sample_every_s, t0) as sampler, predictions:
            for kind, at_s in plan.fault_times_s().items():
                _sleep_until(t0 + at_s, ingest, api)
                record = inject(kind, ctx)
                faults.append(record)
                say(
                    f"{record.start_s:7.1f} s  {kind}: "
                    + ("injected" if record.injected else "NOT injected")
                    + f" ({record.end_s - record.start_s:.1f} s) {record.detail}"
                )
            _sleep_until(t0 + plan.duration_s, ingest, api)
            say(f"{time.monotonic() - t0:7.1f} s  run over; waiting for the simulators")
            overrun = max(SIM_OVERRUN_MIN_S, SIM_OVERRUN_SHARE * plan.duration_s)
            overrun += KEY_WALK_TIMEOUT_S
            results = sims.wait(overrun)
            sampler.sample_once()
        load.stop()
        api_cpu_s = _cpu_s(api.pid) - api_cpu_at_go
        probe.stop()
        if probe.error is not None:
            raise SoakError(f"the lag probe failed: {probe.error}")
        for city, result in results.items():
            if result.acknowledged != result.sent:
                raise SoakError(
                    f"the simulator for {city} got {result.acknowledged:,} of {result.sent:,} "
                    "messages acknowledged; the published set is unknown, so no count is exact"
                )
        say("regenerating every published reading to look it up in the database …")
        acked: list[Hashable] = [*probe.acked, *ctx.acked_keys]
        count.load_expected(conninfo, specs, acked)
        drain_s = count.wait_for_drain(conninfo, DRAIN_TIMEOUT_S, DRAIN_STALL_S)
        say(f"ingest drained {drain_s:.0f} s after the run; counting")
        code = stop_process(ingest)
        if code != 0:
            say(f"the ingest exited with {code} on SIGTERM")
        stop_process(api)
        return _report(
            plan,
            conninfo,
            specs,
            s.mqtt_topic_root,
            t0_wall,
            faults,
            load,
            sampler.samples,
            results,
            drain_s,
            predictions,
            api_cpu_s,
        )
    finally:
        stop.set()
        sims.stop()
        stop_process(ingest)
        stop_process(api)
        keys_dir.cleanup()


def _cpu_s(pid: int) -> float:
    cpu = psutil.Process(pid).cpu_times()  # type: ignore[no-untyped-call]
    return float(cpu.user + cpu.system)


def _event_start(plan: SoakPlan) -> datetime:
    """Simulated time 0: now, minus the accelerated span for --speed > 1 (so that event time
    reaches now at the end: the ingest refuses readings from the future)."""
    return datetime.now(UTC) - timedelta(seconds=(plan.speed - 1) * plan.duration_s)


def _import_networks(conninfo: str, specs: list[SimSpec], where: Path) -> None:
    from simulators.gtfs import generate, write_zip
    from smartcity.cities import get_city
    from smartcity.soak.procs import scenario_options
    from smartcity.transit.gtfs_import import import_feed

    for spec in specs:
        if not spec.fleet.buses:
            continue
        options = scenario_options(spec.fleet)
        path = where / f"{spec.fleet.city}-gtfs.zip"
        network = generate(
            get_city(spec.fleet.city),
            seed=options.seed,
            routes=options.routes,
            night_service=options.night_service,
        )
        write_zip(network, path)
        import_feed(conninfo, path, feed_id=spec.fleet.city)


def _sleep_until(when: float, *children: subprocess.Popen[bytes]) -> None:
    while (left := when - time.monotonic()) > 0:
        for child in children:
            if child.poll() is not None:
                raise SoakError(f"{child.args!r} exited with {child.returncode} mid-run")
        time.sleep(min(left, 0.5))


def _report(
    plan: SoakPlan,
    conninfo: str,
    specs: list[SimSpec],
    root: str,
    t0_wall: float,
    faults: list[FaultRecord],
    load: ApiLoad,
    samples: list[MemorySample],
    results: dict[str, RunResult],
    drain_s: float,
    predictions: truth.PredictionSampler,
    api_cpu_s: float,
) -> report.SoakReport:
    bucket_s = max(5.0, plan.duration_s / 120)
    feeds = count.count(conninfo)
    lag_series, (lag_p50, lag_p99) = count.probe_lag(conninfo, t0_wall, bucket_s)
    api = report.api_figures(plan, load.requests, faults, bucket_s)
    memory = report.memory_figures(plan, samples)
    grown = [m for m in memory if m.growth_pct is not None and not m.total]
    worst = max(grown, key=lambda m: m.growth_pct or 0.0) if grown else None
    # System fault windows in event time (the simulators' clock), for the scores to say what
    # happened inside them.
    start = specs[0].start
    windows = [
        (start + timedelta(seconds=a * plan.speed), start + timedelta(seconds=b * plan.speed))
        for a, b in report.fault_windows(plan, faults)
    ]
    alerts, alerts_note = scores.score("alerts", conninfo, specs, root, windows)
    eta, eta_note = scores.score("eta", conninfo, specs, root, windows)
    if eta is not None:
        eta["samples_taken"], eta["samples_failed"] = predictions.samples, predictions.failed
    published = sum(f.published for f in feeds.values())
    lost = sum(f.lost for f in feeds.values())
    duplicates = sum(f.duplicates for f in feeds.values())
    burst = next((f for f in faults if f.kind == "malformed_burst"), None)

    def num(v: float) -> float | None:
        return None if math.isnan(v) else round(v, 1)

    sims: dict[str, dict[str, object]] = {}
    for city, r in results.items():
        sims[city] = {
            "sent": r.sent,
            "acknowledged": r.acknowledged,
            "rate_per_s": round(r.stats.rate_per_s, 1),
            "configured_rate_per_s": round(r.configured_rate_per_s, 1),
            "max_lag_s": round(r.stats.max_lag_s, 2),
            "by_kind": r.stats.by_kind,
        }
    return report.SoakReport(
        published=published,
        stored=sum(f.stored for f in feeds.values()),
        lost=lost,
        duplicates=duplicates,
        unexpected_rows=sum(f.unexpected for f in feeds.values()),
        memory_growth_pct=worst.growth_pct if worst else None,
        memory_growth_worst_role=worst.role if worst else None,
        api_p99_ms=api.p99_ms,
        api_baseline_p99_ms=api.baseline_p99_ms,
        api_outside_faults_p99_ms=api.outside_faults_p99_ms,
        api_outside_to_baseline=api.outside_to_baseline,
        lag_p50_ms=num(lag_p50),
        lag_p99_ms=num(lag_p99),
        faults=[
            {
                "kind": f.kind,
                "start_s": f.start_s,
                "end_s": f.end_s,
                "injected": f.injected,
                "detail": f.detail,
            }
            for f in faults
        ],
        lost_by_time=count.lost_over_time(conninfo, t0_wall, bucket_s) if lost else [],
        feeds={t: vars(f) for t, f in feeds.items()},
        rejected_by_reason=count.rejected_by_reason(conninfo),
        malformed_burst={
            "acknowledged": int(str(burst.detail.get("acknowledged", 0))) if burst else 0,
            "dead_letters": count.burst_dead_letters(conninfo),
        },
        api={
            "requests": api.requests,
            "errors": api.errors,
            "by_route": api.by_route,
            "p99_ms_by_route": api.p99_ms_by_route,
            "in_fault_windows_p99_ms": api.in_faults_p99_ms,
            "baseline_p50_ms": api.baseline_p50_ms,
            "outside_faults_p50_ms": api.outside_faults_p50_ms,
            "requests_baseline_outside_inside": list(api.window_requests),
            # CPU the API process used per request over the run (user + system): what a
            # request costs whatever else loads the machine.
            "cpu_s": round(api_cpu_s, 1),
            "cpu_ms_per_request": round(api_cpu_s * 1000 / api.requests, 1)
            if api.requests
            else None,
            "refresh_errors": load.refresh_errors,
        },
        memory=[vars(m) for m in memory],
        simulators=sims,
        drain_s=round(drain_s, 1),
        alerts=alerts,
        eta=eta,
        acceptance=report.acceptance(
            lost, duplicates, worst.growth_pct if worst else None, api.outside_to_baseline, faults
        ),
        config={
            "duration_s": plan.duration_s,
            "scale": plan.scale,
            "speed": plan.speed,
            "fleets": plan.totals,
            "cities": list(plan.cities),
            "ingest_workers": INGEST_WORKERS,
            "api_rate_per_s": plan.api_rate_per_s,
            "probe_rate_per_s": plan.probe_rate_per_s,
            "storm_clients": plan.storm_clients,
            "malformed_messages": plan.malformed_messages,
            "device_faults_per_kind": plan.device_faults_per_kind,
            "db_pause_s": plan.db_pause_s,
            "private_servers": plan.private_servers,
            "settle_s": plan.settle_s,
            "scores": {"alerts": alerts_note, "eta": eta_note},
            **report.machine(),
        },
        series={
            "committed": count.committed_rate(conninfo, t0_wall, bucket_s),
            "lag": lag_series,
            "api": api.series,
            "memory": [(m.t_s, m.role, m.pid, m.rss_bytes) for m in samples],
        },
    )
