"""The soak's figures from its raw observations: API latency and memory over time, the
acceptance checks, the JSON object, the table and the plot.

Definitions (docs/soak.md says the same for readers):

* **API p99 outside fault windows** — the 99th percentile latency of requests scheduled after
  the baseline and not inside any fault window; a fault window runs from the fault's start to
  its end plus a settle time (`SoakPlan.settle_s`: the ingest drains the backlog the fault
  built up). Compared with the **baseline** p99: the requests scheduled in [0.1 D, 0.25 D),
  before any fault. A request that got no answer counts with its full wait.
* **Memory growth** — per role (broker, postgres, ingest supervisor and workers, API,
  simulators), on the process holding the role at the end: median RSS over the last tenth of
  the run vs median RSS over the tenth after its warm-up (the plan's warm-up, or as long after
  a restart). PostgreSQL counts its backends' private pages only (see procs.MemorySampler),
  per process (the worst long-running one counts) and in total (shown, with the number of
  processes: a pool opening connections after a fault is not a leak).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from smartcity.soak.faults import FaultRecord
from smartcity.soak.plan import END_WINDOW_SHARE, WARMUP_SHARE, SoakPlan
from smartcity.soak.procs import POSTGRES_PROCESS, MemorySample
from smartcity.soak.traffic import Request

MIB = 1024 * 1024


def _p(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def fault_windows(plan: SoakPlan, faults: list[FaultRecord]) -> list[tuple[float, float]]:
    return [(f.start_s, f.end_s + plan.settle_s) for f in faults]


def _inside(t: float, windows: list[tuple[float, float]]) -> bool:
    return any(a <= t < b for a, b in windows)


@dataclass
class ApiFigures:
    requests: int
    errors: int
    by_route: dict[str, int]
    p99_ms: float | None
    baseline_p99_ms: float | None
    outside_faults_p99_ms: float | None
    in_faults_p99_ms: float | None
    outside_to_baseline: float | None
    p99_ms_by_route: dict[str, float | None]
    series: list[tuple[float, float]]  # (bucket start s, p99 ms)
    # How many requests each p99 rests on: (baseline, outside fault windows, inside them).
    window_requests: tuple[int, int, int] = (0, 0, 0)
    baseline_p50_ms: float | None = None
    outside_faults_p50_ms: float | None = None


def api_figures(
    plan: SoakPlan, requests: list[Request], faults: list[FaultRecord], bucket_s: float
) -> ApiFigures:
    windows = fault_windows(plan, faults)
    b0, b1 = plan.baseline_window_s
    ms = [(r.t_s, r.latency_s * 1000) for r in requests]
    baseline = [v for t, v in ms if b0 <= t < b1]
    outside = [v for t, v in ms if t >= b1 and not _inside(t, windows)]
    inside = [v for t, v in ms if _inside(t, windows)]
    buckets: dict[float, list[float]] = {}
    for t, v in ms:
        buckets.setdefault(math.floor(t / bucket_s) * bucket_s, []).append(v)
    by_route: dict[str, int] = {}
    route_ms: dict[str, list[float]] = {}
    for r in requests:
        by_route[r.route] = by_route.get(r.route, 0) + 1
        route_ms.setdefault(r.route, []).append(r.latency_s * 1000)
    base_p99, out_p99 = _p(baseline, 99), _p(outside, 99)
    return ApiFigures(
        requests=len(requests),
        errors=sum(1 for r in requests if not 200 <= r.status < 300),
        by_route=by_route,
        p99_ms=_p([v for _, v in ms], 99),
        baseline_p99_ms=base_p99,
        outside_faults_p99_ms=out_p99,
        in_faults_p99_ms=_p(inside, 99),
        outside_to_baseline=round(out_p99 / base_p99, 2) if base_p99 and out_p99 else None,
        p99_ms_by_route={route: _p(v, 99) for route, v in sorted(route_ms.items())},
        series=[(b, float(np.percentile(v, 99))) for b, v in sorted(buckets.items())],
        window_requests=(len(baseline), len(outside), len(inside)),
        baseline_p50_ms=_p(baseline, 50),
        outside_faults_p50_ms=_p(outside, 50),
    )


@dataclass
class MemoryFigure:
    role: str
    pid: int
    start_mib: float | None
    end_mib: float | None
    growth_pct: float | None
    restarted: bool
    # A sum over processes (PostgreSQL's total), shown but not a process: not in the worst.
    total: bool = False
    processes: tuple[int, int] | None = None  # how many at the start and end windows


def memory_figures(plan: SoakPlan, samples: list[MemorySample]) -> list[MemoryFigure]:
    out: list[MemoryFigure] = []
    end0, end1 = plan.end_window_s
    tenth = END_WINDOW_SHARE * plan.duration_s
    restart_warmup_s = WARMUP_SHARE * plan.duration_s

    def median_mib(values: list[int]) -> float | None:
        return float(np.median(values)) / MIB if values else None

    def growth_of(start: float | None, end: float | None, warm: float) -> float | None:
        if start and end is not None and warm + tenth <= end0:
            return round((end - start) / start * 100, 2)
        return None

    for role in sorted({s.role for s in samples} - {POSTGRES_PROCESS}):
        mine = [s for s in samples if s.role == role]
        last_pid = mine[-1].pid
        own = [s for s in mine if s.pid == last_pid]
        born = own[0].t_s
        restarted = len({s.pid for s in mine}) > 1
        # A restarted process warms up again, for a quarter of the run (not a whole reporting
        # cycle, which would leave nothing to measure after a mid-run restart).
        warm = max(plan.warmup_s, born + restart_warmup_s) if restarted else plan.warmup_s
        start_mib = median_mib([s.rss_bytes for s in own if warm <= s.t_s < warm + tenth])
        end_mib = median_mib([s.rss_bytes for s in own if end0 <= s.t_s <= end1])
        out.append(
            MemoryFigure(
                role,
                last_pid,
                round(start_mib, 1) if start_mib else None,
                round(end_mib, 1) if end_mib else None,
                growth_of(start_mib, end_mib, warm),
                restarted,
            )
        )
    processes = [s for s in samples if s.role == POSTGRES_PROCESS]
    if processes:
        out = [_postgres_worst(plan, processes, growth_of, median_mib, tenth), *out]
        for fig in out:
            if fig.role == "postgres":
                fig.total = True
                fig.processes = _counts(plan, processes, tenth)
    return out


def _counts(plan: SoakPlan, samples: list[MemorySample], tenth: float) -> tuple[int, int]:
    end0, end1 = plan.end_window_s
    warm = plan.warmup_s
    start = {s.pid for s in samples if warm <= s.t_s < warm + tenth}
    end = {s.pid for s in samples if end0 <= s.t_s <= end1}
    return len(start), len(end)


def _postgres_worst(
    plan: SoakPlan,
    samples: list[MemorySample],
    growth_of: Callable[[float | None, float | None, float], float | None],
    median_mib: Callable[[list[int]], float | None],
    tenth: float,
) -> MemoryFigure:
    """PostgreSQL's worst long-running process: among the postmaster and the backends alive in
    both windows, the one that grew most (a backend opened later is a new connection, not
    growth; the total over all processes is shown beside it)."""
    end0, end1 = plan.end_window_s
    warm = plan.warmup_s
    worst: MemoryFigure | None = None
    for pid in sorted({s.pid for s in samples}):
        own = [s for s in samples if s.pid == pid]
        start_mib = median_mib([s.rss_bytes for s in own if warm <= s.t_s < warm + tenth])
        end_mib = median_mib([s.rss_bytes for s in own if end0 <= s.t_s <= end1])
        growth = growth_of(start_mib, end_mib, warm)
        if growth is None or (worst is not None and (worst.growth_pct or 0.0) >= growth):
            continue
        worst = MemoryFigure(
            "postgres (worst process)",
            pid,
            round(start_mib, 1) if start_mib else None,
            round(end_mib, 1) if end_mib else None,
            growth,
            False,
        )
    return worst or MemoryFigure("postgres (worst process)", 0, None, None, None, False)


@dataclass
class SoakReport:
    published: int
    stored: int
    lost: int
    duplicates: int
    unexpected_rows: int
    memory_growth_pct: float | None
    memory_growth_worst_role: str | None
    api_p99_ms: float | None
    api_baseline_p99_ms: float | None
    api_outside_faults_p99_ms: float | None
    api_outside_to_baseline: float | None
    lag_p50_ms: float | None
    lag_p99_ms: float | None
    faults: list[dict[str, Any]]
    # Lost readings by their event time (seconds since the start, bucketed): where loss is.
    lost_by_time: list[tuple[float, int]]
    feeds: dict[str, dict[str, int]]
    rejected_by_reason: dict[str, int]
    malformed_burst: dict[str, int]
    api: dict[str, Any]
    memory: list[dict[str, Any]]
    simulators: dict[str, dict[str, Any]]
    drain_s: float
    # Scores of the alert and ETA benchmarks (issue 6 and the transit issue) when their
    # scoring functions exist; None until then (see smartcity.soak.scores).
    alerts: dict[str, Any] | None
    eta: dict[str, Any] | None
    acceptance: dict[str, bool | None]
    config: dict[str, Any]
    series: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("series")
        return out


def acceptance(
    lost: int, duplicates: int, growth: float | None, ratio: float | None, faults: list[FaultRecord]
) -> dict[str, bool | None]:
    return {
        "lost_zero": lost == 0,
        "duplicates_zero": duplicates == 0,
        "every_fault_injected": all(f.injected for f in faults),
        "memory_growth_below_10_pct": None if growth is None else growth < 10.0,
        "api_p99_within_2x_baseline_outside_faults": None if ratio is None else ratio <= 2.0,
    }


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "load_average_1m_at_end": round(os.getloadavg()[0], 2)}


def print_table(report: SoakReport, console: Console) -> None:
    table = Table(title="smartcity soak")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows: list[tuple[str, object]] = [
        ("published readings", f"{report.published:,}"),
        ("stored", f"{report.stored:,}"),
        ("lost", report.lost),
        ("duplicates", report.duplicates),
        ("rows nobody published", report.unexpected_rows),
        ("rejected (dead letters)", sum(report.rejected_by_reason.values())),
        ("publish→commit lag p50 / p99 ms", f"{report.lag_p50_ms} / {report.lag_p99_ms}"),
        ("API p99 ms (all)", report.api_p99_ms),
        (
            "API p99 ms baseline / outside faults",
            (f"{report.api_baseline_p99_ms} / {report.api_outside_faults_p99_ms}"),
        ),
        (
            "worst memory growth %",
            f"{report.memory_growth_pct} ({report.memory_growth_worst_role})",
        ),
        ("drain after the run s", round(report.drain_s, 1)),
    ]
    a, e = report.alerts, report.eta
    if a is not None:
        rows.append(
            (
                "alert precision / recall (faults scored)",
                f"{a.get('precision')} / {a.get('recall')} ({a.get('faults_observable')})",
            )
        )
    if e is not None:
        rows.append(
            (
                "ETA score / schedule baseline (predictions)",
                f"{e.get('score')} / {e.get('baseline_score')} ({e.get('predictions')})",
            )
        )
    for key, value in rows:
        table.add_row(key, str(value))
    console.print(table)
    faults = Table(title="faults")
    for col in ("fault", "start s", "end s", "injected", "detail"):
        faults.add_column(col)
    for f in report.faults:
        faults.add_row(
            f["kind"], str(f["start_s"]), str(f["end_s"]), str(f["injected"]), str(f["detail"])[:80]
        )
    console.print(faults)
    verdict = Table(title="acceptance")
    verdict.add_column("check")
    verdict.add_column("holds")
    for key, ok in report.acceptance.items():
        verdict.add_row(key, {True: "[green]yes[/]", False: "[red]no[/]", None: "n/a"}[ok])
    console.print(verdict)


def plot(report: SoakReport, plan: SoakPlan, path: Path) -> None:
    """Time series (committed rate, probe lag, API p99, memory) with the fault windows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report.series
    fig, axes = plt.subplots(4, 1, figsize=(11, 12), sharex=True)
    ax_rate, ax_lag, ax_api, ax_mem = axes
    if s.get("committed"):
        t, v = zip(*s["committed"], strict=True)
        ax_rate.plot(t, v, color="tab:blue")
    ax_rate.set_ylabel("rows committed / s")
    if s.get("lag"):
        t, p50, p99 = zip(*s["lag"], strict=True)
        ax_lag.plot(t, p50, label="p50")
        ax_lag.plot(t, p99, label="p99")
        ax_lag.set_yscale("log")
        ax_lag.legend(loc="upper right")
    ax_lag.set_ylabel("publish→commit ms")
    if s.get("api"):
        t, v = zip(*s["api"], strict=True)
        ax_api.plot(t, v, color="tab:purple", label="p99")
        if report.api_baseline_p99_ms:
            ax_api.axhline(
                2 * report.api_baseline_p99_ms, color="grey", ls="--", label="2 × baseline p99"
            )
        ax_api.set_yscale("log")
        ax_api.legend(loc="upper right")
    ax_api.set_ylabel("API latency ms")
    by_role: dict[str, list[tuple[float, float]]] = {}
    for t_s, role, _pid, rss in s.get("memory", []):
        if role != POSTGRES_PROCESS:  # one line per role; PostgreSQL's is its total
            by_role.setdefault(role, []).append((t_s, rss / MIB))
    for role, points in sorted(by_role.items()):
        t, v = zip(*points, strict=True)
        ax_mem.plot(t, v, label=role)
    ax_mem.set_ylabel("RSS MiB")
    ax_mem.set_xlabel("seconds since start")
    ax_mem.legend(loc="upper left", fontsize="small", ncol=3)
    ax_mem.axvline(plan.warmup_s, color="grey", ls=":")
    for ax in axes:
        for f in report.faults:
            ax.axvspan(f["start_s"], f["end_s"] + plan.settle_s, color="tab:red", alpha=0.12)
    for f in report.faults:
        ax_rate.annotate(
            f["kind"],
            (f["start_s"], 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            fontsize="x-small",
        )
    totals = plan.totals
    fig.suptitle(
        f"smartcity soak: {plan.duration_s / 60:g} min, {totals['lamps']:,} lamps, "
        f"{totals['meters']:,} meters, {totals['buses']:,} buses; lost {report.lost}, "
        f"duplicates {report.duplicates}"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
