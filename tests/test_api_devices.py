"""Device routes: list, filter, search and page; one device with its latest reading; history."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from fastapi.testclient import TestClient

from ingest.decode import decode
from ingest.writer import Batch, BatchWriter
from simulators.lighting import LampFleet
from smartcity import topics
from smartcity.cities import get_city
from smartcity.security import Role
from smartcity.settings import Settings
from tests.apidata import add_devices, add_meter_readings, auth, make_key, ready_client

NIGHT = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)


def _store_lamp_readings(
    settings: Settings, fleet: LampFleet, lamp: int, times: list[datetime]
) -> None:
    """Readings of one lamp through the ingest's decoder and writer, in the order given."""
    for ts in times:
        batch = Batch.empty()
        payload = orjson.dumps(fleet.reading(lamp, ts))
        topic = topics.lamp_telemetry("city", "astana", fleet.lamps[lamp].lamp_id)
        out = decode(topics.parse_inbound("city", topic), payload, max_payload_bytes=65536)
        batch.rows["lighting_readings"] = out.rows["lighting_readings"]
        batch.sightings.extend(out.sightings)
        with BatchWriter(settings.database_conninfo) as writer:
            writer.write(batch)


@pytest.fixture
def viewer(settings: Settings) -> str:
    return make_key(settings, Role.VIEWER)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with ready_client(settings) as c:
        yield c


def _registry(settings: Settings) -> None:
    rows: list[tuple[str, str, str, str | None, datetime, str | None]] = []
    for i in range(25):
        status = ("online", "offline", None)[i % 3]
        rows.append(
            ("lighting", f"ast-lamp-{i:06d}", "astana", ("esil", "nura")[i % 2], NIGHT, status)
        )
    rows += [
        ("metering", "ast-em-000001", "astana", "esil", NIGHT, "online"),
        ("transit", "shy-bus-0001", "shymkent", None, NIGHT, "online"),
    ]
    add_devices(settings, rows)


def test_list_filters_and_searches(settings: Settings, client: TestClient, viewer: str) -> None:
    _registry(settings)
    h = auth(viewer)
    everything = client.get("/v1/devices", headers=h, params={"limit": 500}).json()
    assert len(everything["items"]) == 27
    assert everything["next_cursor"] is None

    def ids(**params: str | int) -> list[str]:
        resp = client.get("/v1/devices", headers=h, params={**params, "limit": 500})
        assert resp.status_code == 200, resp.text
        return [d["device_id"] for d in resp.json()["items"]]

    assert ids(city="shymkent") == ["shy-bus-0001"]
    assert ids(domain="metering") == ["ast-em-000001"]
    assert len(ids(domain="lighting", district="esil")) == 13
    assert len(ids(domain="lighting", status="offline")) == 8
    assert len(ids(domain="lighting", status="unknown")) == 8
    assert ids(q="ast-lamp-00001") == [f"ast-lamp-{i:06d}" for i in range(10, 20)]
    # '_' and '%' in a search are literal characters, not LIKE wildcards.
    assert ids(q="ast_lamp") == []


def test_pages_follow_the_cursor_without_gaps_or_repeats(
    settings: Settings, client: TestClient, viewer: str
) -> None:
    _registry(settings)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 10}
        if cursor:
            params["cursor"] = cursor
        body = client.get("/v1/devices", headers=auth(viewer), params=params).json()
        seen += [f"{d['domain']}/{d['device_id']}" for d in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 27
    assert seen == sorted(seen)


def test_bad_paging_is_a_clear_422(client: TestClient, viewer: str) -> None:
    resp = client.get("/v1/devices", headers=auth(viewer), params={"limit": 501})
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["loc"] == ["query", "limit"]
    resp = client.get("/v1/devices", headers=auth(viewer), params={"cursor": "bm9wZQ=="})
    assert resp.status_code == 422
    assert "cursor" in resp.json()["detail"]


def test_detail_has_the_newest_reading_by_event_time(
    settings: Settings, client: TestClient, viewer: str
) -> None:
    fleet = LampFleet(get_city("astana"), 3, seed=5)
    lamp_id = fleet.lamps[1].lamp_id
    # The newest reading arrives first, an older one late: "latest" must still be the newest.
    _store_lamp_readings(settings, fleet, 1, [NIGHT, NIGHT - timedelta(minutes=10)])
    resp = client.get(f"/v1/devices/lighting/{lamp_id}", headers=auth(viewer))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["device_id"] == lamp_id
    assert body["district"] == fleet.lamps[1].district
    assert body["status"] == "unknown"
    assert datetime.fromisoformat(body["latest_reading"]["ts"]) == NIGHT
    assert body["latest_reading"]["cabinet_id"] == fleet.lamps[1].cabinet_id
    assert "ingested_at" not in body["latest_reading"]

    resp = client.get("/v1/devices/lighting/ast-lamp-999999", headers=auth(viewer))
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"


def test_history_is_newest_first_within_the_range(
    settings: Settings, client: TestClient, viewer: str
) -> None:
    fleet = LampFleet(get_city("astana"), 1, seed=5)
    times = [NIGHT - timedelta(minutes=m) for m in (30, 0, 20, 10, 40)]
    _store_lamp_readings(settings, fleet, 0, times)
    lamp_id = fleet.lamps[0].lamp_id
    params = {"from": (NIGHT - timedelta(minutes=25)).isoformat(), "to": NIGHT.isoformat()}
    resp = client.get(
        f"/v1/devices/lighting/{lamp_id}/history", headers=auth(viewer), params=params
    )
    assert resp.status_code == 200, resp.text
    got = [datetime.fromisoformat(r["ts"]) for r in resp.json()["readings"]]
    assert got == [NIGHT, NIGHT - timedelta(minutes=10), NIGHT - timedelta(minutes=20)]

    resp = client.get(
        f"/v1/devices/lighting/{lamp_id}/history",
        headers=auth(viewer),
        params={**params, "limit": 1},
    )
    assert len(resp.json()["readings"]) == 1
    bad = client.get(
        f"/v1/devices/lighting/{lamp_id}/history",
        headers=auth(viewer),
        params={"from": params["to"], "to": params["from"]},
    )
    assert bad.status_code == 422


def test_meter_devices_and_their_readings_need_a_key(
    settings: Settings, client: TestClient, viewer: str
) -> None:
    add_devices(settings, [("metering", "ast-wm-000009", "astana", "esil", NIGHT, None)])
    add_meter_readings(settings, "ast-wm-000009", "water", [(NIGHT, 12.5)])
    url = "/v1/devices/metering/ast-wm-000009"
    assert client.get(url).status_code == 401
    resp = client.get(url, headers=auth(viewer))
    assert resp.status_code == 200
    assert resp.json()["latest_reading"]["volume_m3"] == 12.5
    assert resp.json()["latest_reading"]["kind"] == "water"
