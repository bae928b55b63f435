"""The transit, alert and ingest-health panels show what was written: each panel's SQL, expanded
as Grafana would, against figures computed here in Python from the same rows."""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dashboards import transit
from dashboards.check import check_prometheus, load
from dashboards.macros import TimeRange, expand, quote
from smartcity.rollups.maintain import run_once
from smartcity.settings import Settings
from smartcity.transit.eta_accuracy import BUCKETS
from tests.dashboard_data import AlertHistory, Fleet, fill, fill_alerts, fill_transit
from tests.transit_reference import read_arrivals, read_gtfs, stop_reference

Conn = psycopg.Connection[tuple[Any, ...]]


def _panels(name: str) -> tuple[dict[str, str], dict[str, Any]]:
    data = load()[name]
    return {p["title"]: p["targets"][0]["rawSql"] for p in data["panels"] if "targets" in p}, data


def _run(conn: Conn, sql: str, rng: TimeRange, variables: dict[str, str]) -> list[tuple[Any, ...]]:
    """The panel's rows, numerics as floats (the SQL's numeric division gives Decimal)."""
    rows = conn.execute(expand(sql, rng, variables, timescaledb=False)).fetchall()
    return [tuple(float(v) if isinstance(v, Decimal) else v for v in row) for row in rows]


def test_prometheus_queries_must_name_series_the_processes_expose() -> None:
    dashboards = load()
    assert check_prometheus(dashboards) == []
    broken = copy.deepcopy(dashboards["ingest-health.json"])
    prom = [
        t
        for p in broken["panels"]
        for t in p.get("targets", [])
        if t["datasource"]["type"] == "prometheus"
    ]
    assert len(prom) >= 3
    prom[0]["expr"] = "rate(smartcity_ingest_mesages_total[5m])"
    prom[1]["expr"] = "up"
    messages = [p.message for p in check_prometheus({"x": broken})]
    assert any("smartcity_ingest_mesages_total is not exposed" in m for m in messages), messages
    assert any("names no smartcity_ series" in m for m in messages), messages


@pytest.mark.slow
def test_transit_panels_show_the_arrivals_and_positions_written(
    database_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    assert fill_transit(database_url, now, tmp_path) > 0
    sql, data = _panels("transit.json")
    rng = TimeRange.relative(data["time"]["from"], "now", now)
    templating = {v["name"]: v["query"] for v in data["templating"]["list"]}
    with psycopg.connect(database_url) as conn:
        routes = [r[0] for r in _run(conn, templating["route"], rng, {"city": "astana"})]
        assert routes == ["r01", "r02"]
        every = {"city": "astana", "route": ",".join(quote(r) for r in routes)}

        # The arrivals agree with the imported feed: the schedule's time of the same stop.
        mismatched = conn.execute(
            "SELECT count(*) FROM stop_arrivals s "
            "JOIN gtfs_active_versions v ON v.feed_id = s.feed_id "
            "JOIN gtfs_stop_times st ON st.version_id = v.version_id "
            "AND st.trip_id = s.trip_id AND st.stop_sequence = s.stop_sequence "
            "WHERE st.stop_id <> s.stop_id OR s.scheduled_arrival <> "
            "(s.start_date::timestamp AT TIME ZONE 'Asia/Almaty') + st.arrival_s * interval '1 s'"
        ).fetchone()
        unmatched = conn.execute(
            "SELECT count(*) FROM stop_arrivals s WHERE NOT EXISTS (SELECT 1 FROM gtfs_stop_times "
            "st WHERE st.trip_id = s.trip_id AND st.stop_sequence = s.stop_sequence)"
        ).fetchone()
        assert mismatched == (0,)
        assert unmatched == (0,)

        # The rollup panels: the numpy figures of the raw arrivals (tests/transit_reference)
        # over the hours that start in the range.
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        ref = stop_reference(
            read_arrivals(database_url),
            read_gtfs(database_url),
            lookback_s=settings.transit_rollup_lookback_s,
            early_s=settings.transit_on_time_early_s,
            late_s=settings.transit_on_time_late_s,
        )
        hours = {k: f for k, f in ref.items() if k[0] == "hourly" and rng.start <= k[-1] <= rng.end}
        assert sum(f["arrivals"] for f in hours.values()) > 100

        def total(name: str, route: str | None = None) -> float:
            return sum(f[name] for k, f in hours.items() if route in (None, k[3]))

        want_pct = 100 * total("on_time") / total("arrivals")
        assert 0 < want_pct < 100  # the simulated buses run early and late too
        assert _run(conn, sql["On time"], rng, every)[0][0] == pytest.approx(want_pct)
        by_route = dict(_run(conn, sql["On time by route"], rng, every))
        assert by_route == pytest.approx(
            {r: 100 * total("on_time", r) / total("arrivals", r) for r in routes}
        )
        only_r01 = {"city": "astana", "route": quote("r01")}
        assert dict(_run(conn, sql["On time by route"], rng, only_r01)) == pytest.approx(
            {"r01": by_route["r01"]}
        )
        in_range = conn.execute(
            "SELECT s.delay_s FROM stop_arrivals s WHERE s.arrived_at BETWEEN %s AND %s",
            (rng.start, rng.end),
        ).fetchall()
        median = _run(conn, sql["Median delay"], rng, every)[0][0]
        assert median == pytest.approx(statistics.median(a[0] for a in in_range))

        # Headways: consecutive arrivals per route, direction and stop, in observed order.
        table = {r[0]: r for r in _run(conn, sql["Headways by route"], rng, every)}
        assert sorted(table) == routes
        for route in routes:
            assert table[route][1] == total("headways", route) > 0
            assert table[route][4] == pytest.approx(
                100 * total("headways_regular", route) / total("headways", route)
            )
            assert table[route][5] + table[route][4] + table[route][6] == pytest.approx(100)
        assert _run(conn, sql["Headway adherence"], rng, every)[0][0] == pytest.approx(
            100 * total("headways_regular") / total("headways")
        )

        # Slowest segments: real stop pairs, slowest first, plausible bus speeds.
        slowest = _run(conn, sql["Slowest segments"], rng, every)
        assert 0 < len(slowest) <= transit.SLOWEST_SEGMENTS
        speeds = [r[4] for r in slowest]
        assert speeds == sorted(speeds)
        assert 1 < speeds[0] < 60
        assert all(r[3] >= 1 for r in slowest)
        assert all(r[5] > 0 for r in slowest)
        segs: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        for k, f in hours.items():
            if k[5] and f["runs"] and not math.isnan(f["dist_m"]):
                acc = segs[(k[3], k[5], k[4])]
                acc[0] += f["runs"]
                acc[1] += f["run_sum_s"]
                acc[2] = max(acc[2], f["dist_m"])
        want_speeds = sorted(3.6 * d * n / t for n, t, d in segs.values())
        assert speeds == pytest.approx(want_speeds[: len(speeds)])

        # ETA accuracy: the tracker's sampled predictions, scored against the arrivals.
        eta = _run(conn, sql["ETA accuracy by bucket"], rng, every)
        assert eta
        order = [f"{b[0].replace('_', '–')} min" for b in BUCKETS]
        assert [r[0] for r in eta] == [b for b in order if b in {r[0] for r in eta}]
        assert all(0 <= r[1] <= 100 and r[2] > 0 for r in eta)
        samples = conn.execute("SELECT count(*) FROM transit_eta_samples").fetchone()
        assert samples is not None
        assert sum(r[2] for r in eta) <= samples[0]
        score = _run(conn, sql["ETA score"], rng, every)[0][0]
        assert score == pytest.approx(sum(r[1] for r in eta) / len(BUCKETS))

        # Live: the newest fix of each bus that reported within the live window.
        live = _run(conn, sql["Live buses"], rng, every)
        newest: dict[str, tuple[Any, Any]] = dict(
            conn.execute(
                "SELECT DISTINCT ON (vehicle_id) vehicle_id, (lat, lon) FROM vehicle_positions "
                "WHERE ts > now() - interval '2 minutes' ORDER BY vehicle_id, ts DESC"
            ).fetchall()
        )
        assert newest
        assert {r[0]: (r[3], r[4]) for r in live} == {
            k: (float(v[0]), float(v[1])) for k, v in newest.items()
        }
        active = dict(_run(conn, sql["Active vehicles per route"], rng, every))
        reporting = _run(conn, sql["Buses reporting"], rng, every)[0][0]
        assert reporting == sum(active.values()) >= len(live)


@pytest.mark.slow
def test_alert_panels_count_and_time_what_happened(database_url: str) -> None:
    now = datetime.now(UTC)
    fleet = Fleet(lamps=20, minutes=12, history_hours=2, meters=4)
    fill(database_url, now, fleet)
    history = AlertHistory()
    assert fill_alerts(database_url, now, history) == fleet.faulty
    sql, data = _panels("alerts.json")
    # The rules stamp raised_at with the database's clock, after `now`: the range ends later.
    rng = TimeRange.relative(data["time"]["from"], "now", datetime.now(UTC))
    city = {"city": "astana"}
    with psycopg.connect(database_url) as conn:
        assert _run(conn, sql["Open alerts"], rng, city) == [(fleet.faulty,)]
        assert _run(conn, sql["Not acknowledged"], rng, city) == [(fleet.faulty,)]
        oldest = _run(conn, sql["Oldest unacknowledged"], rng, city)[0][0]
        assert 0 <= oldest < 300  # raised just now, by the rules
        assert _run(conn, sql["Open by severity"], rng, city) == [
            ("critical", fleet.faulty),
            ("major", 0),
            ("minor", 0),
            ("warning", 0),
        ]
        assert _run(conn, sql["Open by rule"], rng, city) == [("supply_loss", fleet.faulty)]
        series = _run(conn, sql["Raised (by severity) and cleared per hour"], rng, city)
        totals: dict[str, int] = defaultdict(int)
        for _, metric, value in series:
            totals[metric] += value
        assert totals.pop("cleared") == history.count
        assert sum(totals.values()) == history.count + fleet.faulty
        assert totals["raised critical"] == history.count // 4 + fleet.faulty
        # Half the history was acknowledged after 7 min; all of it cleared after 30 min.
        tta = _run(conn, sql["Median time to acknowledge"], rng, city)[0][0]
        assert tta == pytest.approx(history.acknowledge_after_min * 60)
        ttc = _run(conn, sql["Median time to clear"], rng, city)[0][0]
        assert ttc == pytest.approx(history.clear_after_min * 60)
        by_rule_title = next(t for t in sql if t.startswith("By rule"))
        by_rule = {r[0]: r for r in _run(conn, sql[by_rule_title], rng, city)}
        tamper = [i for i in range(history.count) if i % 3]  # the others are reverse_energy
        acked = [i for i in tamper if i % 2]
        # raised, acknowledged, cleared, open, auto-cleared
        assert by_rule["meter_tamper"][2:7] == (
            len(tamper),
            len(acked),
            len(tamper),
            0,
            len(tamper) - len(acked),
        )
        assert by_rule["supply_loss"][2:7] == (fleet.faulty, 0, 0, fleet.faulty, 0)
        assert by_rule["meter_tamper"][7] == pytest.approx(history.acknowledge_after_min)
        open_rows = _run(conn, sql["Open alerts, most urgent first"], rng, city)
        assert len(open_rows) == fleet.faulty
        assert {r[2] for r in open_rows} == {"supply_loss"}
        assert all(r[5] == "active" for r in open_rows)


# A city of 800 buses (docs: ~1 M stop arrivals a day) has about 30 times the test fleet's
# arrivals in a 3-hour range; copies of the test's arrivals, each a bus DENSITY_SHIFT_S later,
# give the punctuality panels that much to read.
CITY_DENSITY = 30
DENSITY_SHIFT_S = 20


@pytest.mark.slow
def test_transit_panels_at_city_density(database_url: str, tmp_path: Path) -> None:
    """Prints each transit panel's time at city density (docs/benchmarks.md); fails only when
    one exceeds the check's statement timeout or reads stop_arrivals without its index."""
    from dashboards.check import STATEMENT_TIMEOUT_MS, check_queries

    now = datetime.now(UTC)
    fill_transit(database_url, now, tmp_path)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO stop_arrivals (feed_id, trip_id, start_date, stop_sequence, stop_id, "
            "route_id, vehicle_id, city, arrived_at, departed_at, scheduled_arrival) "
            "SELECT feed_id, trip_id, start_date - k, stop_sequence, stop_id, route_id, "
            "vehicle_id || '-' || k, city, arrived_at + k * %(shift)s * interval '1 s', "
            "departed_at + k * %(shift)s * interval '1 s', "
            "scheduled_arrival + k * %(shift)s * interval '1 s' "
            "FROM stop_arrivals, generate_series(1, %(copies)s) AS k",
            {"shift": DENSITY_SHIFT_S, "copies": CITY_DENSITY - 1},
        )
        conn.commit()
        conn.execute("ANALYZE stop_arrivals")
        run_once(
            Settings(_env_file=None, database_url=database_url, rollup_safety_lag_s=0),  # type: ignore[call-arg]
            now=now,
        )
        sql, data = _panels("transit.json")
        rng = TimeRange.relative(data["time"]["from"], "now", now)
        every = {"city": "astana", "route": "'r01','r02'"}
        in_range = conn.execute(
            "SELECT count(*) FROM stop_arrivals WHERE arrived_at BETWEEN %s AND %s",
            (rng.start, rng.end),
        ).fetchone()
        assert in_range is not None
        print(f"\nstop_arrivals in the 3 h range: {in_range[0]}")
        for title, text in sql.items():
            expanded = expand(text, rng, every, timescaledb=False)
            runs = []
            for _ in range(3):
                started = time.perf_counter()
                conn.execute(expanded).fetchall()
                runs.append(time.perf_counter() - started)
            elapsed_ms = 1000 * statistics.median(runs)
            print(f"{title:50s} {elapsed_ms:8.1f} ms")
            assert elapsed_ms < STATEMENT_TIMEOUT_MS, title
    problems = check_queries(database_url, {"transit.json": data}, now=now)
    assert not [p for p in problems if "sequential scan" in p.message], problems
