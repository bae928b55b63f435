"""Alert routes: list and filter (viewer), acknowledge and clear (operator), problem+json."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from smartcity.alerts import store
from smartcity.security import Role
from smartcity.settings import Settings
from tests.apidata import auth, make_key, ready_client

T0 = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
PROBLEM = "application/problem+json"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with ready_client(settings) as c:
        yield c


def _raise(settings: Settings, domain: str, device: str, rule: str, city: str, at: datetime) -> int:
    # The rules' own write path (the ingest tests drive it from readings, test_alerts.py).
    with psycopg.connect(settings.database_conninfo, autocommit=True) as conn:
        alert_id, _ = store.raise_alert(
            conn,
            store.Key(domain, device, rule),
            city=city,
            severity="major",
            message=f"{rule} on {device}",
            first=at,
            last=at,
        )
    return alert_id


def _problem(resp: object, status: int) -> dict[str, object]:
    assert resp.status_code == status, resp.text  # type: ignore[attr-defined]
    assert resp.headers["content-type"].startswith(PROBLEM)  # type: ignore[attr-defined]
    body: dict[str, object] = resp.json()  # type: ignore[attr-defined]
    assert body["status"] == status
    return body


def test_list_filter_and_page(settings: Settings, client: TestClient) -> None:
    viewer = make_key(settings, Role.VIEWER)
    a = _raise(settings, "lighting", "ast-lamp-1", "lamp_failure", "astana", T0)
    b = _raise(settings, "metering", "ast-em-1", "meter_tamper", "astana", T0 + timedelta(hours=1))
    c = _raise(
        settings, "lighting", "shy-lamp-1", "day_burning", "shymkent", T0 + timedelta(hours=2)
    )
    _problem(client.get("/v1/alerts"), 401)

    def ids(**params: str | int) -> list[int]:
        resp = client.get("/v1/alerts", params=params, headers=auth(viewer))
        assert resp.status_code == 200, resp.text
        return [item["alert_id"] for item in resp.json()["items"]]

    assert ids() == [c, b, a]
    assert ids(city="astana") == [b, a]
    assert ids(domain="metering") == [b]
    assert ids(rule="day_burning") == [c]
    assert ids(state="active", severity="major") == [c, b, a]
    assert ids(state="cleared") == []
    assert ids(since=(T0 + timedelta(minutes=30)).isoformat()) == [c, b]
    assert ids(until=(T0 + timedelta(minutes=30)).isoformat()) == [a]
    page = client.get("/v1/alerts", params={"limit": 2}, headers=auth(viewer)).json()
    assert page["next_before_id"] == b
    assert ids(before_id=page["next_before_id"], limit=2) == [a]
    body = _problem(client.get("/v1/alerts", params={"rule": "nope"}, headers=auth(viewer)), 422)
    assert "lamp_failure" in str(body["detail"])
    one = client.get(f"/v1/alerts/{a}", headers=auth(viewer)).json()
    assert (one["device_id"], one["rule"], one["state"]) == ("ast-lamp-1", "lamp_failure", "active")
    _problem(client.get(f"/v1/alerts/{c + 100}", headers=auth(viewer)), 404)


def test_acknowledge_and_clear_record_who_and_when(settings: Settings, client: TestClient) -> None:
    viewer = make_key(settings, Role.VIEWER)
    operator = make_key(settings, Role.OPERATOR, "op-anna")
    alert_id = _raise(settings, "lighting", "ast-lamp-1", "lamp_failure", "astana", T0)
    url = f"/v1/alerts/{alert_id}"
    _problem(client.post(f"{url}/acknowledge", headers=auth(viewer)), 403)
    acked = client.post(f"{url}/acknowledge", headers=auth(operator))
    assert acked.status_code == 200, acked.text
    assert (acked.json()["state"], acked.json()["acknowledged_by"]) == ("acknowledged", "op-anna")
    assert acked.json()["acknowledged_at"] is not None
    _problem(client.post(f"{url}/acknowledge", headers=auth(operator)), 409)
    # The problem seen again while acknowledged repeats the same alert.
    assert _raise(settings, "lighting", "ast-lamp-1", "lamp_failure", "astana", T0) == alert_id
    cleared = client.post(f"{url}/clear", json={"reason": "lamp replaced"}, headers=auth(operator))
    assert cleared.status_code == 200, cleared.text
    body = cleared.json()
    assert (body["state"], body["cleared_by"], body["clear_reason"]) == (
        "cleared",
        "op-anna",
        "lamp replaced",
    )
    _problem(client.post(f"{url}/clear", headers=auth(operator)), 409)
    _problem(client.post(f"{url}/clear", json={"reason": ""}, headers=auth(operator)), 422)
    _problem(client.post("/v1/alerts/999999/clear", headers=auth(operator)), 404)
    # Cleared: the same problem later is a new alert.
    again = _raise(settings, "lighting", "ast-lamp-1", "lamp_failure", "astana", T0)
    assert again != alert_id
