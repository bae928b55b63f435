"""The HTTP API on a database filled through the ingest writer."""

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
from smartcity.settings import Settings
from tests.apidata import ready_client

NIGHT = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)  # 21:00 in Astana: lamps on


def _store_fleet(settings: Settings, lamps: int, at: datetime) -> None:
    fleet = LampFleet(get_city("astana"), lamps, seed=3)
    batch = Batch.empty()
    for i in range(lamps):
        payload = orjson.dumps(fleet.reading(i, at - timedelta(seconds=i % 50)))
        topic = topics.lamp_telemetry("city", "astana", fleet.lamps[i].lamp_id)
        out = decode(topics.parse_inbound("city", topic), payload, max_payload_bytes=65536)
        batch.rows.setdefault("lighting_readings", []).extend(out.rows["lighting_readings"])
        batch.sightings.extend(out.sightings)
    with BatchWriter(settings.database_conninfo) as writer:
        writer.write(batch)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with ready_client(settings) as c:
        yield c


def test_lighting_summary_counts_lamps_per_district(settings: Settings, client: TestClient) -> None:
    _store_fleet(settings, lamps=120, at=NIGHT)
    resp = client.get(
        "/v1/lighting/summary", params={"city": "astana", "at": NIGHT.isoformat(), "window_s": 300}
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["totals"]["lamps_reporting"] == 120
    assert body["totals"]["lamps_on"] == 120
    assert body["totals"]["lamps_faulty"] == 0
    assert sum(d["lamps_reporting"] for d in body["districts"]) == 120
    assert {d["district"] for d in body["districts"]} <= set(get_city("astana").districts)
    # 120 LED lamps of 30–150 W at full power: between 3.6 and 18 kW.
    assert 3.6 <= body["totals"]["power_kw"] <= 18.0


def test_lamps_outside_the_window_are_not_reporting(settings: Settings, client: TestClient) -> None:
    _store_fleet(settings, lamps=10, at=NIGHT)
    later = NIGHT + timedelta(hours=1)
    resp = client.get("/v1/lighting/summary", params={"city": "astana", "at": later.isoformat()})
    assert resp.status_code == 200
    assert resp.json()["totals"]["lamps_reporting"] == 0


def test_errors_are_problem_json(client: TestClient) -> None:
    resp = client.get("/v1/lighting/summary", params={"city": "atlantis"})
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"
    assert "atlantis" in resp.json()["detail"]

    resp = client.get("/v1/lighting/summary", params={"window_s": "soon"})
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["errors"][0]["loc"] == ["query", "window_s"]


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ok", "database": True, "mqtt": True}
