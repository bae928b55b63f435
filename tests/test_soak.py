"""`smartcity soak` (issue 10): the short variant of the city-scale soak, and its arithmetic.

The short soak runs the whole system — private broker and database, simulators for three
cities, `smartcity ingest --workers 2`, the API under load — for 90 s with all five faults,
and requires every acknowledged reading stored exactly once, and the alert and ETA scores
computed from what the ingest's alert hook and tracker did. It is the same code as the
runs in docs/benchmarks.md, at a small scale. (90 s, not 60: lamps report every 60 s, so a
fault must start at least that long before the end for its alert to be due.)
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from smartcity.cli import app
from smartcity.settings import Settings
from smartcity.soak.faults import FaultRecord
from smartcity.soak.plan import FAULT_KINDS, SoakPlan
from smartcity.soak.procs import POSTGRES_PROCESS, MemorySample
from smartcity.soak.report import SoakReport, api_figures, memory_figures
from smartcity.soak.run import run
from smartcity.soak.traffic import Request

MIB = 1024 * 1024


@pytest.mark.slow
def test_short_soak_loses_nothing_under_every_fault() -> None:
    plan = SoakPlan(
        duration_s=90,
        scale=0.01,  # 501 lamps, 999 meters, 9 buses over three cities
        api_rate_per_s=5,
        probe_rate_per_s=10,
        storm_clients=300,
        malformed_messages=60,
        db_pause_s=3,
        sample_every_s=2,
        device_faults_per_kind=4,
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
    _assert_scores(report)
    assert {m["role"] for m in report.memory} >= {
        "broker",
        "postgres",
        "ingest-supervisor",
        "ingest-worker-0",
        "ingest-worker-1",
        "api",
    }


def _assert_scores(report: SoakReport) -> None:
    """The scores exist, are shares, and come from real matches: the injected faults (4 per
    kind and city, 84) whose signal came at least a lamp interval before the end (supply
    loss always does; lamp failure by night, day-burning by day) were scored, and the
    alerts matched to them."""
    assert report.config["scores"] == {
        "alerts": "smartcity.bench.alerts.score_soak",
        "eta": "smartcity.bench.eta.score_soak",
    }
    alerts = report.alerts
    assert alerts is not None
    assert alerts["faults_injected"] == 3 * 7 * 4
    assert alerts["faults_observable"] > 0, alerts
    assert alerts["alerts"] > 0, alerts
    assert 0.0 <= alerts["precision"] <= 1.0
    assert 0.0 <= alerts["recall"] <= 1.0
    # Supply loss shows in the next report (0 V), whatever the time of day.
    assert alerts["rules"]["supply_loss"]["faults_observable"] > 0, alerts["rules"]
    supply = alerts["rules"]["supply_loss"]
    assert supply["alerts"] > supply["false_positives"], supply
    eta = report.eta
    assert eta is not None
    assert eta["samples_failed"] < eta["samples_taken"]
    assert 0.0 <= eta["baseline_score"] <= 1.0
    buckets = ("0_3", "3_6", "6_10", "10_15")
    assert sum(eta[f"predictions_{b}"] for b in buckets) == eta["predictions"]
    # The soak's networks run round the clock, but nine buses in 90 s may all be resting at
    # a terminal: no stop reached, nothing to score.
    if eta["truth_arrivals_in_run"]:
        assert eta["predictions"] > 0, eta
        assert 0.0 <= eta["score"] <= 1.0


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


def test_warm_up_covers_a_full_reporting_cycle_when_the_run_allows() -> None:
    # Meters report every 900 simulated seconds: every device has reported after 900 s / speed.
    assert SoakPlan(duration_s=1200).warmup_s == pytest.approx(960.0)
    assert SoakPlan(duration_s=3600).warmup_s == pytest.approx(960.0)
    assert SoakPlan(duration_s=7200).warmup_s == pytest.approx(1800.0)  # a quarter
    assert SoakPlan(duration_s=1200, speed=4).warmup_s == pytest.approx(300.0)
    assert SoakPlan(duration_s=90).warmup_s == pytest.approx(72.0)  # 0.8 D: room to measure


def test_memory_growth_is_measured_after_warm_up_on_the_process_holding_the_role() -> None:
    plan = SoakPlan(duration_s=1000)  # warm-up 800 s; windows [800, 900) and [900, 1000]
    samples = [
        MemorySample(float(t), "api", 1, (100 if t < 800 else 110) * MIB)
        for t in range(0, 1001, 10)
    ]
    # The killed worker: its replacement (pid 3) from 300 s grows from 50 to 60 MiB.
    samples += [MemorySample(float(t), "worker", 2, 500 * MIB) for t in range(0, 300, 10)]
    samples += [
        MemorySample(float(t), "worker", 3, (50 if t < 900 else 60) * MIB)
        for t in range(300, 1001, 10)
    ]
    by_role = {m.role: m for m in memory_figures(plan, samples)}
    assert by_role["api"].growth_pct == pytest.approx(0.0)
    assert by_role["worker"].restarted
    assert by_role["worker"].growth_pct == pytest.approx(20.0)


def test_postgres_counts_its_worst_long_running_process_not_new_connections() -> None:
    plan = SoakPlan(duration_s=1000)  # windows [800, 900) and [900, 1000]
    samples: list[MemorySample] = []
    for t in range(0, 1001, 10):
        each = {10: 20 * MIB, 11: (4 if t < 900 else 4.2) * MIB}  # postmaster, a backend (+5 %)
        if t >= 900:
            each[12] = 5 * MIB  # a connection opened late (a pool after a fault)
        samples += [MemorySample(float(t), POSTGRES_PROCESS, p, int(b)) for p, b in each.items()]
        samples.append(MemorySample(float(t), "postgres", 10, int(sum(each.values()))))
    by_role = {m.role: m for m in memory_figures(plan, samples)}
    total = by_role["postgres"]
    assert total.total
    assert total.processes == (2, 3)
    assert (total.growth_pct or 0.0) > 10  # the new connection
    worst = by_role["postgres (worst process)"]
    assert worst.pid == 11
    assert worst.growth_pct == pytest.approx(5.0)
    assert not worst.total


def test_too_short_a_soak_is_refused_with_the_reason() -> None:
    result = CliRunner().invoke(app, ["soak", "--duration", "30"])
    assert result.exit_code != 0
    assert "at least 60 s" in str(result.exception)


def test_device_faults_are_one_per_device_the_same_in_every_walk_and_inside_the_run() -> None:
    from datetime import UTC, datetime

    from simulators.scenario import Scenario
    from smartcity.soak.plan import CityFleet
    from smartcity.soak.procs import SimSpec, scenario_options
    from smartcity.soak.truth import DEVICE_FAULTS, plan_device_faults

    start = datetime(2026, 11, 23, 12, tzinfo=UTC)
    spec = SimSpec(
        CityFleet("almaty", lamps=60, meters=80, buses=0, seed=2),
        start,
        1.0,
        300.0,
        keys_path="",
        faults_per_kind=3,
    )

    def walk() -> tuple[Scenario, list[dict[str, object]]]:
        scenario = Scenario(scenario_options(spec.fleet), start=start, topic_root="t")
        return scenario, plan_device_faults(scenario, spec)

    scenario, entries = walk()
    assert entries == walk()[1]
    kinds = [k for ks in DEVICE_FAULTS.values() for k in ks]
    assert sorted(str(e["fault"]) for e in entries) == sorted(kinds * 3)
    devices = [str(e["device_id"]) for e in entries]
    assert len(set(devices)) == len(devices)
    for e in entries:
        offset_s = (datetime.fromisoformat(str(e["start"])) - start).total_seconds()
        assert 0.05 * 300 <= offset_s <= 0.60 * 300
        if e["fault"] == "reverse_energy":
            assert "-em-" in str(e["device_id"])  # electricity meters only
    # The fleets apply them: the first lamp fault is active in the middle of its window.
    lamp = next(e for e in entries if e["domain"] == "lighting")
    assert scenario.lighting is not None
    index = [x.lamp_id for x in scenario.lighting.lamps].index(str(lamp["device_id"]))
    t_s = (datetime.fromisoformat(str(lamp["start"])) - start).total_seconds() + 1
    active = scenario.lighting.faults.active(index, t_s)
    assert active is not None
    assert active.kind == lamp["fault"]
