"""API keys, roles, revocation and residents' meter tokens, through the HTTP API and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from typer.testing import CliRunner

from smartcity import security
from smartcity.cli import app as cli
from smartcity.security import Role
from smartcity.settings import Settings
from tests.apidata import (
    add_devices,
    add_meter_readings,
    auth,
    make_key,
    make_meter_token,
    ready_client,
    revoke_key,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    add_devices(settings, [("lighting", "ast-lamp-000001", "astana", "esil", T0, "online")])
    with ready_client(settings) as c:
        yield c


def _is_problem(resp: Response, status: int) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["status"] == status


def test_keys_are_random_and_only_their_digest_is_stored(settings: Settings) -> None:
    a, b = security.new_secret("sc_"), security.new_secret("sc_")
    assert a != b
    assert a.startswith("sc_")
    assert len(a) == 46
    make_key(settings, Role.VIEWER, "viewer-1")
    with psycopg.connect(settings.database_conninfo) as conn:
        row = conn.execute("SELECT key_hash, key_prefix FROM api_keys").fetchone()
    assert row is not None
    assert len(row[0]) == 32
    assert str(row[1]).startswith("sc_")
    assert len(str(row[1])) == 9
    assert security.same_digest(security.digest(a), security.digest(a))
    assert not security.same_digest(security.digest(a), security.digest(b))


def test_device_routes_refuse_missing_unknown_and_malformed_keys(client: TestClient) -> None:
    _is_problem(client.get("/v1/devices"), 401)
    _is_problem(client.get("/v1/devices", headers=auth("sc_" + "x" * 43)), 401)
    _is_problem(client.get("/v1/devices", headers=auth("not-a-key")), 401)
    _is_problem(client.get("/v1/devices", headers={"X-API-Key": "sc_" + "y" * 43}), 401)
    resp = client.get("/v1/devices")
    assert resp.headers["www-authenticate"].startswith("Bearer")


def test_both_headers_work_and_revoked_keys_stop(settings: Settings, client: TestClient) -> None:
    key = make_key(settings, Role.VIEWER, "app-1")
    assert client.get("/v1/devices", headers=auth(key)).status_code == 200
    assert client.get("/v1/devices", headers={"X-API-Key": key}).status_code == 200
    revoke_key(settings, "app-1")
    _is_problem(client.get("/v1/devices", headers=auth(key)), 401)


def test_lamp_commands_need_the_operator_role(settings: Settings, client: TestClient) -> None:
    viewer = make_key(settings, Role.VIEWER, "viewer")
    body = {"dim_pct": 40}
    _is_problem(client.post("/v1/lighting/lamps/ast-lamp-000001/command", json=body), 401)
    resp = client.post(
        "/v1/lighting/lamps/ast-lamp-000001/command", json=body, headers=auth(viewer)
    )
    _is_problem(resp, 403)
    assert "operator" in resp.json()["detail"]
    admin = make_key(settings, Role.ADMIN, "admin")
    resp = client.post("/v1/lighting/lamps/ast-lamp-000001/command", json=body, headers=auth(admin))
    assert resp.status_code == 202, resp.text


def test_roles_are_ordered() -> None:
    assert Role.ADMIN.allows(Role.OPERATOR)
    assert Role.OPERATOR.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.OPERATOR)
    assert not Role.OPERATOR.allows(Role.ADMIN)


def test_a_meter_reads_only_with_its_own_token(settings: Settings, client: TestClient) -> None:
    add_meter_readings(
        settings, "ast-em-000001", "electricity", [(T0, 100.0), (T0 + timedelta(hours=1), 101.5)]
    )
    add_meter_readings(settings, "ast-em-000002", "electricity", [(T0, 50.0)])
    mine = make_meter_token(settings, "ast-em-000001")
    theirs = make_meter_token(settings, "ast-em-000002")
    params = {"from": T0.isoformat(), "to": (T0 + timedelta(days=1)).isoformat()}
    url = "/v1/meters/ast-em-000001/consumption"
    ok = client.get(url, params=params, headers=auth(mine))
    assert ok.status_code == 200, ok.text
    assert ok.json()["consumption"] == pytest.approx(1.5)

    refusals = [
        client.get(url, params=params),  # no token
        client.get(url, params=params, headers=auth(theirs)),  # another resident's token
        client.get(url, params=params, headers=auth("mt_" + "z" * 43)),  # unknown token
        client.get(url, params=params, headers=auth(make_key(settings, Role.ADMIN))),  # API key
        # An id that does not exist answers exactly like one that does: no enumeration.
        client.get("/v1/meters/ast-em-999999/consumption", params=params, headers=auth(mine)),
    ]
    for resp in refusals:
        _is_problem(resp, 401)
    assert len({(r.text, r.headers["www-authenticate"]) for r in refusals}) == 1


def test_revoked_meter_tokens_stop_working(settings: Settings, client: TestClient) -> None:
    token = make_meter_token(settings, "ast-wm-000001")
    url = "/v1/meters/ast-wm-000001/consumption"
    assert client.get(url, headers=auth(token)).status_code == 200
    result = CliRunner().invoke(
        cli, ["apikey", "revoke-meter-tokens", "ast-wm-000001"], env=_env(settings)
    )
    assert result.exit_code == 0, result.output
    assert "revoked 1 token" in result.output
    _is_problem(client.get(url, headers=auth(token)), 401)


def test_no_public_route_reveals_meter_ids(settings: Settings, client: TestClient) -> None:
    add_devices(settings, [("metering", "ast-em-000777", "astana", "esil", T0, "online")])
    add_meter_readings(settings, "ast-em-000777", "electricity", [(T0, 1.0)])
    public = [
        path
        for path, item in client.get("/openapi.json").json()["paths"].items()
        if "get" in item and "{" not in path and path.startswith("/v1/")
    ]
    assert public  # the lighting summary at least
    for path in public:
        if path.startswith("/v1/live"):
            continue  # an endless stream; it carries vehicle positions only (test_api_live)
        resp = client.get(path)
        assert "ast-em-000777" not in resp.text, path
    _is_problem(client.get("/v1/devices", params={"domain": "metering"}), 401)
    _is_problem(client.get("/v1/devices/metering/ast-em-000777"), 401)


def _env(settings: Settings) -> dict[str, str]:
    return {"SMARTCITY_DATABASE_URL": settings.database_conninfo}


def test_cli_creates_lists_and_revokes_keys(settings: Settings, client: TestClient) -> None:
    runner = CliRunner()
    created = runner.invoke(
        cli, ["apikey", "create", "--name", "ops", "--role", "operator"], env=_env(settings)
    )
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("sc_")
    assert client.get("/v1/devices", headers=auth(key)).status_code == 200

    listed = runner.invoke(cli, ["apikey", "list"], env=_env(settings), terminal_width=200)
    assert listed.exit_code == 0
    assert "ops" in listed.output
    assert "operator" in listed.output
    assert key not in listed.output  # the key itself is never shown again

    dup = runner.invoke(
        cli, ["apikey", "create", "--name", "ops", "--role", "viewer"], env=_env(settings)
    )
    assert dup.exit_code != 0
    assert "exists already" in str(dup.exception)
    bad_role = runner.invoke(
        cli, ["apikey", "create", "--name", "x", "--role", "root"], env=_env(settings)
    )
    assert bad_role.exit_code != 0

    assert runner.invoke(cli, ["apikey", "revoke", "ops"], env=_env(settings)).exit_code == 0
    _is_problem(client.get("/v1/devices", headers=auth(key)), 401)
    again = runner.invoke(cli, ["apikey", "revoke", "ops"], env=_env(settings))
    assert again.exit_code != 0
    assert "no active API key" in str(again.exception)

    token = runner.invoke(cli, ["apikey", "meter-token", "ast-em-000001"], env=_env(settings))
    assert token.exit_code == 0
    assert token.stdout.strip().splitlines()[-1].startswith("mt_")
