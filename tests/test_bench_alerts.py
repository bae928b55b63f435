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
