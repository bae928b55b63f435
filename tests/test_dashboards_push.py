"""`dashboards push` through grafana-client, against a stand-in for Grafana's HTTP API.

No Grafana runs on the development machines, so a small local HTTP server plays the one
endpoint push uses (POST /api/dashboards/db) and records what it was sent. This checks the
requests we make (auth, overwrite, datasource uid), not Grafana's own behaviour.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dashboards.push import push
from dashboards.registry import DASHBOARDS
from dashboards.sql import PLUGIN_TYPE
from smartcity.errors import ServiceUnavailableError

TOKEN = "glsa_test_token"


class FakeGrafana(ThreadingHTTPServer):
    def __init__(self, status: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status = status
        self.requests: list[tuple[str, str, dict[str, Any]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeGrafana

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, self.headers.get("Authorization", ""), body))
        uid = body["dashboard"]["uid"]
        answer = (
            {"status": "success", "uid": uid, "url": f"/d/{uid}/x", "version": 1}
            if self.server.status == 200
            else {"message": "Unauthorized"}
        )
        data = json.dumps(answer).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(status: int) -> Iterator[FakeGrafana]:
    server = FakeGrafana(status)
    thread = threading.Thread(target=server.serve_forever, name="fake-grafana", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    yield from _serve(200)


@pytest.fixture
def refusing_grafana() -> Iterator[FakeGrafana]:
    yield from _serve(401)


def _datasource_uids(node: Any, kind: str = PLUGIN_TYPE) -> set[str]:
    if isinstance(node, dict):
        found = {str(node["uid"])} if node.get("type") == kind and "uid" in node else set()
        for value in node.values():
            found |= _datasource_uids(value, kind)
        return found
    if isinstance(node, list):
        return set().union(*(_datasource_uids(v, kind) for v in node)) if node else set()
    return set()


def test_push_saves_every_dashboard_with_overwrite_and_the_given_datasource(
    grafana: FakeGrafana,
) -> None:
    pushed = push(
        grafana.url,
        TOKEN,
        datasource_uid="their-postgres",
        prometheus_uid="their-prometheus",
        folder_uid="city",
    )
    assert len(pushed) == len(DASHBOARDS)
    assert len(grafana.requests) == len(DASHBOARDS)
    for path, auth, body in grafana.requests:
        assert path == "/api/dashboards/db"
        assert auth == f"Bearer {TOKEN}"
        assert body["overwrite"] is True
        assert body["folderUid"] == "city"
        assert body["dashboard"]["id"] is None
        assert _datasource_uids(body["dashboard"]) == {"their-postgres"}
        assert _datasource_uids(body["dashboard"], "prometheus") in (set(), {"their-prometheus"})
    ingest = next(b for _, _, b in grafana.requests if b["dashboard"]["title"] == "Ingest health")
    assert _datasource_uids(ingest["dashboard"], "prometheus") == {"their-prometheus"}
    assert {p.url for p in pushed} == {f"/d/{p.uid}/x" for p in pushed}


def test_a_refusal_is_a_clear_error(refusing_grafana: FakeGrafana) -> None:
    with pytest.raises(ServiceUnavailableError, match="Editor role"):
        push(refusing_grafana.url, TOKEN)
