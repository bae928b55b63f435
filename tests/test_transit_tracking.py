"""Bus tracking against the transit simulator's ground truth: stop arrivals within 15 s on clean
data, through the broker and the ingest's after-commit hook; dropouts and detours survived;
predictions written for the stops ahead; a repeated batch changes nothing."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg
import pytest

from simulators.faults import FaultLog
from simulators.gtfs import Network, generate, read_zip, write_zip
from simulators.transit import BusFleet
from smartcity.bench.mqttload import AckedPublisher
from smartcity.cities import get_city
from smartcity.settings import Settings
from smartcity.transit.gtfs_import import import_feed
from smartcity.transit.tracking_store import Position, Tracker
from tests.helpers import count_rows, running_ingest, wait_until

CITY = "shymkent"
# A Monday in Shymkent (UTC+5), 06:00 local: the first trips leave their terminals.
START = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
ARRIVAL_TOLERANCE_S = 15.0

Truth = dict[tuple[str, str, int], dict[str, object]]


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gtfs") / "shymkent.zip"
    write_zip(generate(get_city(CITY), seed=3, routes=3), path)
    return path


@pytest.fixture(scope="module")
def network(feed: Path) -> Network:
    return read_zip(feed)


@pytest.fixture
def imported(database_url: str, feed: Path) -> str:
    import_feed(database_url, feed, feed_id=CITY)
    return database_url


def _drive(
    network: Network, buses: int, minutes: float, **kw: object
) -> tuple[list[tuple[float, str, bytes]], Truth, BusFleet]:
    truth: list[dict[str, object]] = []
    fleet = BusFleet(get_city(CITY), network, buses, seed=5, ground_truth=truth.append, **kw)  # type: ignore[arg-type]
    messages = list(
        itertools.takewhile(lambda m: m[0] < minutes * 60, fleet.messages(START, "city"))
    )
    by_visit = {
        (str(g["trip_id"]), str(g["start_date"]), int(str(g["stop_sequence"]))): g for g in truth
    }
    return messages, by_visit, fleet


def _position(payload: bytes) -> Position:
    b = orjson.loads(payload)
    return Position(
        b["vehicle_id"], CITY, b["ts"] / 1000, b["trip_id"], b["start_date"], b["lat"], b["lon"],
        b["speed_mps"],
    )  # fmt: skip


def _track(conninfo: str, messages: list[tuple[float, str, bytes]], batch_s: float = 10.0) -> None:
    """Feed the fixes to a tracker in batches of `batch_s` simulated seconds."""
    tracker = Tracker()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for _, group in itertools.groupby(messages, key=lambda m: int(m[0] // batch_s)):
            fixes = [_position(m[2]) for m in group]
            tracker.process(conn, fixes, now=max(f.ts for f in fixes))


def _observed(conninfo: str) -> dict[tuple[str, str, int], tuple[datetime, datetime | None]]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT trip_id, start_date, stop_sequence, arrived_at, departed_at FROM stop_arrivals"
        ).fetchall()
    return {(r[0], r[1].strftime("%Y%m%d"), r[2]): (r[3], r[4]) for r in rows}


def _errors(
    truth: Truth, observed: dict[tuple[str, str, int], tuple[datetime, datetime | None]]
) -> Iterator[tuple[tuple[str, str, int], float]]:
    """Arrival errors (s) of the observed visits; at a trip's first stop, of the departure
    (the bus waits there for its time: its arrival is when it was first seen)."""
    for key, (arrived, departed) in observed.items():
        g = truth[key]
        if key[2] == 1:
            if departed is not None:
                actual = datetime.fromisoformat(str(g["actual_departure"]))
                yield key, (departed - actual).total_seconds()
        else:
            actual = datetime.fromisoformat(str(g["actual_arrival"]))
            yield key, (arrived - actual).total_seconds()


def _completed(truth: Truth, fleet_end: datetime) -> set[tuple[str, str, int]]:
    """Visits whose bus has left the stop at least a minute before the last fix (so a tracker
    can know of them)."""
    return {
        k
        for k, g in truth.items()
        if datetime.fromisoformat(str(g["actual_departure"])) < fleet_end - timedelta(minutes=1)
    }


def test_arrivals_within_15_s_through_the_broker(
    settings: Settings, feed: Path, network: Network
) -> None:
    import_feed(settings.database_conninfo, feed, feed_id=CITY)
    messages, truth, _ = _drive(network, 4, 25)
    settings = settings.model_copy(update={"ingest_max_age_days": 36500.0})
    with (
        running_ingest(settings),
        AckedPublisher(
            settings.mqtt_host, settings.mqtt_port, f"pub-{settings.mqtt_topic_root}"
        ) as pub,
    ):
        root = settings.mqtt_topic_root
        for _, topic, payload in messages:
            pub.publish(root + topic.removeprefix("city"), payload)
        assert pub.flush(), "the broker did not acknowledge every fix"
        wait_until(
            lambda: count_rows(settings, "vehicle_positions") == len(messages),
            timeout_s=30,
            what="every fix committed",
        )
        expected = _completed(truth, START + timedelta(minutes=25))
        wait_until(
            lambda: count_rows(settings, "stop_arrivals") >= len(expected),
            timeout_s=30,
            what="the tracker to record the stop arrivals",
        )
    observed = _observed(settings.database_conninfo)
    assert expected <= set(observed), sorted(expected - set(observed))[:5]
    errors = [e for _, e in _errors(truth, observed)]
    assert len(errors) >= 25
    assert max(abs(e) for e in errors) <= ARRIVAL_TOLERANCE_S
    # Predictions: every tracked trip that has stops ahead has one row per stop ahead.
    with psycopg.connect(settings.database_conninfo) as conn:
        trips = conn.execute(
            "SELECT count(DISTINCT (trip_id, start_date)), min(uncertainty_s)"
            " FROM transit_predictions"
        ).fetchone()
    assert trips is not None
    assert trips[0] >= 1
    assert trips[1] >= 0


def test_tracking_survives_dropouts_detours_and_stale_fixes(
    imported: str, network: Network
) -> None:
    log = FaultLog()
    messages, truth, _ = _drive(
        network,
        6,
        45,
        fault_rates={"gps_dropout": 8.0, "off_route_detour": 8.0, "stale_position": 8.0},
        fault_log=log,
    )
    kinds = {str(e["fault"]) for e in log.entries}
    assert {"gps_dropout", "off_route_detour", "stale_position"} <= kinds
    _track(imported, messages, batch_s=30.0)
    observed = _observed(imported)
    expected = _completed(truth, START + timedelta(minutes=45))
    # Stops passed while the bus was unseen or off its shape are still recorded, their times
    # interpolated between the good fixes on either side.
    missed = expected - set(observed)
    assert len(missed) <= 0.05 * len(expected), sorted(missed)
    # Visits while the bus was seen well are as accurate as on clean data; those inside a
    # fault are interpolated between the good fixes around it.
    windows: dict[str, list[tuple[datetime, datetime]]] = {}
    for e in log.entries:
        start = datetime.fromisoformat(str(e["start"])) - timedelta(seconds=20)
        end = datetime.fromisoformat(str(e["end"])) + timedelta(seconds=20)
        windows.setdefault(str(e["device_id"]), []).append((start, end))
    clean: list[float] = []
    faulty: list[float] = []
    for key, error in _errors(truth, observed):
        g = truth[key]
        at = datetime.fromisoformat(str(g["actual_arrival"]))
        hit = any(a <= at <= b for a, b in windows.get(str(g["vehicle_id"]), []))
        (faulty if hit else clean).append(abs(error))
    assert faulty
    assert max(clean) <= ARRIVAL_TOLERANCE_S
    # A gap of up to 10 minutes over several stops: the split between driving and dwelling is
    # a guess (equal dwells), good to a minute or so.
    assert sorted(faulty)[len(faulty) // 2] <= 60.0
    assert max(faulty) <= 180.0
    with psycopg.connect(imported) as conn:
        row = conn.execute("SELECT count(*) FROM transit_vehicle_state").fetchone()
    assert row == (6,)


def test_a_repeated_batch_changes_nothing(imported: str, network: Network) -> None:
    messages, _, _ = _drive(network, 3, 15)
    _track(imported, messages)
    with psycopg.connect(imported) as conn:
        before = conn.execute(
            "SELECT count(*), sum(extract(epoch FROM arrived_at)), "
            "(SELECT sum(n) FROM transit_segment_stats) FROM stop_arrivals"
        ).fetchone()
        _track(imported, messages[-200:], batch_s=60.0)
        after = conn.execute(
            "SELECT count(*), sum(extract(epoch FROM arrived_at)), "
            "(SELECT sum(n) FROM transit_segment_stats) FROM stop_arrivals"
        ).fetchone()
    assert before == after
    assert before is not None
    assert before[0] > 10


def test_predictions_are_sampled_per_visit_and_horizon_bucket_nearest_its_middle(
    imported: str, network: Network
) -> None:
    from smartcity.transit.eta_accuracy import bucket_middle_s, bucket_of
    from smartcity.transit.tracking_store import sampled

    messages, _, _ = _drive(network, buses=6, minutes=25)
    tracker = Tracker(eta_sample_pct=100.0)
    # Every prediction made, per (visit, bucket of its horizon): its distance from the middle.
    nearest: dict[tuple[object, ...], float] = {}
    with psycopg.connect(imported, autocommit=True) as conn:
        for _, group in itertools.groupby(messages, key=lambda m: int(m[0] // 10.0)):
            fixes = [_position(m[2]) for m in group]
            tracker.process(conn, fixes, now=max(f.ts for f in fixes))
            for trip, day, seq, ahead in conn.execute(
                "SELECT trip_id, start_date, stop_sequence, "
                "extract(epoch FROM predicted_arrival - made_at)::float8 FROM transit_predictions"
            ):
                label = bucket_of(ahead)
                if label is not None:
                    key = (trip, day, seq, label)
                    off = abs(ahead - bucket_middle_s(label))
                    nearest[key] = min(nearest.get(key, off), off)
        kept = {
            (r[0], r[1], r[2], r[3]): abs(float(r[4]) - bucket_middle_s(str(r[3])))
            for r in conn.execute(
                "SELECT trip_id, start_date, stop_sequence, horizon, "
                "extract(epoch FROM predicted_arrival - made_at)::float8 FROM transit_eta_samples"
            )
        }
    assert len(kept) > 50
    assert set(kept) == set(nearest)
    assert kept == pytest.approx(nearest)

    # A share of trips, chosen by a stable hash: about that share of many trips.
    share = sum(sampled(f"t{i}", START.date(), 10.0) for i in range(20_000)) / 20_000
    assert 0.09 < share < 0.11
    assert not any(sampled(f"t{i}", START.date(), 0.0) for i in range(1000))
