"""A simulation run from start to end: the scenario's stream, paced on the simulated clock,
to the broker and/or a recording, with the fault log, the ground truth and lamp commands.

One process publishes on one MQTT connection; `workers > 1` splits the devices into shards
(every n-th device), one process and one connection each, because one Python process cannot
generate and publish a city's full rate on its own (see docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import csv
import multiprocessing as mp
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import IO

from simulators.clock import SimClock
from simulators.faults import FaultLog
from simulators.publish import Publisher
from simulators.recording import RecordingWriter
from simulators.scenario import Scenario, ScenarioOptions
from simulators.stream import RunStats, drive
from simulators.transit import GROUND_TRUTH_FIELDS
from smartcity import topics
from smartcity.settings import Settings


@dataclass
class RunPlan:
    options: ScenarioOptions
    start: datetime
    speed: float | None  # simulated seconds per real second; None = as fast as possible
    duration_s: float | None
    publish: bool = True
    record: Path | None = None
    fault_log: Path | None = None
    ground_truth: Path | None = None
    workers: int = 1
    client_id: str = "smartcity-sim"

    def validate(self) -> None:
        self.options.validate()
        if not self.publish and self.record is None:
            raise ValueError("--no-publish needs --record FILE (otherwise nothing is produced)")
        if self.workers < 1:
            raise ValueError("--workers must be at least 1")
        if self.workers > 1 and (self.record or not self.publish):
            raise ValueError("--workers > 1 publishes only; record with one worker")
        if self.speed is None and self.duration_s is None:
            raise ValueError("--speed max needs --duration (an unpaced run must end)")


@dataclass
class RunResult:
    stats: RunStats
    sent: int = 0
    acknowledged: int = 0
    configured_rate_per_s: float = 0.0
    commands_applied: int = 0
    commands_rejected: list[str] = field(default_factory=list)
    workers: int = 1


@contextlib.contextmanager
def _text_file(path: Path | None) -> Iterator[IO[str] | None]:
    if path is None:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        yield fh


def run(
    plan: RunPlan,
    settings: Settings,
    stop: threading.Event,
    progress: Callable[[RunStats], None] | None = None,
    announce: Callable[[Scenario], None] | None = None,
) -> RunResult:
    """Run the plan to its end (duration reached or `stop` set); `announce` is shown the
    scenario once it is built, before anything is published."""
    plan.validate()
    if plan.workers > 1:
        if announce is not None:
            announce(Scenario(plan.options, start=plan.start, topic_root=settings.mqtt_topic_root))
        return _run_workers(plan, settings, stop, progress)
    root = settings.mqtt_topic_root
    with (
        _text_file(plan.fault_log) as faults_out,
        _text_file(plan.ground_truth) as truth_out,
        contextlib.ExitStack() as stack,
    ):
        truth_writer = None
        if truth_out is not None:
            truth_writer = csv.DictWriter(truth_out, GROUND_TRUTH_FIELDS, lineterminator="\n")
            truth_writer.writeheader()
        scenario = Scenario(
            plan.options,
            start=plan.start,
            topic_root=root,
            fault_log=FaultLog(faults_out) if faults_out is not None else None,
            ground_truth=truth_writer.writerow if truth_writer is not None else None,
        )
        if announce is not None:
            announce(scenario)
        sinks: list[Callable[[float, str, bytes], None]] = []
        recorder = None
        if plan.record is not None:
            plan.record.parent.mkdir(parents=True, exist_ok=True)
            recorder = stack.enter_context(
                RecordingWriter(plan.record, _metadata(plan, scenario, root))
            )
            start_s = plan.start.timestamp()
            rec = recorder

            def record(t_s: float, topic: str, payload: bytes) -> None:
                rec.write(start_s + t_s, topic, payload)

            sinks.append(record)
        publisher = None
        if plan.publish:
            publisher = stack.enter_context(Publisher(settings, client_id=plan.client_id))
            pub = publisher
            sinks.append(lambda _t, topic, payload: pub.publish(topic, payload))
            fleet = scenario.lighting
            if fleet is not None:
                # Lamps obey the API's commands: the paho thread only queues them.
                pub.subscribe(
                    topics.lamp_command(root, fleet.city.slug, "+"),
                    lambda topic, payload: fleet.commands.put((topic.split("/")[-2], payload)),
                )
        sink = sinks[0] if len(sinks) == 1 else _fan_out(sinks)
        clock = SimClock(plan.start, plan.speed) if plan.speed is not None else None
        stats = drive(
            scenario.messages(plan.duration_s), sink, clock=clock, stop=stop, progress=progress
        )
        result = RunResult(
            stats, configured_rate_per_s=scenario.messages_per_sim_s() * (plan.speed or 0)
        )
        if publisher is not None:
            publisher.flush()
            result.sent, result.acknowledged = publisher.sent, publisher.acknowledged
        if scenario.lighting is not None:
            result.commands_applied = scenario.lighting.commands_applied
            result.commands_rejected = scenario.lighting.commands_rejected
        return result


def _fan_out(
    sinks: list[Callable[[float, str, bytes], None]],
) -> Callable[[float, str, bytes], None]:
    def sink(t_s: float, topic: str, payload: bytes) -> None:
        for s in sinks:
            s(t_s, topic, payload)

    return sink


def _metadata(plan: RunPlan, scenario: Scenario, root: str) -> dict[str, object]:
    o = plan.options
    return {
        "format": "SCREC1",
        "made_by": "smartcity simulate",
        "start": plan.start.astimezone(UTC).isoformat(),
        "topic_root": root,
        "seed": o.seed,
        "scenario": scenario.describe(),
        "faults": list(o.faults),
        "malformed_rate": o.malformed_rate,
    }


def _worker(
    plan: RunPlan,
    settings: Settings,
    k: int,
    reports: Queue[tuple[str, int, object]],
    stop: Synchronized[int],
) -> None:
    shard_plan = replace(
        plan,
        options=replace(plan.options, shard=(k, plan.workers)),
        workers=1,
        fault_log=plan.fault_log.with_suffix(f".{k}{plan.fault_log.suffix}")
        if plan.fault_log
        else None,
        ground_truth=(
            plan.ground_truth.with_suffix(f".{k}{plan.ground_truth.suffix}")
            if plan.ground_truth
            else None
        ),
        client_id=f"{plan.client_id}-w{k}",
    )
    local_stop = threading.Event()

    def relay() -> None:
        # A shared flag polled, not a multiprocessing.Event: setting an Event whose waiter
        # process has exited blocks the parent forever.
        while not stop.value:
            time.sleep(0.2)
        local_stop.set()

    # Daemon: it only waits; it ends with the worker process.
    threading.Thread(target=relay, name="stop-relay", daemon=True).start()
    result = run(shard_plan, settings, local_stop, lambda s: reports.put(("progress", k, s)))
    reports.put(("done", k, result))


def _run_workers(
    plan: RunPlan,
    settings: Settings,
    stop: threading.Event,
    progress: Callable[[RunStats], None] | None,
) -> RunResult:
    ctx = mp.get_context("fork")
    reports: Queue[tuple[str, int, object]] = ctx.Queue()
    child_stop: Synchronized[int] = ctx.Value("b", 0)
    procs = [
        ctx.Process(target=_worker, args=(plan, settings, k, reports, child_stop), name=f"sim-w{k}")
        for k in range(plan.workers)
    ]
    for p in procs:
        p.start()
    latest: dict[int, RunStats] = {}
    done: dict[int, RunResult] = {}
    started = time.monotonic()
    try:
        while len(done) < len(procs):
            if stop.is_set():
                child_stop.value = 1
            try:
                _kind, k, payload = reports.get(timeout=0.5)
            except queue.Empty:
                if not any(p.is_alive() for p in procs) and reports.empty():
                    break
                continue
            if isinstance(payload, RunStats):
                latest[k] = payload
            elif isinstance(payload, RunResult):
                done[k] = payload
                latest[k] = payload.stats
            if progress is not None and latest:
                progress(_combine(list(latest.values()), time.monotonic() - started))
    finally:
        child_stop.value = 1
        for p in procs:
            p.join(30)
    if len(done) < len(procs):
        raise RuntimeError(
            f"{len(procs) - len(done)} simulator worker(s) died; see their errors above"
        )
    results = list(done.values())
    total = RunResult(
        _combine([r.stats for r in results], max(r.stats.real_seconds for r in results)),
        sent=sum(r.sent for r in results),
        acknowledged=sum(r.acknowledged for r in results),
        configured_rate_per_s=sum(r.configured_rate_per_s for r in results) / len(results),
        commands_applied=sum(r.commands_applied for r in results),
        workers=len(results),
    )
    return total


def _combine(parts: list[RunStats], real_seconds: float) -> RunStats:
    out = RunStats(real_seconds=real_seconds)
    for s in parts:
        out.messages += s.messages
        out.sim_seconds = max(out.sim_seconds, s.sim_seconds)
        out.max_lag_s = max(out.max_lag_s, s.max_lag_s)
        out.lag_s = max(out.lag_s, s.lag_s)
        for kind, n in s.by_kind.items():
            out.by_kind[kind] = out.by_kind.get(kind, 0) + n
    return out
