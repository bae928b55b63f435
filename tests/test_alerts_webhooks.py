"""Webhooks: a change is POSTed to a real local HTTP server that fails first, then takes it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx2
import orjson
import psycopg

from smartcity.alerts import store
from smartcity.alerts.loop import webhook_pass
from smartcity.settings import Settings
from tests.helpers import wait_until


class _Receiver(BaseHTTPRequestHandler):
    fail_first = 1
    bodies: ClassVar[list[dict[str, object]]] = []
    statuses: ClassVar[list[int]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        status = 503 if len(self.statuses) < self.fail_first else 200
        self.statuses.append(status)
        if status == 200:
            self.bodies.append(orjson.loads(body))
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@contextmanager
def _server() -> Iterator[str]:
    _Receiver.bodies, _Receiver.statuses = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, name="test-webhook", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _outbox(settings: Settings) -> list[tuple[int, bool, str | None]]:
    with psycopg.connect(settings.database_conninfo) as conn:
        rows = conn.execute(
            "SELECT attempts, delivered_at IS NOT NULL, last_error FROM alert_webhook_outbox"
        ).fetchall()
    return [(int(a), bool(d), e) for a, d, e in rows]


def test_a_failed_post_is_retried_with_backoff_and_survives_a_restart(
    settings: Settings,
) -> None:
    with _server() as url:
        hooked = settings.model_copy(
            update={"alerts_webhook_urls": url, "alerts_webhook_backoff_s": 0.2}
        )
        now = datetime.now(UTC)
        with psycopg.connect(hooked.database_conninfo, autocommit=True) as conn:
            alert_id, _ = store.raise_alert(
                conn,
                store.Key("lighting", "ast-lamp-w1", "lamp_failure"),
                city="astana",
                severity="major",
                message="lamp is on but draws 0.3 W",
                first=now,
                last=now,
            )
            with httpx2.Client(timeout=2.0) as client:
                assert webhook_pass(conn, hooked, client) == (1, 0, 1)  # queued, then 503
        assert _outbox(hooked) == [(1, False, "HTTP 503")]
        # A "restart": new connection, new client; the outbox row is due after its backoff.
        with (
            psycopg.connect(hooked.database_conninfo, autocommit=True) as conn,
            httpx2.Client(timeout=2.0) as client,
        ):
            wait_until(
                lambda: webhook_pass(conn, hooked, client)[1] == 1,
                timeout_s=10,
                what="the retry to be delivered",
            )
            assert webhook_pass(conn, hooked, client) == (0, 0, 0)  # nothing left, no repeat
    assert _Receiver.statuses == [503, 200]
    assert [(b["alert_id"], b["state"], b["rule"]) for b in _Receiver.bodies] == [
        (alert_id, "active", "lamp_failure")
    ]
    assert _outbox(hooked) == [(2, True, None)]


def test_without_urls_nothing_is_queued(settings: Settings) -> None:
    with psycopg.connect(settings.database_conninfo, autocommit=True) as conn:
        now = datetime.now(UTC)
        store.raise_alert(
            conn,
            store.Key("metering", "ast-em-w2", "meter_tamper"),
            city="astana",
            severity="major",
            message="tamper",
            first=now,
            last=now,
        )
        with httpx2.Client() as client:
            assert webhook_pass(conn, settings, client) == (0, 0, 0)
    assert _outbox(settings) == []
