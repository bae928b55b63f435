"""The long-running processes of a soak, each started as a user starts it, and their memory.

* the ingest: `smartcity ingest --workers 2` (a supervisor and two worker processes);
* the API: `smartcity api` on a free port;
* the simulators: one process per city running `simulators.live.run` (what `smartcity
  simulate all` runs), so that its result (messages sent and acknowledged) comes back as data;
* `MemorySampler`: RSS of each of them, the broker and PostgreSQL, every few seconds (psutil).

Every child dies with the soak (PR_SET_PDEATHSIG, as `smartcity demo` does), so an interrupted
soak leaves nothing running.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from typing import TYPE_CHECKING

import psutil

from smartcity.cli.demo import _die_with_parent
from smartcity.settings import Settings
from smartcity.soak import SoakError
from smartcity.soak.plan import CityFleet

if TYPE_CHECKING:
    from simulators.live import RunResult
    from simulators.scenario import Scenario, ScenarioOptions

STOP_GRACE_S = 60.0
# A simulator process reports this once its scenario is built, just before it connects and
# starts its clock (building a city's fleets and transit network takes seconds).
READY = "ready"
GATE_TIMEOUT_S = 900.0
INGEST_WORKERS = 2
INGEST_SHARE_GROUP = "soak"


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a child process: ours without SMARTCITY_*, then `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCITY_")}
    env.update(
        SMARTCITY_DATABASE_URL=settings.database_url,
        SMARTCITY_MQTT_HOST=settings.mqtt_host,
        SMARTCITY_MQTT_PORT=str(settings.mqtt_port),
        SMARTCITY_MQTT_TOPIC_ROOT=settings.mqtt_topic_root,
        SMARTCITY_LOG_LEVEL="WARNING",
        **extra,
    )
    return env


def start_command(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "smartcity", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )


def start_ingest(settings: Settings) -> subprocess.Popen[bytes]:
    env = child_env(
        settings,
        SMARTCITY_INGEST_CLIENT_ID=settings.ingest_client_id,
        SMARTCITY_INGEST_SHARE_GROUP=INGEST_SHARE_GROUP,
        SMARTCITY_INGEST_METRICS_PORT="0",
    )
    return start_command(["ingest", "--workers", str(INGEST_WORKERS)], env)


def start_api(settings: Settings, port: int) -> subprocess.Popen[bytes]:
    env = child_env(
        settings,
        # Every request of the soak comes from one address; the public rate limit would turn
        # the resident load into 429s, which is not what the soak measures.
        SMARTCITY_API_RATE_LIMIT_PER_S="1000000000",
        SMARTCITY_API_RATE_LIMIT_BURST="1000000000",
        SMARTCITY_API_CLIENT_ID="soak-api",
    )
    return start_command(["api", "--host", "127.0.0.1", "--port", str(port)], env)


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = STOP_GRACE_S) -> int:
    """SIGTERM, wait, SIGKILL if it does not stop; returns the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def ingest_workers(supervisor: subprocess.Popen[bytes]) -> dict[int, psutil.Process]:
    """Worker number → process, for the workers the supervisor runs now."""
    found: dict[int, psutil.Process] = {}
    try:
        children = psutil.Process(supervisor.pid).children()  # type: ignore[no-untyped-call]
    except psutil.NoSuchProcess:
        return found
    for child in children:
        try:
            cmd = child.cmdline()
        except psutil.Error:
            continue
        if "--worker" in cmd:
            found[int(cmd[cmd.index("--worker") + 1])] = child
    return found


# -- simulators -------------------------------------------------------------------------------


@dataclass
class SimSpec:
    fleet: CityFleet
    start: datetime
    speed: float
    duration_s: float  # simulated seconds
    keys_path: str  # where the child writes the keys of every row its run must produce
    # Device faults the soak injects per kind and city (smartcity.soak.truth), and where the
    # key walk writes them and the buses' ground-truth stop visits.
    faults_per_kind: int = 0
    faults_path: str = ""
    arrivals_path: str = ""


def scenario_options(fleet: CityFleet) -> ScenarioOptions:
    """One city's fleets, every feed in that city (the simulators' defaults otherwise)."""
    from simulators.scenario import ScenarioOptions

    return ScenarioOptions(
        lamps=fleet.lamps,
        meters=fleet.meters,
        buses=fleet.buses,
        lighting_city=fleet.city,
        metering_city=fleet.city,
        transit_city=fleet.city,
        # A generated network of about ten buses per route (the default 30 routes for a small
        # fleet only costs start-up time).
        routes=min(30, max(2, fleet.buses // 10)),
        # A soak runs at whatever hour it is started; buses that stop at 23:00 would leave
        # the transit feed, its tracker and its ETA score out of a run started at night.
        night_service=True,
        seed=fleet.seed,
    )


def _run_city(
    spec: SimSpec,
    settings: Settings,
    out: Queue[tuple[str, object]],
    gate: Synchronized[int],
    start_epoch: Synchronized[float],
) -> None:
    """Child process: build the scenario, say so, wait for the gate (the ingest is
    subscribed), take the start time the soak gives with it, publish to the end of the
    duration, then write the keys of every row the run must have produced.

    The start is fixed at the gate, not before the build, so that event time is the wall
    clock (at speed 1) from the first message on: the tracker predicts from the wall clock,
    and a start fixed before the build would put every reading a minute in the past."""
    from simulators.live import RunPlan, run
    from smartcity.soak.count import write_keys
    from smartcity.soak.truth import plan_device_faults

    city = spec.fleet.city
    plan = RunPlan(
        scenario_options(spec.fleet),
        start=spec.start,
        speed=spec.speed,
        duration_s=spec.duration_s,
        client_id=f"soak-sim-{city}",
    )

    def ready(scenario: Scenario) -> None:
        out.put((city, READY))
        deadline = time.monotonic() + GATE_TIMEOUT_S
        while not gate.value:
            if time.monotonic() > deadline:
                raise SoakError(f"simulator {city}: the soak never opened the gate")
            time.sleep(0.05)
        # `run` starts its clock and the fleets' streams after this returns.
        spec.start = plan.start = scenario.start = datetime.fromtimestamp(start_epoch.value, UTC)
        plan_device_faults(scenario, spec)  # the same faults the key walk applies

    try:
        result: object = run(plan, settings, threading.Event(), announce=ready)
        write_keys(spec, settings.mqtt_topic_root)
    except BaseException as exc:
        result = f"{type(exc).__name__}: {exc}"
    out.put((city, result))


@dataclass
class Simulators:
    """One process per city (spawned: the soak has threads, which fork does not copy).

    `start` spawns them (each builds its scenario, which takes a while); `wait_ready` waits
    until all are built; `go` lets them publish, on one signal."""

    specs: list[SimSpec]
    settings: Settings
    procs: dict[str, mp.process.BaseProcess] = field(default_factory=dict)
    results: dict[str, RunResult] = field(default_factory=dict)

    def start(self) -> None:
        ctx = mp.get_context("spawn")
        self._queue: Queue[tuple[str, object]] = ctx.Queue()
        self._gate: Synchronized[int] = ctx.Value("b", 0)
        self._start: Synchronized[float] = ctx.Value("d", 0.0)
        for spec in self.specs:
            p = ctx.Process(
                target=_run_city,
                args=(spec, self.settings, self._queue, self._gate, self._start),
                name=f"soak-sim-{spec.fleet.city}",
                daemon=True,
            )
            p.start()
            self.procs[spec.fleet.city] = p

    def wait_ready(self, timeout_s: float) -> None:
        """Until every city has built its scenario (its clock starts after `go`)."""
        ready: set[str] = set()
        deadline = time.monotonic() + timeout_s
        while ready != set(self.procs):
            try:
                city, what = self._queue.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise SoakError(
                    f"simulators {sorted(set(self.procs) - ready)} were not ready within "
                    f"{timeout_s:g} s"
                ) from None
            if what != READY:
                raise SoakError(f"the simulator for {city} failed while starting: {what}")
            ready.add(city)

    def go(self, start: datetime) -> None:
        """Let every city publish, its simulated time starting at `start` (also set in the
        specs here, so the parent's accounting uses the same)."""
        for spec in self.specs:
            spec.start = start
        self._start.value = start.timestamp()
        self._gate.value = 1

    def pids(self) -> dict[str, int]:
        return {city: p.pid for city, p in self.procs.items() if p.pid is not None}

    def wait(self, timeout_s: float) -> dict[str, RunResult]:
        """Wait for every city to finish; SoakError if one failed or did not finish in time."""
        from simulators.live import RunResult

        deadline = time.monotonic() + timeout_s
        while len(self.results) < len(self.procs):
            missing = sorted(set(self.procs) - set(self.results))
            if time.monotonic() > deadline:
                raise SoakError(
                    f"simulators {missing} did not finish within {timeout_s:g} s of the planned "
                    "end: the machine cannot sustain this --scale (try a smaller one)"
                )
            gone = all(not self.procs[c].is_alive() for c in missing)
            try:
                # A dead process's last report may still be in the pipe: one more wait.
                city, result = self._queue.get(timeout=3.0 if gone else 1.0)
            except queue.Empty:
                if gone:
                    raise SoakError(f"simulators {missing} exited without a result") from None
                continue
            if not isinstance(result, RunResult):
                raise SoakError(f"the simulator for {city} failed: {result}")
            self.results[city] = result
        for p in self.procs.values():
            p.join(10)
        return self.results

    def stop(self) -> None:
        for p in self.procs.values():
            if p.is_alive():
                p.terminate()
                p.join(10)


# -- memory -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemorySample:
    t_s: float
    role: str
    pid: int
    rss_bytes: int


# The role under which each PostgreSQL process (postmaster and backends) is sampled on its own.
POSTGRES_PROCESS = "postgres-process"


def _postgres_processes(root: psutil.Process) -> dict[int, int]:
    """PostgreSQL: pid → the postmaster's RSS, and each backend's private pages (RSS − shared).

    Backends map the shared buffers; counting those in every backend's RSS would show growth
    as they touch more of the cache, which is not a leak."""
    out = {root.pid: int(root.memory_info().rss)}
    for child in root.children():  # type: ignore[no-untyped-call]
        try:
            mi = child.memory_info()
        except psutil.Error:
            continue
        out[child.pid] = max(0, int(mi.rss) - int(getattr(mi, "shared", 0)))
    return out


class MemorySampler:
    """Samples the RSS of named processes every `every_s` in a thread the owner stops.

    `roles()` is called at each sample, so processes that are restarted (a killed worker, the
    broker) are followed under their role with their new pid."""

    def __init__(self, roles: Callable[[], dict[str, int]], every_s: float, t0: float) -> None:
        self._roles = roles
        self._every_s = every_s
        self._t0 = t0
        self.samples: list[MemorySample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-memory", daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def sample_once(self) -> None:
        roles = self._roles()
        now = time.monotonic() - self._t0
        for role, pid in roles.items():
            try:
                proc = psutil.Process(pid)  # type: ignore[no-untyped-call]
                # An exited process not yet reaped (a finished simulator) has no memory.
                if proc.status() == psutil.STATUS_ZOMBIE:  # type: ignore[no-untyped-call]
                    continue
                if role == "postgres":
                    # The total (for the plot: it steps when a pool opens connections) and
                    # every process, whose own growth is what the acceptance asks about.
                    each = _postgres_processes(proc)
                    rss = sum(each.values())
                    for child_pid, child_bytes in each.items():
                        self.samples.append(
                            MemorySample(round(now, 2), POSTGRES_PROCESS, child_pid, child_bytes)
                        )
                else:
                    rss = proc.memory_info().rss
            except psutil.Error:
                continue
            self.samples.append(MemorySample(round(now, 2), role, pid, rss))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self._every_s)
