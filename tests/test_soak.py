"""`smartcity soak` (issue 10): the short variant of the city-scale soak, and its arithmetic.

The short soak runs the whole system — private broker and database, simulators for three
cities, `smartcity ingest --workers 2`, the API under load — for a minute with all five faults,
and requires every acknowledged reading stored exactly once. It is the same code as the
20-minute run in docs/benchmarks.md, at a small scale.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from smartcity.cli import app
from smartcity.settings import Settings
from smartcity.soak.faults import FaultRecord
from smartcity.soak.plan import FAULT_KINDS, SoakPlan
from smartcity.soak.procs import MemorySample
from smartcity.soak.report import api_figures, memory_figures
from smartcity.soak.run import run
from smartcity.soak.traffic import Request

MIB = 1024 * 1024


@pytest.mark.slow
def test_short_soak_loses_nothing_under_every_fault() -> None:
    plan = SoakPlan(
        duration_s=60,
        scale=0.01,  # 501 lamps, 999 meters, 9 buses over three cities
        api_rate_per_s=5,
        probe_rate_per_s=10,
        storm_clients=300,
        malformed_messages=60,
        db_pause_s=3,
        sample_every_s=2,
    )
    report = run(plan, Settings(_env_file=None), lambda _text: None)  # type: ignore[call-arg]

    assert [f["kind"] for f in report.faults] == list(FAULT_KINDS)
    assert all(f["injected"] for f in report.faults), report.faults
    assert set(report.feeds) == {"lighting_readings", "meter_readings", "vehicle_positions"}
    assert all(feed["published"] > 0 for feed in report.feeds.values()), report.feeds
    assert report.lost == 0, report.feeds
    assert report.duplicates == 0, report.feeds
    assert report.unexpected_rows == 0, report.feeds
    assert report.stored == report.published
    # Every malformed message is one dead letter, with the reason its kind calls for.
    assert report.malformed_burst == {"acknowledged": 60, "dead_letters": 60}
    reasons = set(report.rejected_by_reason)
    assert {"malformed_json", "invalid_fields", "unknown_city", "payload_too_large"} <= reasons
    storm = next(f for f in report.faults if f["kind"] == "reconnect_storm")
    assert storm["detail"]["published_and_acknowledged"] == 300
    assert report.api["requests"] > 0
    assert report.api_p99_ms is not None
    assert report.lag_p99_ms is not None
    assert {m["role"] for m in report.memory} >= {
        "broker",
        "postgres",
        "ingest-supervisor",
        "ingest-worker-0",
        "ingest-worker-1",
        "api",
    }


def test_fault_schedule_fills_the_middle_half() -> None:
    times = SoakPlan(duration_s=1200).fault_times_s()
    assert list(times) == list(FAULT_KINDS)
    assert list(times.values()) == [300.0, 450.0, 600.0, 750.0, 900.0]


def test_api_p99_outside_fault_windows_leaves_out_the_fault_and_its_settle_time() -> None:
    plan = SoakPlan(duration_s=1000)  # baseline 100–250 s; settle 50 s
    slow = [Request(float(t), "x", 5.0, 0) for t in range(400, 460)]  # in the fault window
    fast = [Request(float(t), "x", 0.010, 200) for t in range(100, 1000, 2) if not 400 <= t < 460]
    fault = FaultRecord("pause_database", 400.0, 410.0, injected=True)
    figures = api_figures(plan, slow + fast, [fault], bucket_s=10)
    assert figures.baseline_p99_ms == pytest.approx(10.0)
    assert figures.outside_faults_p99_ms == pytest.approx(10.0)
    assert figures.in_faults_p99_ms == pytest.approx(5000.0)
    assert figures.outside_to_baseline == pytest.approx(1.0)
    assert figures.errors == len(slow)
    assert figures.p99_ms_by_route["x"] == pytest.approx(5000.0)


def test_memory_growth_is_measured_after_warm_up_on_the_process_holding_the_role() -> None:
    plan = SoakPlan(duration_s=1000)  # warm-up 250 s; windows [250, 350) and [900, 1000]
    samples = [
        MemorySample(float(t), "api", 1, (100 if t < 250 else 110) * MIB)
        for t in range(0, 1001, 10)
    ]
    # The killed worker: its replacement (pid 3) from 300 s grows from 50 to 60 MiB.
    samples += [MemorySample(float(t), "worker", 2, 500 * MIB) for t in range(0, 300, 10)]
    samples += [
        MemorySample(float(t), "worker", 3, (50 if t < 700 else 60) * MIB)
        for t in range(300, 1001, 10)
    ]
    by_role = {m.role: m for m in memory_figures(plan, samples)}
    assert by_role["api"].growth_pct == pytest.approx(0.0)
    assert by_role["worker"].restarted
    assert by_role["worker"].growth_pct == pytest.approx(20.0)


def test_too_short_a_soak_is_refused_with_the_reason() -> None:
    result = CliRunner().invoke(app, ["soak", "--duration", "30"])
    assert result.exit_code != 0
    assert "at least 60 s" in str(result.exception)
