"""Errors are problem+json everywhere; limits, CORS, metrics; 503 when a dependency is down."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response

from api.app import create_app
from smartcity.security import Role
from smartcity.servers import free_port
from smartcity.settings import Settings
from tests.apidata import add_devices, auth, make_key, ready_client
from tests.helpers import count_rows


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with ready_client(settings) as c:
        yield c


def _problem(resp: Response, status: int) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = resp.json()
    assert body["status"] == status
    assert "Traceback" not in resp.text
    return body


def test_404_405_422_are_problems(client: TestClient) -> None:
    _problem(client.get("/v1/nowhere"), 404)
    _problem(client.delete("/v1/lighting/summary"), 405)
    body = _problem(client.get("/v1/lighting/summary", params={"at": "yesterday"}), 422)
    assert body["errors"]
    _problem(client.get("/v1/lighting/summary", params={"at": "0001-01-01T00:00:00Z"}), 422)


def test_values_the_database_cannot_hold_are_422(settings: Settings, client: TestClient) -> None:
    h = auth(make_key(settings, Role.VIEWER))
    body = _problem(client.get("/v1/alerts", params={"city": "ast\x00ana"}, headers=h), 422)
    assert "NUL" in str(body["detail"])


def test_bad_command_bodies_are_422(settings: Settings, client: TestClient) -> None:
    h = auth(make_key(settings, Role.OPERATOR))
    url = "/v1/lighting/lamps/ast-lamp-000001/command"
    assert "lamp_on, dim_pct" in str(_problem(client.post(url, json={}, headers=h), 422))
    _problem(client.post(url, json={"dim_pct": 101}, headers=h), 422)
    _problem(client.post(url, json={"dim_pct": 50, "colour": "red"}, headers=h), 422)
    _problem(client.post(url, content=b"{not json", headers=h), 422)


def test_large_bodies_are_413_whether_declared_or_streamed(
    settings: Settings, client: TestClient
) -> None:
    h = auth(make_key(settings, Role.OPERATOR))
    url = "/v1/lighting/lamps/ast-lamp-000001/command"
    big = b'{"dim_pct": 50, "pad": "' + b"x" * 70_000 + b'"}'
    assert "65536" in str(_problem(client.post(url, content=big, headers=h), 413)["detail"])

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for _ in range(10):
            yield b"x" * 10_000

    _problem(client.post(url, content=chunks(), headers=h), 413)


def test_unexpected_errors_are_500_without_details(settings: Settings) -> None:
    app = create_app(settings)

    async def boom() -> None:
        raise RuntimeError("secret-connection-string")

    app.add_api_route("/boom", boom)  # a seam of our own: the app's error handler under test
    with TestClient(app, raise_server_exceptions=False) as client:
        resp = client.get("/boom")
    body = _problem(resp, 500)
    assert "secret" not in resp.text
    assert body["title"] == "Internal Server Error"


def test_cors_allows_only_configured_origins(settings: Settings) -> None:
    configured = settings.model_copy(update={"api_cors_origins": "https://ops.example.kz"})
    with TestClient(create_app(configured)) as client:
        ok = client.get("/health", headers={"Origin": "https://ops.example.kz"})
        assert ok.headers["access-control-allow-origin"] == "https://ops.example.kz"
        other = client.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    with TestClient(create_app(settings)) as client:  # default: no cross-origin access
        resp = client.get("/health", headers={"Origin": "https://ops.example.kz"})
        assert "access-control-allow-origin" not in resp.headers


def test_metrics_count_requests_by_route_template(client: TestClient) -> None:
    client.get("/health")
    client.get("/v1/devices/lighting/ast-lamp-000001")
    text = client.get("/metrics").text
    assert 'smartcity_api_requests_total{method="GET",route="/health",status="200"}' in text
    assert 'route="/v1/devices/{domain}/{device_id}",status="401"' in text
    assert "ast-lamp-000001" not in text
    assert "smartcity_api_mqtt_connected 1.0" in text


@pytest.mark.slow
def test_database_down_is_503_and_not_ready(settings: Settings) -> None:
    down = settings.model_copy(
        update={"database_url": f"postgresql://postgres@127.0.0.1:{free_port()}/smartcity"}
    )
    with TestClient(create_app(down)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["database"] is False
        resp = client.get("/v1/lighting/summary")
        body = _problem(resp, 503)
        assert "database" in str(body["detail"])
        assert resp.headers["retry-after"] == "5"


def test_broker_down_is_503_for_commands_and_not_ready(settings: Settings) -> None:
    down = settings.model_copy(update={"mqtt_port": free_port()})
    with TestClient(create_app(down)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json() == {"status": "unavailable", "database": True, "mqtt": False}
        add_devices(
            down,
            [("lighting", "ast-lamp-000001", "astana", "esil", datetime.now(UTC), None)],
        )
        h = auth(make_key(down, Role.OPERATOR))
        resp = client.post(
            "/v1/lighting/lamps/ast-lamp-000001/command", json={"dim_pct": 10}, headers=h
        )
        assert "MQTT broker" in str(_problem(resp, 503)["detail"])
        # Nothing is recorded for a command that was not sent.
        assert count_rows(down, "lamp_commands") == 0


def test_keys_and_tokens_never_reach_the_logs(
    settings: Settings,
    client: TestClient,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    key = make_key(settings, Role.OPERATOR, "logged")
    wrong = "sc_" + "w" * 43
    token = "mt_" + "t" * 43
    client.get("/v1/devices", headers=auth(key))
    client.get("/v1/devices", headers=auth(wrong))
    client.get("/v1/meters/ast-em-000001/consumption", headers=auth(token))
    client.post("/v1/lighting/lamps/x/command", json={"dim_pct": "secret"}, headers=auth(key))
    out, err = capfd.readouterr()
    logged = out + err + caplog.text
    for secret in (key, wrong, token, key[3:20]):
        assert secret not in logged
