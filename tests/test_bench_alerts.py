"""`smartcity bench alerts --json`, tiny: the report has its keys and sane values."""

from __future__ import annotations

import orjson
import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from smartcity.bench.alerts import bench_database
from smartcity.cli import app as cli
from smartcity.settings import Settings

KEYS = {"precision", "recall", "median_delay_intervals", "p95_delay_intervals", "duplicates"}


@pytest.mark.slow
def test_bench_alerts_json(settings: Settings, pg_admin: str) -> None:
    env = {"SMARTCITY_DATABASE_URL": settings.database_conninfo}
    try:
        result = CliRunner().invoke(
            cli,
            [
                "bench",
                "alerts",
                "--lamps",
                "20",
                "--meters",
                "10",
                "--days",
                "0.25",
                "--history-days",
                "0",
                "--seed",
                "3",
                "--json",
            ],
            env=env,
        )
        assert result.exit_code == 0, result.output
        report = orjson.loads(result.stdout.strip().splitlines()[-1])
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(bench_database(settings))
                )
            )
    assert report.keys() >= KEYS
    assert report["messages"] > 20 * 60 * 6  # six simulated hours of lamps at least
    assert report["faults_injected"] > 0
    assert report["duplicates"] == 0
    for name, per_rule in report["rules"].items():
        assert per_rule.keys() >= KEYS, name
        for key in ("precision", "recall"):
            assert per_rule[key] is None or 0.0 <= per_rule[key] <= 1.0, (name, key)
    if report["faults_observable"]:
        assert report["recall"] is not None


def test_soak_scoring_needs_the_history_its_rules_compare_with() -> None:
    """A soak starts from an empty database: dimming failure is observable only after the
    lamp has reported at full level often enough for its reference, reverse energy only after
    the meter's first reading; with history before the span (this benchmark) at once."""
    from datetime import UTC, datetime, timedelta

    from simulators.scenario import Scenario, ScenarioOptions
    from smartcity.bench.alerts import Fault, _observable

    def scenario(start: datetime) -> Scenario:
        options = ScenarioOptions(lamps=4, meters=4, lighting_city="astana", seed=3)
        return Scenario(options, start=start, topic_root="t")

    # Astana is UTC+5; lamps are at full level from dusk to local midnight, then dimmed.
    evening = datetime(2026, 11, 23, 17, 30, tzinfo=UTC)  # 22:30 local
    after_midnight = datetime(2026, 11, 23, 19, 5, tzinfo=UTC)  # 00:05 local
    dim_fault_start = datetime(2026, 11, 23, 19, 10, tzinfo=UTC)
    span_end = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)

    def dimming(start: datetime, history_from: datetime | None) -> datetime | None:
        f = Fault("lighting", "dimming_failure", "x", dim_fault_start, span_end, "x")
        return _observable(f, scenario(start), span_end, history_from)

    assert dimming(evening, evening) == evening + timedelta(minutes=100)  # first dimmed probe
    assert dimming(after_midnight, after_midnight) is None  # never seen at full level
    assert dimming(after_midnight, None) is not None  # the history days have it

    meter_fault = Fault(
        "metering", "reverse_energy", "m", evening + timedelta(minutes=1), span_end, "x"
    )
    assert _observable(meter_fault, scenario(evening), span_end, evening) == evening + timedelta(
        minutes=15
    )
    assert _observable(meter_fault, scenario(evening), span_end, None) == meter_fault.start
