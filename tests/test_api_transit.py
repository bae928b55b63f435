"""Resident transit endpoints: stops near, routes, vehicles of a route, next arrivals at a stop
(live predictions merged with the timetable), on the simulator's Shymkent feed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from api.routes.transit import Arrivals
from simulators.gtfs import Network
from smartcity.settings import Settings
from smartcity.transit.gtfs_import import import_feed
from tests.apidata import ready_client
from tests.gtfs_feeds import BULLRUNNER
from tests.helpers import wait_until
from tests.transitdata import Fix, Prediction, add_fixes, add_predictions, import_sim_feed

ALMATY = ZoneInfo("Asia/Almaty")
MONDAY = date(2026, 11, 23)
# 08:00 on a Monday in Shymkent: rush-hour service, five-minute headways.
AT = datetime(2026, 11, 23, 8, 0, tzinfo=ALMATY).astimezone(UTC)
ORIGIN = datetime(2026, 11, 23, 0, 0, tzinfo=ALMATY)  # the service day's 00:00:00


@pytest.fixture
def net(settings: Settings, tmp_path: Path) -> Network:
    return import_sim_feed(settings, tmp_path)


@pytest.fixture
def client(settings: Settings, net: Network) -> Iterator[TestClient]:
    del net
    with ready_client(settings) as c:
        yield c


def _busy_stop(net: Network) -> str:
    """A stop in the middle of the first trip: served by every run of its route."""
    return next(iter(net.trips.values())).stop_ids[3]


def _timetable(net: Network, stop_id: str, after: datetime) -> list[tuple[datetime, str]]:
    """(departure, trip_id) at a stop on MONDAY after `after`, straight from the network."""
    out = []
    for t in net.trips.values():
        if t.service_id != "wd":
            continue
        for i, s in enumerate(t.stop_ids[:-1]):  # the last stop is an arrival only
            when = ORIGIN + timedelta(seconds=t.departure_s[i])
            if s == stop_id and when >= after:
                out.append((when.astimezone(UTC), t.trip_id))
    return sorted(out)


def _seq(net: Network, trip_id: str, stop_id: str) -> int:
    return net.trips[trip_id].stop_ids.index(stop_id) + 1


def test_arrivals_from_the_timetable_when_no_bus_is_tracked(
    client: TestClient, net: Network
) -> None:
    stop = _busy_stop(net)
    resp = client.get(f"/v1/stops/{stop}/arrivals", params={"at": AT.isoformat(), "limit": 8})
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "public, max-age=2"
    body = resp.json()
    # The answer is built as plain JSON: exactly the documented model's fields and formats.
    assert Arrivals.model_validate_json(resp.content).model_dump(mode="json") == body
    assert body["stop"]["stop_id"] == stop
    assert body["stop"]["name"] == net.stops[stop].names[1]  # the feed's own text is Russian
    expected = _timetable(net, stop, AT)[:8]
    got = [(datetime.fromisoformat(a["time"]), a["trip_id"]) for a in body["arrivals"]]
    assert got == expected
    first = body["arrivals"][0]
    assert first["live"] is False
    assert first["vehicle_id"] is None
    assert first["uncertainty_s"] is None
    assert first["gps_age_s"] is None
    assert first["start_date"] == "2026-11-23"
    minutes = int((expected[0][0] - AT).total_seconds() // 60)
    assert first["minutes_away"] == minutes


def test_live_predictions_replace_their_trips_in_the_timetable(
    client: TestClient, settings: Settings, net: Network
) -> None:
    stop = _busy_stop(net)
    planned = _timetable(net, stop, AT)
    (t1_at, t1), (_, t2), (t3_at, t3) = planned[0], planned[1], planned[2]
    trip2 = net.trips[t2]
    last_seq = len(trip2.stop_ids)
    add_predictions(
        settings,
        [
            # Run 1: a bus 10 s ago, late: due in 4 minutes.
            Prediction(
                t1, MONDAY, _seq(net, t1, stop), stop, net.trips[t1].route_id, "shy-bus-0001",
                AT + timedelta(minutes=4, seconds=20), 42.4, t1_at, AT - timedelta(seconds=10),
            ),
            # Run 2: tracked, but predicted only at its last stop: it has passed this one.
            Prediction(
                t2, MONDAY, last_seq, trip2.stop_ids[-1], trip2.route_id, "shy-bus-0002",
                AT + timedelta(minutes=20), 90.0, AT + timedelta(minutes=19),
                AT - timedelta(seconds=5),
            ),
            # Run 3: its GPS is 200 s old: not live, the timetable stands.
            Prediction(
                t3, MONDAY, _seq(net, t3, stop), stop, net.trips[t3].route_id, "shy-bus-0003",
                AT + timedelta(minutes=1), 30.0, t3_at, AT - timedelta(seconds=200),
            ),
        ],
    )  # fmt: skip
    resp = client.get(
        f"/v1/stops/{stop}/arrivals", params={"at": AT.isoformat(), "limit": 6, "lang": "en"}
    )
    assert resp.status_code == 200, resp.text
    assert Arrivals.model_validate_json(resp.content).model_dump(mode="json") == resp.json()
    arrivals = resp.json()["arrivals"]
    assert resp.json()["stop"]["name"] == net.stops[stop].names[2]
    trips = [a["trip_id"] for a in arrivals]
    assert t2 not in trips
    assert trips.count(t1) == 1
    assert trips.count(t3) == 1
    live = next(a for a in arrivals if a["trip_id"] == t1)
    assert live["live"] is True
    assert live["vehicle_id"] == "shy-bus-0001"
    assert live["uncertainty_s"] == pytest.approx(42.4)
    assert live["gps_age_s"] == pytest.approx(10.0)
    assert live["minutes_away"] == 4
    assert datetime.fromisoformat(live["scheduled_time"]) == t1_at
    assert live["route_short_name"] == net.routes[net.trips[t1].route_id].short_name
    stale = next(a for a in arrivals if a["trip_id"] == t3)
    assert stale["live"] is False
    assert datetime.fromisoformat(stale["time"]) == t3_at
    # Soonest first, and the rest straight from the timetable.
    times = [datetime.fromisoformat(a["time"]) for a in arrivals]
    assert times == sorted(times)
    rest = [(t, trip) for t, trip in planned if trip not in (t1, t2)][: len(arrivals) - 1]
    assert [(t, trip) for t, trip in zip(times, trips, strict=True) if trip != t1] == rest


def test_arrivals_of_now_are_shared_for_a_moment_then_made_again(
    settings: Settings, net: Network
) -> None:
    """Everyone asking about a stop within `api_answer_cache_s` gets the same answer (one
    build); a new prediction shows once it has expired; `at` (a replay) is never shared."""
    stop = _busy_stop(net)
    trip = next(iter(net.trips.values()))  # it serves the stop (its 4th)
    polled = settings.model_copy(update={"api_answer_cache_s": 5.0, "api_rate_limit_burst": 10**6})
    with ready_client(polled) as client:
        first = client.get(f"/v1/stops/{stop}/arrivals")
        again = client.get(f"/v1/stops/{stop}/arrivals")
        assert first.status_code == again.status_code == 200
        assert again.content == first.content  # the same `at`: the same answer
        assert "age" not in first.headers
        assert "age" in again.headers
        other = client.get(f"/v1/stops/{stop}/arrivals", params={"lang": "en"})
        assert other.json()["at"] != first.json()["at"]  # another key: made anew
        replay = client.get(f"/v1/stops/{stop}/arrivals", params={"at": AT.isoformat()})
        assert "age" not in replay.headers
        assert replay.json()["at"] == "2026-11-23T03:00:00Z"
        now = datetime.now(UTC)
        add_predictions(
            settings,
            [
                Prediction(
                    trip.trip_id, now.astimezone(ALMATY).date(), 4, stop, trip.route_id,
                    "shy-bus-0042", now + timedelta(minutes=2), 30.0, now + timedelta(minutes=1),
                    now - timedelta(seconds=5),
                )
            ],
        )  # fmt: skip
        assert client.get(f"/v1/stops/{stop}/arrivals").content == first.content  # still shared

        def bus_shown() -> bool:
            answer = client.get(f"/v1/stops/{stop}/arrivals").json()
            return any(a["vehicle_id"] == "shy-bus-0042" for a in answer["arrivals"])

        wait_until(bus_shown, timeout_s=10, what="the new prediction in a new answer", poll_s=0.5)


def test_arrivals_refuse_unknown_stops_and_bad_parameters(client: TestClient) -> None:
    resp = client.get("/v1/stops/no-such-stop/arrivals")
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"
    assert "no-such-stop" in resp.json()["detail"]
    assert client.get("/v1/stops/s1/arrivals", params={"feed": "nowhere"}).status_code == 404
    for params in ({"limit": 0}, {"limit": 51}, {"lang": "k1"}, {"at": "yesterday"}):
        resp = client.get("/v1/stops/s1/arrivals", params=params)
        assert resp.status_code == 422, params
        assert resp.headers["content-type"] == "application/problem+json"


def test_stops_near_a_place_with_names_in_each_language(client: TestClient, net: Network) -> None:
    stop = net.stops[_busy_stop(net)]
    names = {}
    for i, lang in enumerate(("kk", "ru", "en")):
        resp = client.get(
            "/v1/stops", params={"near": f"{stop.lat},{stop.lon}", "radius_m": 300, "lang": lang}
        )
        assert resp.status_code == 200, resp.text
        assert resp.headers["cache-control"] == "public, max-age=3600"
        found = resp.json()["stops"]
        assert found[0]["stop_id"] == stop.stop_id
        assert found[0]["distance_m"] < 1.0
        assert [s["distance_m"] for s in found] == sorted(s["distance_m"] for s in found)
        assert all(s["distance_m"] <= 300 for s in found)
        names[lang] = found[0]["name"]
        assert names[lang] == stop.names[i]
    far = client.get("/v1/stops", params={"near": "51.128,71.430"})  # Astana: no buses here
    assert far.status_code == 200
    assert far.json()["stops"] == []
    for near in ("abc", "42.3", "95,69", "42,200"):
        bad = client.get("/v1/stops", params={"near": near})
        assert bad.status_code == 422, near
        assert bad.headers["content-type"] == "application/problem+json"
    assert client.get("/v1/stops").status_code == 422  # `near` is required
    big = client.get("/v1/stops", params={"near": "42.3,69.5", "radius_m": 50_000})
    assert big.status_code == 422


def test_routes_with_names_in_the_language_asked(client: TestClient, net: Network) -> None:
    resp = client.get("/v1/routes")
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "public, max-age=3600"
    routes = resp.json()["routes"]
    assert {r["route_id"] for r in routes} == set(net.routes)
    one = next(r for r in routes if r["route_id"] == next(iter(net.routes)))
    first = next(iter(net.routes.values()))
    assert (one["short_name"], one["long_name"]) == (first.short_name, first.long_name)
    assert one["feed_id"] == "shymkent"
    assert one["route_type"] == 3
    assert client.get("/v1/routes", params={"feed": "nowhere"}).json()["routes"] == []


def test_vehicles_of_a_route_by_their_newest_fix(
    client: TestClient, settings: Settings, net: Network
) -> None:
    route_a, route_b = list(net.routes)[:2]
    now = datetime.now(UTC).replace(microsecond=0)
    add_fixes(
        settings,
        [
            Fix("shy-bus-0001", now - timedelta(seconds=40), 42.30, 69.50, route_a, "t1"),
            # Its newest fix, received first or not: by event time.
            Fix("shy-bus-0001", now - timedelta(seconds=5), 42.31, 69.51, route_a, "t1"),
            Fix("shy-bus-0002", now - timedelta(seconds=20), 42.32, 69.52, route_a, "t2"),
            Fix("shy-bus-0003", now - timedelta(seconds=10), 42.33, 69.53, route_b, "t3"),
            # Silent for 50 minutes: left out by default.
            Fix("shy-bus-0004", now - timedelta(minutes=50), 42.34, 69.54, route_a, "t4"),
        ],
    )
    resp = client.get("/v1/vehicles", params={"route": route_a})
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "public, max-age=10"
    vehicles = resp.json()["vehicles"]
    assert [v["vehicle_id"] for v in vehicles] == ["shy-bus-0001", "shy-bus-0002"]
    bus1 = vehicles[0]
    assert (bus1["lat"], bus1["lon"], bus1["trip_id"]) == (42.31, 69.51, "t1")
    assert 5 <= bus1["gps_age_s"] < 60
    assert bus1["tracked"] is False
    assert bus1["occupancy"] == "MANY_SEATS_AVAILABLE"
    # With a longer limit the silent bus is back, at its only (old) position.
    longer = client.get("/v1/vehicles", params={"route": route_a, "max_age_s": 3600})
    ids = [v["vehicle_id"] for v in longer.json()["vehicles"]]
    assert ids == ["shy-bus-0001", "shy-bus-0002", "shy-bus-0004"]
    assert client.get("/v1/vehicles").status_code == 422  # `route` is required
    none = client.get("/v1/vehicles", params={"route": route_a, "feed": "almaty"})
    assert none.json()["vehicles"] == []


def test_resident_endpoints_are_rate_limited_per_client(settings: Settings, net: Network) -> None:
    limited = settings.model_copy(update={"api_rate_limit_per_s": 0.01, "api_rate_limit_burst": 3})
    stop = _busy_stop(net)
    with ready_client(limited) as client:
        answers = [
            client.get(f"/v1/stops/{stop}/arrivals").status_code,
            client.get("/v1/routes").status_code,
            client.get("/gtfs-rt/trip-updates", params={"feed": "shymkent"}).status_code,
        ]
        refused = client.get(f"/v1/stops/{stop}/arrivals")
    assert answers == [200, 200, 200]
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["content-type"] == "application/problem+json"


def test_a_live_run_of_a_frequency_based_trip_replaces_the_nearest_scheduled_run(
    client: TestClient, settings: Settings
) -> None:
    """USF Bull Runner: trip 1 leaves every 10 minutes and reaches stop 102 176 s in."""
    import_feed(settings.database_conninfo, BULLRUNNER, feed_id="usf")
    ny = ZoneInfo("America/New_York")
    monday = date(2019, 2, 25)
    at = datetime(2019, 2, 25, 8, 5, tzinfo=ny)
    run = datetime(2019, 2, 25, 8, 12, 56, tzinfo=ny)  # the 08:10 run at stop 102
    add_predictions(
        settings,
        [
            Prediction(
                "1", monday, 5, "102", "A", "usf-bus-1", run + timedelta(seconds=70), 25.0, run,
                at - timedelta(seconds=3), feed_id="usf",
            )
        ],
    )  # fmt: skip
    resp = client.get(
        "/v1/stops/102/arrivals", params={"at": at.isoformat(), "feed": "usf", "limit": 40}
    )
    assert resp.status_code == 200, resp.text
    runs = [
        (datetime.fromisoformat(a["time"]), a["live"])
        for a in resp.json()["arrivals"]
        if a["trip_id"] == "1"
    ]
    assert runs[:3] == [
        (run + timedelta(seconds=70), True),
        (run + timedelta(minutes=10), False),
        (run + timedelta(minutes=20), False),
    ]
    assert all(a["frequency_based"] for a in resp.json()["arrivals"] if not a["live"])
