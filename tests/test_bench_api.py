"""`smartcity bench api --json` measures each route and cleans up after itself."""

from __future__ import annotations

import orjson
import psycopg
import pytest
from typer.testing import CliRunner

from smartcity.cli import app as cli
from smartcity.db.connect import database_name
from smartcity.settings import Settings


@pytest.mark.slow
def test_bench_api_json(settings: Settings, pg_admin: str) -> None:
    env = {
        "SMARTCITY_DATABASE_URL": settings.database_conninfo,
        "SMARTCITY_MQTT_HOST": settings.mqtt_host,
        "SMARTCITY_MQTT_PORT": str(settings.mqtt_port),
    }
    result = CliRunner().invoke(
        cli,
        [
            "bench",
            "api",
            "--lamps",
            "50",
            "--readings",
            "3",
            "--concurrency",
            "1",
            "--concurrency",
            "2",
            "--seconds",
            "0.5",
            "--buses",
            "20",
            "--bus-routes",
            "2",
            # District energy over a small history (the full one is 10,000 lamps × 30 days),
            # with the simulator and the ingest running alongside.
            "--energy-lamps",
            "20",
            "--energy-days",
            "2",
            "--live-lamps",
            "20",
            "--live-interval",
            "1",
            "--json",
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)  # one JSON object and nothing else (logs: stderr)
    assert report["errors"] == 0
    for route in (
        "/v1/devices/{domain}/{device_id}",
        "/v1/lighting/summary",
        "/v1/stops/{stop_id}/arrivals",
        "/v1/aggregates/lighting",
    ):
        figures = report[route]
        assert figures["requests"] > 0
        assert 0 < figures["p50_ms"] <= figures["p99_ms"]
        assert figures["rps"] > 0
        assert set(figures["clients"]) == {"1", "2"}
        loads = figures["clients"].values()
        assert all(load["requests"] > 0 and load["errors"] == 0 for load in loads)
        # the ingest stores the simulator's readings while every route is measured
        assert sum(load["live_rows_stored"] for load in loads) > 0
    for suffix in ("_bench_api", "_bench_energy"):
        bench_db = f"{database_name(settings.database_conninfo)}{suffix}"
        with psycopg.connect(pg_admin) as conn:
            left = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (bench_db,)
            ).fetchone()
        assert left is None, f"the benchmark database {bench_db} was not dropped"
