"""Residents' consumption from raw register readings, and the public rate limit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from smartcity.settings import Settings
from tests.apidata import add_meter_readings, auth, make_meter_token, ready_client

T0 = datetime(2026, 11, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with ready_client(settings) as c:
        yield c


def _consumption(
    client: TestClient, meter: str, token: str, since: datetime, until: datetime
) -> dict[str, object]:
    resp = client.get(
        f"/v1/meters/{meter}/consumption",
        headers=auth(token),
        params={"from": since.isoformat(), "to": until.isoformat()},
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, object] = resp.json()
    return body


def test_consumption_is_the_register_increase_over_the_range(
    settings: Settings, client: TestClient
) -> None:
    # Hourly readings 100, 101, 103, 106, ... (increase 1, 2, 3, ...), stored out of order.
    values = [100.0 + sum(range(i + 1)) for i in range(10)]
    readings = [(T0 + i * HOUR, v) for i, v in enumerate(values)]
    add_meter_readings(settings, "ast-em-000010", "electricity", readings[::-1])
    token = make_meter_token(settings, "ast-em-000010")

    # From 01:30 to 05:00: anchored by the 01:00 reading (101), ends at the 05:00 one (115).
    body = _consumption(client, "ast-em-000010", token, T0 + 1.5 * HOUR, T0 + 5 * HOUR)
    assert body["consumption"] == pytest.approx(values[5] - values[1])
    assert body["unit"] == "kWh"
    assert body["complete"] is True
    assert body["readings"] == 5

    # A range that starts before the first reading: only what the readings show, flagged.
    body = _consumption(client, "ast-em-000010", token, T0 - 5 * HOUR, T0 + 2 * HOUR)
    assert body["consumption"] == pytest.approx(values[2] - values[0])
    assert body["complete"] is False

    # Ranges that split the series add up to the whole.
    mid = T0 + 4.2 * HOUR
    a = _consumption(client, "ast-em-000010", token, T0, mid)["consumption"]
    b = _consumption(client, "ast-em-000010", token, mid, T0 + 9 * HOUR)["consumption"]
    assert isinstance(a, float)
    assert isinstance(b, float)
    assert a + b == pytest.approx(values[9] - values[0])


def test_a_register_reset_is_not_negative_consumption(
    settings: Settings, client: TestClient
) -> None:
    # Water meter replaced after the third reading: 500 → 502 → 505, then 0 → 1.5 → 4.
    series = [500.0, 502.0, 505.0, 0.0, 1.5, 4.0]
    add_meter_readings(
        settings, "ast-wm-000010", "water", [(T0 + i * HOUR, v) for i, v in enumerate(series)]
    )
    token = make_meter_token(settings, "ast-wm-000010")
    body = _consumption(client, "ast-wm-000010", token, T0, T0 + 6 * HOUR)
    assert body["consumption"] == pytest.approx(5.0 + 4.0)
    assert body["register_resets"] == 1
    assert body["unit"] == "m3"


def test_a_meter_without_readings_consumed_nothing_known(
    settings: Settings, client: TestClient
) -> None:
    token = make_meter_token(settings, "ast-em-000011")
    body = _consumption(client, "ast-em-000011", token, T0, T0 + HOUR)
    assert body["consumption"] == 0
    assert body["readings"] == 0
    assert body["kind"] is None
    assert body["complete"] is False


def test_range_limits(settings: Settings, client: TestClient) -> None:
    token = make_meter_token(settings, "ast-em-000012")
    url = "/v1/meters/ast-em-000012/consumption"
    too_long = {"from": T0.isoformat(), "to": (T0 + timedelta(days=401)).isoformat()}
    resp = client.get(url, headers=auth(token), params=too_long)
    assert resp.status_code == 422
    assert "400 days" in resp.json()["detail"]
    backwards = {"from": (T0 + HOUR).isoformat(), "to": T0.isoformat()}
    assert client.get(url, headers=auth(token), params=backwards).status_code == 422


def test_public_routes_are_rate_limited_per_client(settings: Settings) -> None:
    limited = settings.model_copy(update={"api_rate_limit_burst": 3, "api_rate_limit_per_s": 0.1})
    with ready_client(limited) as client:
        codes = [client.get("/v1/lighting/summary").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        resp = client.get("/v1/meters/ast-em-000001/consumption")
        assert resp.status_code == 429
        assert resp.headers["content-type"] == "application/problem+json"
        # 0.1 tokens/s: the next one is ~10 s away.
        assert 1 <= int(resp.headers["retry-after"]) <= 10
        # Operator routes are not rate-limited (they have keys; a key can be revoked).
        assert client.get("/v1/devices").status_code == 401
        assert "smartcity_api_rate_limited_total 2.0" in client.get("/metrics").text
