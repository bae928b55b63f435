"""`smartcity gtfs import` on the two real feeds, versioning, and atomic re-import."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from smartcity.cli import app
from smartcity.transit.errors import FeedError
from smartcity.transit.geometry import haversine_m
from smartcity.transit.gtfs_import import import_feed
from smartcity.transit.gtfs_store import TABLES, list_versions, remove_version
from tests.gtfs_feeds import BULLRUNNER, POA, read_table, rewrite, scaled_copy, set_cell


def _one(conninfo: str, query: str, *params: object) -> tuple[object, ...]:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return row


def _rows_per_version(conninfo: str) -> dict[int, int]:
    """How many rows each version has across all GTFS tables."""
    totals: dict[int, int] = {}
    with psycopg.connect(conninfo) as conn:
        for table in TABLES:
            query = psycopg.sql.SQL("SELECT version_id, count(*) FROM {} GROUP BY 1").format(
                psycopg.sql.Identifier(table)
            )
            for version_id, n in conn.execute(query):
                totals[int(str(version_id))] = totals.get(int(str(version_id)), 0) + int(str(n))
    return totals


def test_porto_alegre_imports_with_its_counts_and_known_values(database_url: str) -> None:
    result = import_feed(database_url, POA)
    assert result.feed_id == "poa_gtfs"
    assert result.row_counts == {
        "gtfs_agencies": 1,
        "gtfs_stops": 212,
        "gtfs_routes": 4,
        "gtfs_calendar": 1118,
        "gtfs_calendar_dates": 0,
        "gtfs_shapes": 1265,
        "gtfs_trips": 387,
        "gtfs_stop_times": 23040,
        "gtfs_frequencies": 0,
        "gtfs_translations": 0,
    }
    v = result.version_id
    assert _one(database_url, "SELECT count(*) FROM gtfs_stop_times WHERE version_id = %s", v) == (
        23040,
    )
    assert _one(
        database_url,
        "SELECT stop_name, stop_lat, stop_lon FROM gtfs_stops WHERE version_id = %s "
        "AND stop_id = '62'",
        v,
    ) == ("SERRARIA", -30.150301, -51.21775)
    assert _one(
        database_url,
        "SELECT agency_timezone, agency_name FROM gtfs_agencies WHERE version_id = %s",
        v,
    ) == ("America/Sao_Paulo", "Empresa Publica de Transportes e Circulação")
    # First trip of T2 leaves 05:20; its second stop has no time in the feed and gets one
    # between its neighbours, by distance.
    first, second = (
        _one(
            database_url,
            "SELECT stop_id, departure_s, time_interpolated, dist_m FROM gtfs_stop_times "
            "WHERE version_id = %s AND trip_id = 'T2-1@1#520' AND stop_sequence = %s",
            v,
            seq,
        )
        for seq in (1, 2)
    )
    # Shape T2-1 starts 516 m (straight line) before the trip's first stop, on the street
    # leading to it: the stop's distance along the shape is about that.
    assert first == ("3609", 5 * 3600 + 20 * 60, False, pytest.approx(516, abs=25))
    assert second[2] is True
    assert 5 * 3600 + 20 * 60 <= int(str(second[1])) <= 6 * 3600
    # The trip written 23:10 → 00:02 ends at 24:02:00 of its service day.
    assert _one(
        database_url,
        "SELECT max(arrival_s) FROM gtfs_stop_times WHERE version_id = %s "
        "AND trip_id = 'T2-1@1#2310'",
        v,
    ) == (24 * 3600 + 2 * 60,)
    # Every trip's stops advance along its shape, and end near the shape's end.
    assert _one(
        database_url,
        "SELECT count(*) FROM gtfs_stop_times a JOIN gtfs_stop_times b "
        "USING (version_id, trip_id) WHERE a.version_id = %s "
        "AND b.stop_sequence > a.stop_sequence AND b.dist_m < a.dist_m",
        v,
    ) == (0,)
    assert result.max_stop_offset_m < 150


def test_bull_runner_frequency_feed_imports_with_loops_and_its_own_metres(
    database_url: str,
) -> None:
    result = import_feed(database_url, BULLRUNNER, feed_id="usf")
    counts = result.row_counts
    assert (counts["gtfs_stops"], counts["gtfs_routes"], counts["gtfs_trips"]) == (125, 6, 15)
    assert (counts["gtfs_stop_times"], counts["gtfs_frequencies"], counts["gtfs_shapes"]) == (
        473,
        15,
        1522,
    )
    assert any("fare_attributes.txt" in w for w in result.warnings)
    v = result.version_id
    assert _one(
        database_url,
        "SELECT start_s, end_s, headway_s, exact_times FROM gtfs_frequencies "
        "WHERE version_id = %s AND trip_id = '1'",
        v,
    ) == (7 * 3600, 24 * 3600, 600, 0)
    # Shape 0 is a loop of about 7.9 km; the feed's own shape_dist_traveled (metres, by
    # another formula) ends at 7880.6: ours agrees within 0.5 %.
    (length_m,) = _one(
        database_url,
        "SELECT max(dist_m) FROM gtfs_shapes WHERE version_id = %s AND shape_id = '0'",
        v,
    )
    assert abs(float(str(length_m)) - 7880.63) / 7880.63 < 0.005
    # Our metres are haversine metres: check the first leg by hand.
    shapes = read_table(BULLRUNNER, "shapes.txt")
    (p0, p1) = shapes[1], shapes[2]
    leg = float(haversine_m(float(p0[1]), float(p0[2]), float(p1[1]), float(p1[2])))
    assert _one(
        database_url,
        "SELECT dist_m FROM gtfs_shapes WHERE version_id = %s AND shape_id = '0' "
        "AND shape_pt_sequence = 2",
        v,
    ) == (pytest.approx(leg, abs=1e-6),)
    # Trip 1 is a loop: it starts and ends at stop 222, at the two ends of its shape.
    ends = _one(
        database_url,
        "SELECT min(dist_m), max(dist_m), count(*) FILTER (WHERE stop_id = '222'), "
        "max(length_m) FROM gtfs_stop_times JOIN gtfs_trips USING (version_id, trip_id) "
        "WHERE version_id = %s AND trip_id = '1'",
        v,
    )
    assert ends[0] == pytest.approx(0.0, abs=30)
    assert ends[1] == pytest.approx(float(str(length_m)), abs=30)
    assert ends[2] == 2
    assert ends[3] == pytest.approx(float(str(length_m)))


def test_reimport_adds_a_version_that_becomes_active_and_old_ones_can_be_removed(
    database_url: str,
) -> None:
    first = import_feed(database_url, BULLRUNNER, feed_id="usf")
    second = import_feed(database_url, BULLRUNNER, feed_id="usf")
    other = import_feed(database_url, POA, feed_id="poa")
    with psycopg.connect(database_url, autocommit=True) as conn:
        versions = list_versions(conn, "usf")
        assert [(v.version_id, v.active) for v in versions] == [
            (second.version_id, True),
            (first.version_id, False),
        ]
        assert [v.version_id for v in list_versions(conn) if v.active] == [
            other.version_id,
            second.version_id,
        ]
        with conn.transaction():
            remove_version(conn, first.version_id)
        assert first.version_id not in _rows_per_version(database_url)
        # Removing the active version rolls the feed back to none (or the one before).
        with conn.transaction():
            remove_version(conn, second.version_id)
        assert list_versions(conn, "usf") == []
        assert [v.version_id for v in list_versions(conn)] == [other.version_id]


def test_a_failed_import_leaves_the_active_version_untouched(
    database_url: str, tmp_path: Path
) -> None:
    good = import_feed(database_url, BULLRUNNER, feed_id="usf")
    before = _rows_per_version(database_url)

    # 1. A broken feed is refused before the database is touched.
    broken = rewrite(
        BULLRUNNER,
        tmp_path / "broken.zip",
        edit={"trips.txt": set_cell("route_id", "Z", trip_id="4")},
    )
    with pytest.raises(FeedError, match=r"trips\.txt line 5, field route_id"):
        import_feed(database_url, broken, feed_id="usf")

    # 2. A failure in the middle of writing (after several tables were copied) rolls the
    #    whole version back. The progress callback is our own seam, used to fail on cue.
    class ImportInterruptedError(Exception):
        pass

    def fail_during_stop_times(task: str, done: int, total: int) -> None:
        del done, total
        if task == "write gtfs_stop_times":
            raise ImportInterruptedError

    with pytest.raises(ImportInterruptedError):
        import_feed(database_url, POA, feed_id="usf", progress=fail_during_stop_times)

    assert _rows_per_version(database_url) == before
    with psycopg.connect(database_url) as conn:
        assert [(v.version_id, v.active) for v in list_versions(conn)] == [(good.version_id, True)]


def test_the_cli_imports_lists_and_removes(database_url: str, tmp_path: Path) -> None:
    env = {"SMARTCITY_DATABASE_URL": database_url}
    runner = CliRunner()
    imported = runner.invoke(app, ["gtfs", "import", str(BULLRUNNER), "--feed-id", "usf"], env=env)
    assert imported.exit_code == 0, imported.output
    assert "as feed 'usf' version" in imported.output
    assert "473 stop_times" in imported.output
    again = runner.invoke(app, ["gtfs", "import", str(BULLRUNNER), "--feed-id", "usf"], env=env)
    assert again.exit_code == 0, again.output

    listed = runner.invoke(app, ["gtfs", "list"], env={**env, "COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    assert listed.output.count("bullrunner-gtfs.zip") == 2

    with psycopg.connect(database_url) as conn:
        old, new = sorted(v.version_id for v in list_versions(conn))
    refused = runner.invoke(app, ["gtfs", "remove", str(new)], env=env)
    assert refused.exit_code != 0
    assert "add --force" in str(refused.exception)
    removed = runner.invoke(app, ["gtfs", "remove", str(new), "--force"], env=env)
    assert removed.exit_code == 0, removed.output
    assert f"version {old} is now active" in removed.output

    broken = rewrite(
        BULLRUNNER,
        tmp_path / "broken.zip",
        edit={
            "stop_times.txt": set_cell("departure_time", "7:1:04", trip_id="1", stop_sequence="2")
        },
    )
    failed = runner.invoke(app, ["gtfs", "import", str(broken)], env=env)
    assert failed.exit_code != 0
    assert "stop_times.txt line 3, field departure_time" in str(failed.exception)


@pytest.mark.slow
def test_a_feed_ten_times_larger_imports_with_the_same_layout(
    database_url: str, tmp_path: Path
) -> None:
    big = scaled_copy(POA, tmp_path / "poa10.zip", 10)
    calls: list[tuple[str, int, int]] = []
    result = import_feed(
        database_url, big, feed_id="poa10", progress=lambda *call: calls.append(call)
    )
    assert result.row_counts["gtfs_trips"] == 3870
    assert result.row_counts["gtfs_stop_times"] == 230_400
    copies = _one(
        database_url,
        "SELECT count(DISTINCT (arrival_s, departure_s, dist_m)) FROM gtfs_stop_times "
        "WHERE version_id = %s AND trip_id LIKE 'T2-1@1#520~%%' AND stop_sequence = 2",
        result.version_id,
    )
    assert copies == (1,)  # every copy of a trip laid out identically
    writes = [done for task, done, _ in calls if task == "write gtfs_stop_times"]
    assert len(writes) > 5
    assert writes[-1] == 230_400
