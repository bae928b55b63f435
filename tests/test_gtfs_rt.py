"""GTFS-Realtime feeds: they parse with gtfs-realtime-bindings, pass the spec's required-field
rules (checked by `check_feed` below), carry only fresh data, and say the same in JSON."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from google.protobuf import json_format  # type: ignore[import-untyped]
from google.transit import gtfs_realtime_pb2 as rt

from simulators.gtfs import Network
from smartcity.settings import Settings
from smartcity.transit.gtfs_import import import_feed
from tests.apidata import ready_client
from tests.gtfs_feeds import BULLRUNNER
from tests.helpers import wait_until
from tests.transitdata import Fix, Prediction, add_fixes, add_predictions, import_sim_feed

FRESH_S = 90  # the feeds' freshness limit (GTFS-RT best practices)
_DATE = re.compile(r"^\d{8}$")
_TIME = re.compile(r"^\d{2}:[0-5]\d:[0-5]\d$")


def check_feed(feed: rt.FeedMessage, now: datetime) -> None:
    """The spec's required fields and the validators' basic rules, for our two feed kinds."""
    header = feed.header
    assert header.gtfs_realtime_version == "2.0"
    assert header.incrementality == rt.FeedHeader.Incrementality.FULL_DATASET
    assert header.HasField("timestamp")
    assert abs(header.timestamp - now.timestamp()) < 60, "header timestamp: POSIX seconds, now"
    ids = [e.id for e in feed.entity]
    assert all(ids), "every entity needs an id"
    assert len(set(ids)) == len(ids), "entity ids are unique in a feed"
    for e in feed.entity:
        kinds = [k for k in ("trip_update", "vehicle", "alert") if e.HasField(k)]
        assert len(kinds) == 1, f"{e.id}: exactly one of trip_update, vehicle, alert"
        if e.HasField("trip_update"):
            _check_trip_update(e.trip_update, header.timestamp)
        else:
            _check_vehicle(e.vehicle, header.timestamp)


def _check_trip(trip: rt.TripDescriptor) -> None:
    assert trip.trip_id or trip.route_id, "a TripDescriptor names a trip or at least a route"
    if trip.HasField("start_date"):
        assert _DATE.match(trip.start_date), trip.start_date
    if trip.HasField("start_time"):
        assert _TIME.match(trip.start_time), trip.start_time
    if trip.trip_id:
        assert trip.HasField("schedule_relationship")


def _check_fresh(ts: int, header_ts: int) -> None:
    assert ts <= header_ts, "no entity is newer than the feed"
    assert header_ts - ts <= FRESH_S, "only fresh data"


def _check_trip_update(tu: rt.TripUpdate, header_ts: int) -> None:
    assert tu.HasField("trip"), "TripUpdate.trip is required"
    _check_trip(tu.trip)
    assert tu.trip.trip_id, "our trip updates name their trip"
    assert tu.trip.start_date, "start_date tells the day's runs of a trip apart"
    assert tu.vehicle.id
    _check_fresh(tu.timestamp, header_ts)
    assert len(tu.stop_time_update) > 0, "a SCHEDULED TripUpdate has stop_time_updates"
    seqs = [s.stop_sequence for s in tu.stop_time_update]
    assert seqs == sorted(set(seqs)), "stop_time_updates in strictly increasing stop_sequence"
    times = []
    for stu in tu.stop_time_update:
        assert stu.HasField("stop_sequence")
        assert stu.stop_id
        assert stu.HasField("arrival"), "an arrival StopTimeEvent"
        assert stu.arrival.HasField("time") or stu.arrival.HasField("delay")
        assert stu.arrival.time > 1_500_000_000, "POSIX seconds"
        assert stu.arrival.HasField("uncertainty")
        assert stu.arrival.uncertainty >= 0
        times.append(stu.arrival.time)
    assert times == sorted(times), "arrival times do not go back along the trip"


def _check_vehicle(vp: rt.VehiclePosition, header_ts: int) -> None:
    assert vp.vehicle.id, "VehicleDescriptor.id"
    assert vp.HasField("position")
    assert -90 <= vp.position.latitude <= 90
    assert -180 <= vp.position.longitude <= 180
    assert vp.HasField("timestamp")
    _check_fresh(vp.timestamp, header_ts)
    if vp.HasField("trip"):
        _check_trip(vp.trip)
    if vp.HasField("current_stop_sequence"):
        assert vp.stop_id


@pytest.fixture
def net(settings: Settings, tmp_path: Path) -> Network:
    return import_sim_feed(settings, tmp_path)


@pytest.fixture
def client(settings: Settings, net: Network) -> Iterator[TestClient]:
    del net
    with ready_client(settings) as c:
        yield c


def _get(client: TestClient, path: str, **params: str) -> rt.FeedMessage:
    resp = client.get(path, params=params)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/x-protobuf"
    assert resp.headers["cache-control"] == "public, max-age=10"
    feed = rt.FeedMessage()
    feed.ParseFromString(resp.content)
    return feed


def _as_json(client: TestClient, path: str, **params: str) -> rt.FeedMessage:
    resp = client.get(path, params={**params, "format": "json"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    assert '"gtfs_realtime_version": "2.0"' in resp.text  # the spec's own field names
    return json_format.Parse(resp.text, rt.FeedMessage())  # type: ignore[no-any-return]


def _same_but_header_time(a: rt.FeedMessage, b: rt.FeedMessage) -> None:
    b.header.timestamp = a.header.timestamp
    assert a == b


def _predictions(
    net: Network, trip_id: str, vehicle: str, now: datetime, gps_age_s: float
) -> list[Prediction]:
    """Predictions for the stops 5.. of a trip, a minute apart, from a fix `gps_age_s` old."""
    trip = net.trips[trip_id]
    today = now.astimezone(ZoneInfo("Asia/Almaty")).date()
    return [
        Prediction(
            trip_id, today, i + 1, trip.stop_ids[i], trip.route_id, vehicle,
            now + timedelta(minutes=i), 20.0 + 5 * i, now + timedelta(minutes=i, seconds=-30),
            now - timedelta(seconds=gps_age_s),
        )
        for i in range(4, min(9, len(trip.stop_ids)))
    ]  # fmt: skip


def test_trip_updates_of_tracked_trips_only_fresh(
    client: TestClient, settings: Settings, net: Network
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    t1, t2, t3 = list(net.trips)[:3]
    rows = _predictions(net, t1, "shy-bus-0001", now, 8) + _predictions(
        net, t2, "shy-bus-0002", now, 20
    )
    add_predictions(settings, rows + _predictions(net, t3, "shy-bus-0003", now, 300))

    feed = _get(client, "/gtfs-rt/trip-updates", feed="shymkent")
    check_feed(feed, now)
    by_trip = {e.trip_update.trip.trip_id: e.trip_update for e in feed.entity}
    assert set(by_trip) == {t1, t2}  # t3's GPS is 5 minutes old
    tu = by_trip[t1]
    assert tu.trip.route_id == net.trips[t1].route_id
    assert tu.trip.start_date == rows[0].start_date.strftime("%Y%m%d")
    assert tu.trip.schedule_relationship == rt.TripDescriptor.ScheduleRelationship.SCHEDULED
    assert tu.vehicle.id == "shy-bus-0001"
    assert tu.timestamp == int((now - timedelta(seconds=8)).timestamp())
    mine = [p for p in rows if p.trip_id == t1]
    got = [
        (s.stop_sequence, s.stop_id, s.arrival.time, s.arrival.uncertainty)
        for s in tu.stop_time_update
    ]
    assert got == [
        (p.stop_sequence, p.stop_id, int(p.predicted_arrival.timestamp()), round(p.uncertainty_s))
        for p in mine
    ]  # fmt: skip
    _same_but_header_time(feed, _as_json(client, "/gtfs-rt/trip-updates", feed="shymkent"))


def test_vehicle_positions_with_the_tracked_trip_and_next_stop(
    client: TestClient, settings: Settings, net: Network
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    t1 = next(iter(net.trips))
    add_predictions(settings, _predictions(net, t1, "shy-bus-0001", now, 8))
    add_fixes(
        settings,
        [
            # The bus says nothing of its trip; the tracker matched it to t1.
            Fix("shy-bus-0001", now - timedelta(seconds=8), 42.31, 69.51, bearing=270.0),
            Fix("shy-bus-0002", now - timedelta(seconds=15), 42.32, 69.52, "r02", "x-9",
                "20261123"),
            Fix("shy-bus-0003", now - timedelta(seconds=400), 42.33, 69.53, "r02", "x-8"),
        ],
    )  # fmt: skip
    feed = _get(client, "/gtfs-rt/vehicle-positions", feed="shymkent")
    check_feed(feed, now)
    by_id = {e.id: e.vehicle for e in feed.entity}
    assert set(by_id) == {"shy-bus-0001", "shy-bus-0002"}  # shy-bus-0003 is silent
    tracked = by_id["shy-bus-0001"]
    assert tracked.trip.trip_id == t1
    assert tracked.trip.route_id == net.trips[t1].route_id
    assert tracked.stop_id == net.trips[t1].stop_ids[4]
    assert tracked.current_stop_sequence == 5
    assert tracked.current_status == rt.VehiclePosition.VehicleStopStatus.IN_TRANSIT_TO
    assert tracked.position.bearing == pytest.approx(270.0)
    assert tracked.timestamp == int((now - timedelta(seconds=8)).timestamp())
    reported = by_id["shy-bus-0002"]
    assert (reported.trip.trip_id, reported.trip.start_date) == ("x-9", "20261123")
    assert not reported.HasField("stop_id")
    assert reported.occupancy_status == rt.VehiclePosition.OccupancyStatus.MANY_SEATS_AVAILABLE
    assert reported.position.speed == pytest.approx(8.0)
    _same_but_header_time(feed, _as_json(client, "/gtfs-rt/vehicle-positions", feed="shymkent"))


def test_frequency_based_trips_carry_their_start_time(
    client: TestClient, settings: Settings
) -> None:
    """USF Bull Runner's trips run every 10 minutes under one trip_id: GTFS-RT requires
    `start_time` to say which run."""
    import_feed(settings.database_conninfo, BULLRUNNER, feed_id="usf")
    now = datetime.now(UTC).replace(microsecond=0)
    ny = ZoneInfo("America/New_York")
    day: date = now.astimezone(ny).date()
    origin = datetime.combine(day, datetime.min.time(), ny)
    # Trip 1's run starting 08:10 reaches its 5th stop (102) 176 s after its first.
    scheduled = origin + timedelta(hours=8, minutes=10, seconds=176)
    add_predictions(
        settings,
        [
            Prediction(
                "1", day, 5, "102", "A", "usf-bus-1", now + timedelta(minutes=2), 25.0,
                scheduled, now - timedelta(seconds=5), feed_id="usf",
            )
        ],
    )  # fmt: skip
    add_fixes(settings, [Fix("usf-bus-1", now - timedelta(seconds=5), 28.06, -82.41, city="usf")])
    updates = _get(client, "/gtfs-rt/trip-updates", feed="usf")
    check_feed(updates, now)
    trip = updates.entity[0].trip_update.trip
    assert (trip.trip_id, trip.start_time) == ("1", "08:10:00")
    positions = _get(client, "/gtfs-rt/vehicle-positions", feed="usf")
    check_feed(positions, now)
    assert positions.entity[0].vehicle.trip.start_time == "08:10:00"
    assert _get(client, "/gtfs-rt/trip-updates", feed="shymkent").entity == []


def test_a_feed_is_built_once_and_shared_for_a_moment(settings: Settings, net: Network) -> None:
    """Pollers within `api_answer_cache_s` share one build: the same bytes and header
    timestamp, with an `Age` header; a new prediction appears in the next build."""
    now = datetime.now(UTC).replace(microsecond=0)
    t1, t2 = list(net.trips)[:2]
    add_predictions(settings, _predictions(net, t1, "shy-bus-0001", now, 8))
    polled = settings.model_copy(update={"api_answer_cache_s": 5.0, "api_rate_limit_burst": 10**6})
    with ready_client(polled) as client:
        path = "/gtfs-rt/trip-updates"
        first = client.get(path, params={"feed": "shymkent"})
        again = client.get(path, params={"feed": "shymkent"})
        assert first.status_code == again.status_code == 200
        assert again.content == first.content
        assert "age" not in first.headers
        assert int(again.headers["age"]) <= 5
        add_predictions(settings, _predictions(net, t2, "shy-bus-0002", now, 8))
        assert client.get(path, params={"feed": "shymkent"}).content == first.content

        def both_trips() -> bool:
            feed = _get(client, path, feed="shymkent")
            return {e.trip_update.trip.trip_id for e in feed.entity} == {t1, t2}

        wait_until(both_trips, timeout_s=10, what="the second trip in a new build", poll_s=0.5)


def test_feeds_refuse_unknown_feeds_and_formats(client: TestClient) -> None:
    for path in ("/gtfs-rt/trip-updates", "/gtfs-rt/vehicle-positions"):
        resp = client.get(path, params={"feed": "atlantis"})
        assert resp.status_code == 404
        assert resp.headers["content-type"] == "application/problem+json"
        assert client.get(path).status_code == 422  # `feed` is required
        bad = client.get(path, params={"feed": "shymkent", "format": "xml"})
        assert bad.status_code == 422
