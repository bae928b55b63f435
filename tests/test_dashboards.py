"""Dashboards as code: generated JSON is committed and well-formed, and every panel's SQL
runs on a database with data, returns rows, and scans no raw table sequentially."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from dashboards.build import JSON_DIR, generate
from dashboards.check import check_committed, check_queries, check_structure, load
from dashboards.macros import MacroError, TimeRange, expand
from dashboards.registry import DASHBOARDS
from smartcity.cli import app
from tests.dashboard_data import Fleet, fill, fill_alerts, fill_transit


def test_committed_json_equals_what_build_generates() -> None:
    committed = {p.name: p.read_text() for p in JSON_DIR.glob("*.json")}
    assert committed == generate()
    assert sorted(committed) == sorted(f"{n}.json" for n in DASHBOARDS)
    assert check_committed() == []


def test_a_changed_file_is_reported_as_stale(tmp_path: Any) -> None:
    for name, text in generate().items():
        (tmp_path / name).write_text(text)
    (tmp_path / "energy-lighting.json").write_text("{}\n")
    problems = check_committed(tmp_path)
    assert [p.dashboard for p in problems] == ["energy-lighting.json"]


def test_every_dashboard_round_trips_with_unique_ids_and_positions() -> None:
    dashboards = load()
    assert dashboards
    for name, data in dashboards.items():
        assert check_structure(name, data) == [], name


def test_structure_check_finds_duplicate_ids_overlaps_and_lost_fields() -> None:
    data = load()["ingest-health.json"]
    broken = copy.deepcopy(data)
    broken["panels"][1]["id"] = broken["panels"][0]["id"]
    broken["panels"][1]["gridPos"] = dict(broken["panels"][0]["gridPos"])
    broken["panels"][2]["notAGrafanaField"] = 1  # the SDK's model drops it: no round trip
    broken["panels"][3]["targets"] = []
    messages = [p.message for p in check_structure("x", broken)]
    assert any("is also used by" in m for m in messages), messages
    assert any("overlaps" in m for m in messages), messages
    assert any("round-trip" in m for m in messages), messages
    assert any("has no query" in m for m in messages), messages


NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
HOUR = TimeRange(NOW - timedelta(hours=1), NOW)


def test_macros_expand_as_grafana_does() -> None:
    sql = "SELECT $__timeGroupAlias(ts, '5m'), x FROM t WHERE $__timeFilter(ts) AND c = '$city'"
    plain = expand(sql, HOUR, {"city": "astana"}, timescaledb=False)
    assert plain == (
        'SELECT floor(extract(epoch from ts)/300)*300 AS "time", x FROM t WHERE ts BETWEEN '
        "'2026-11-23T11:00:00Z' AND '2026-11-23T12:00:00Z' AND c = 'astana'"
    )
    tsdb = expand(
        "$__timeGroup(ts, 1h) $__timeFrom() ${city}", HOUR, {"city": "a"}, timescaledb=True
    )
    assert tsdb == "time_bucket('3600s',ts) '2026-11-23T11:00:00Z' a"
    assert TimeRange.relative("now-6h", "now", NOW).start == NOW - timedelta(hours=6)


@pytest.mark.parametrize(
    "sql", ["SELECT $__interval", "SELECT $__unixEpochFilter(ts)", "SELECT '$nope'"]
)
def test_unknown_macros_and_variables_are_errors(sql: str) -> None:
    with pytest.raises(MacroError):
        expand(sql, HOUR, {}, timescaledb=False)


@pytest.mark.slow
def test_dashboards_check_passes_on_a_database_the_fleet_filled(
    database_url: str, tmp_path: Any
) -> None:
    fleet = Fleet()
    now = datetime.now(UTC)
    readings = fill(database_url, now, fleet)
    assert (
        readings == fleet.lamps * (fleet.minutes + 1 + fleet.history_readings) - fleet.silent * 30
    )
    assert fill_transit(database_url, now, tmp_path) > 0
    assert fill_alerts(database_url, now) == fleet.faulty
    result = CliRunner().invoke(
        app, ["dashboards", "check", "--database-url", database_url], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    assert "dashboards OK" in result.output


@pytest.mark.slow
def test_the_panel_queries_show_what_was_written(database_url: str) -> None:
    """The figures are right, not merely present: compare with what the fleet did."""
    fleet = Fleet()
    fill(database_url, datetime.now(UTC), fleet)
    data = load()["energy-lighting.json"]
    by_title = {p.get("title"): p for p in data["panels"]}
    district_sql = data["templating"]["list"][1]["query"]
    with psycopg.connect(database_url) as conn:
        districts = [r[0] for r in conn.execute(district_sql.replace("$city", "astana"))]
        variables = {"city": "astana", "district": ",".join(f"'{d}'" for d in districts)}

        def value(title: str) -> Any:
            sql = by_title[title]["targets"][0]["rawSql"]
            row = conn.execute(expand(sql, HOUR, variables, timescaledb=False)).fetchone()
            assert row is not None
            return row[0]

        assert value("Lamps silent") == fleet.silent
        assert value("Lamps faulty") == fleet.faulty
        assert value("Lamps reporting") == fleet.lamps - fleet.silent
        expected_kw = conn.execute(
            "SELECT sum(power_w) / 1000.0 FROM lighting_readings r WHERE ts = "
            "(SELECT max(ts) FROM lighting_readings WHERE lamp_id = r.lamp_id) "
            "AND ts > now() - interval '15 minutes'"
        ).fetchone()
        assert expected_kw is not None
        assert value("Power now") == pytest.approx(expected_kw[0])


@pytest.mark.slow
def test_check_reports_sequential_scans_empty_results_and_broken_sql(database_url: str) -> None:
    fill(database_url, datetime.now(UTC), Fleet(lamps=20, minutes=5))
    data: dict[str, Any] = json.loads((JSON_DIR / "ingest-health.json").read_text())
    bad = {
        "Scan": "SELECT count(*) FROM lighting_readings WHERE power_w > 0",
        "Empty": "SELECT reason FROM dead_letters WHERE reason = 'never'",
        "Broken": "SELECT no_such_column FROM devices",
    }
    data["panels"] = [
        {"id": i, "title": title, "targets": [{"refId": "A", "rawSql": sql}]}
        for i, (title, sql) in enumerate(bad.items())
    ]
    problems = {p.where.split(" [")[0]: p.message for p in check_queries(database_url, {"x": data})}
    assert "sequential scan of raw table lighting_readings" in problems["Scan"]
    assert "no rows" in problems["Empty"]
    assert "query failed" in problems["Broken"]
