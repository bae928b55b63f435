"""The transit rules (stale GPS, off-route, bunching, headway gaps) from the transit simulator's
fixes, through the broker, the ingest and its bus tracker, swept like `smartcity alerts run`."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from simulators.gtfs import Network, generate, read_zip, write_zip
from simulators.transit import BusFleet
from smartcity.alerts import transit
from smartcity.bench.mqttload import AckedPublisher
from smartcity.cities import get_city
from smartcity.settings import Settings
from smartcity.transit.gtfs_import import import_feed
from tests.helpers import count_rows, running_ingest, wait_until

CITY = "shymkent"
# A Monday in Shymkent (UTC+5). Morning rush: 07:00–10:00 local, buses every 5 minutes.
RUSH = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)
MIDDAY = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)  # 11:00 local, every 10 minutes

Message = tuple[float, str, bytes]


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gtfs") / "shymkent.zip"
    write_zip(generate(get_city(CITY), seed=3, routes=3), path)
    return path


@pytest.fixture(scope="module")
def network(feed: Path) -> Network:
    return read_zip(feed)


@pytest.fixture(scope="module")
def one_route(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-route network: a fleet of all its blocks runs every trip of the route."""
    path = tmp_path_factory.mktemp("gtfs1") / "shymkent.zip"
    write_zip(generate(get_city(CITY), seed=3, routes=1), path)
    return path


def _fleet(network: Network, buses: int, truth: list[dict[str, object]]) -> BusFleet:
    return BusFleet(get_city(CITY), network, buses, seed=5, ground_truth=truth.append)


def _drive(fleet: BusFleet, start: datetime, minutes: float) -> list[Message]:
    return list(itertools.takewhile(lambda m: m[0] < minutes * 60, fleet.messages(start, "city")))


@contextmanager
def _ingest(settings: Settings) -> Iterator[AckedPublisher]:
    """A running ingest (with its bus tracker) and a publisher to it."""
    with (
        running_ingest(settings),
        AckedPublisher(
            settings.mqtt_host, settings.mqtt_port, f"pub-{settings.mqtt_topic_root}"
        ) as pub,
    ):
        yield pub


def _publish_and_track(settings: Settings, pub: AckedPublisher, messages: list[Message]) -> None:
    """Publish, then wait until every fix is committed and the tracker has seen the last."""
    before = count_rows(settings, "vehicle_positions")
    root = settings.mqtt_topic_root
    for _, topic, payload in messages:
        pub.publish(root + topic.removeprefix("city"), payload)
    assert pub.flush(), "the broker did not acknowledge every fix"
    wait_until(
        lambda: count_rows(settings, "vehicle_positions") == before + len(messages),
        timeout_s=60,
        what="every fix committed",
    )
    # The tracker runs right after the commit of each batch, before its acknowledgement.
    with psycopg.connect(settings.database_conninfo, autocommit=True) as conn:
        wait_until(
            lambda: (
                conn.execute(
                    "SELECT (SELECT max(ts) FROM vehicle_positions)"
                    " <= (SELECT max(last_ts) FROM transit_vehicle_state)"
                ).fetchone()
                == (True,)
            ),
            timeout_s=30,
            what="the tracker to reach the last fix",
        )


def _sweep(settings: Settings, now: datetime) -> None:
    with psycopg.connect(settings.database_conninfo, autocommit=True) as conn:
        transit.sweep(conn, now)


def _alerts(settings: Settings) -> list[tuple[str, str, str]]:
    with psycopg.connect(settings.database_conninfo) as conn:
        rows = conn.execute(
            "SELECT device_id, rule, message FROM alerts ORDER BY 1, 2, alert_id"
        ).fetchall()
    return [(str(d), str(r), str(m)) for d, r, m in rows]


def _truth_headways(
    network: Network, truth: list[dict[str, object]]
) -> dict[str, list[tuple[float, float]]]:
    """`route/direction` → (observed, scheduled) headways of the simulator's true arrivals, as
    the rule defines them (consecutive arrivals at a stop; not the first stop of a trip)."""
    direction = {t.trip_id: t.direction_id or 0 for t in network.trips.values()}
    by_stop: dict[tuple[str, int, str], list[dict[str, object]]] = defaultdict(list)
    for g in truth:
        if int(str(g["stop_sequence"])) > 1:
            trip = str(g["trip_id"])
            by_stop[(str(g["route_id"]), direction[trip], str(g["stop_id"]))].append(g)
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for (route, d, _), visits in by_stop.items():
        visits.sort(key=lambda g: str(g["actual_arrival"]))
        for a, b in itertools.pairwise(visits):
            obs = _at(b, "actual_arrival") - _at(a, "actual_arrival")
            sched = _at(b, "scheduled_arrival") - _at(a, "scheduled_arrival")
            if 0 < sched <= transit.HEADWAY_MAX_SCHEDULED_S:
                out[f"{route}/{d}"].append((obs, sched))
    return out


def _at(g: dict[str, object], key: str) -> float:
    return datetime.fromisoformat(str(g[key])).timestamp()


def test_stale_gps_and_off_route_fire_from_fixes_through_the_broker_and_clear(
    settings: Settings, feed: Path, network: Network
) -> None:
    import_feed(settings.database_conninfo, feed, feed_id=CITY)
    settings = settings.model_copy(update={"ingest_max_age_days": 36500.0})
    truth: list[dict[str, object]] = []
    fleet = _fleet(network, 4, truth)
    end_s = 30 * 60.0
    # Until minute 30: bus 0's receiver freezes, bus 1 detours, bus 2's GPS drops out.
    fleet.faults.add(0, "stale_position", end_s - 240, end_s)
    fleet.faults.add(1, "off_route_detour", end_s - 120, end_s, magnitude=0.5)
    fleet.faults.add(2, "gps_dropout", end_s - 90, end_s)
    messages = _drive(fleet, MIDDAY, 34)
    with _ingest(settings) as pub:
        _publish_and_track(settings, pub, [m for m in messages if m[0] < end_s])
        _sweep(settings, MIDDAY + timedelta(seconds=end_s))
        found = {(d, r): m for d, r, m in _alerts(settings)}
        assert set(found) == {
            ("shy-bus-0000", "stale_gps"),
            ("shy-bus-0001", "off_route"),
            ("shy-bus-0002", "stale_gps"),
        }
        assert "position is frozen" in found[("shy-bus-0000", "stale_gps")]
        assert "no fix since" in found[("shy-bus-0002", "stale_gps")]
        assert " m from its route's shape (" in found[("shy-bus-0001", "off_route")]
        # Good fixes again: the alerts clear once that lasted the hold-off (60 s).
        for upto_s in (end_s + 120, end_s + 240):
            chunk = [m for m in messages if upto_s - 120 <= m[0] < upto_s]
            _publish_and_track(settings, pub, chunk)
            _sweep(settings, MIDDAY + timedelta(seconds=upto_s))
    with psycopg.connect(settings.database_conninfo) as conn:
        states = conn.execute("SELECT DISTINCT state, cleared_by FROM alerts").fetchall()
    assert states == [("cleared", "auto")]


def test_transit_rules_quiet_on_a_normal_rush_hour(
    settings: Settings, feed: Path, network: Network
) -> None:
    """Eight buses through the morning rush without faults, swept every ten minutes as the
    fixes arrive: no stale GPS, no off-route. Headway alerts only where the simulator's own
    arrivals really were bunched or gapped (its buses do bunch: one late from its layover is
    caught by the next), and none on a route/direction whose true headways were all normal."""
    import_feed(settings.database_conninfo, feed, feed_id=CITY)
    settings = settings.model_copy(update={"ingest_max_age_days": 36500.0})
    truth: list[dict[str, object]] = []
    fleet = _fleet(network, 8, truth)
    messages = _drive(fleet, RUSH, 120)
    with _ingest(settings) as pub:
        for k, chunk in itertools.groupby(messages, key=lambda m: int(m[0] // 600)):
            _publish_and_track(settings, pub, list(chunk))
            _sweep(settings, RUSH + timedelta(seconds=600 * (k + 1)))
    alerts = _alerts(settings)
    assert not [a for a in alerts if a[1] in {"stale_gps", "off_route"}], alerts
    headways = _truth_headways(network, truth)
    assert sum(len(h) for h in headways.values()) >= 50
    for route_dir, rule in {(d, r) for d, r, _ in alerts}:
        pairs = headways[route_dir]
        if rule == "bus_bunching":
            # (tracked arrivals are within 15 s of the truth: a little margin)
            assert any(o <= transit.BUNCHING_MAX_RATIO * s + 30 for o, s in pairs), route_dir
        else:
            assert rule == "headway_gap"
            assert any(o >= transit.GAP_MIN_RATIO * s - 30 for o, s in pairs), route_dir
    clean = {rd for rd, pairs in headways.items() if all(0.4 < o / s < 1.6 for o, s in pairs)}
    assert clean, "every route/direction had a bunched or gapped pair: nothing shown quiet"
    assert not [a for a in alerts if a[0] in clean], alerts


def test_bunching_and_gap_fire_from_a_held_back_bus(settings: Settings, one_route: Path) -> None:
    """The simulator's `bunching` fault holds a bus back until it leaves just ahead of the next
    trip of its route and direction: a gap in front of it, bunching behind it."""
    import_feed(settings.database_conninfo, one_route, feed_id=CITY)
    network = read_zip(one_route)
    settings = settings.model_copy(update={"ingest_max_age_days": 36500.0})
    truth: list[dict[str, object]] = []
    fleet = _fleet(network, 35, truth)  # every block of the route's weekday service
    # Hold back the first trip leaving 10–50 minutes into the run (times since local midnight).
    city = get_city(CITY)
    midday_s = (MIDDAY - MIDDAY.astimezone(city.tz).replace(hour=0, minute=0)).total_seconds()
    bus, trip = next(
        (i, t)
        for i, block in enumerate(fleet.blocks_on(MIDDAY.astimezone(city.tz).date()))
        for t in block
        if midday_s + 600 <= t.departure_s[0] < midday_s + 3000
    )
    fleet.faults.add(bus, "bunching", t_s := trip.departure_s[0] - midday_s, t_s + 1)
    messages = _drive(fleet, MIDDAY, 80)
    with _ingest(settings) as pub:
        _publish_and_track(settings, pub, messages)
    for minute in range(0, 81, 5):
        _sweep(settings, MIDDAY + timedelta(minutes=minute))
    route_dir = f"{trip.route_id}/{trip.direction_id or 0}"
    found = {r: m for d, r, m in _alerts(settings) if d == route_dir}
    assert set(found) == {"bus_bunching", "headway_gap"}, _alerts(settings)
    held = fleet.buses[bus].vehicle_id
    assert f"and bus {held}" in found["headway_gap"]  # the gap is in front of the held bus
