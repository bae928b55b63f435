"""Data and clients for the API tests: keys, meter tokens, rows written straight to the tables."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

import psycopg
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from smartcity import apikeys
from smartcity.db import storage
from smartcity.security import Role
from smartcity.servers import free_port
from smartcity.settings import Settings
from tests.helpers import wait_until


def make_key(settings: Settings, role: Role, name: str | None = None) -> str:
    with psycopg.connect(settings.database_conninfo, autocommit=True) as conn:
        return apikeys.create_key(conn, name or f"test-{role.value}", role)


def revoke_key(settings: Settings, name: str) -> None:
    with psycopg.connect(settings.database_conninfo, autocommit=True) as conn:
        apikeys.revoke_key(conn, name)


def make_meter_token(settings: Settings, meter_id: str) -> str:
    with psycopg.connect(settings.database_conninfo, autocommit=True) as conn:
        return apikeys.create_meter_token(conn, meter_id, "test")


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def add_devices(
    settings: Settings,
    rows: Iterable[tuple[str, str, str, str | None, datetime, str | None]],
) -> None:
    """(domain, device_id, city, district, last_seen, last_status) into the registry."""
    with psycopg.connect(settings.database_conninfo, autocommit=True) as conn:
        for domain, device_id, city, district, seen, status in rows:
            conn.execute(
                "INSERT INTO devices (domain, device_id, city, district, first_seen, last_seen, "
                "last_status, status_ts) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (domain, device_id, city, district, seen, seen, status, seen if status else None),
            )


def add_meter_readings(
    settings: Settings,
    meter_id: str,
    kind: str,
    readings: Sequence[tuple[datetime, float]],
    city: str = "astana",
) -> None:
    """Register readings (ts, kWh or m³) of one meter, in whatever order they are given."""
    column = "energy_import_kwh" if kind == "electricity" else "volume_m3"
    with psycopg.connect(settings.database_conninfo, autocommit=True) as conn:
        mode = storage.read_mode(conn)
        storage.ensure_partitions(
            conn, mode, "meter_readings", {storage.day_of(ts) for ts, _ in readings}
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO meter_readings (ts, meter_id, city, district, kind, "  # noqa: S608
                + column
                + ") VALUES (%s, %s, %s, 'esil', %s, %s)",
                [(ts, meter_id, city, kind, value) for ts, value in readings],
            )


@contextmanager
def ready_client(settings: Settings, app: FastAPI | None = None) -> Iterator[TestClient]:
    """A TestClient whose app has its pool open and its MQTT link connected."""
    app = app or create_app(settings)
    with TestClient(app) as client:
        wait_until(
            lambda: client.get("/ready").status_code == 200,
            timeout_s=15,
            what="the API to be ready",
            poll_s=0.1,
        )
        yield client


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """`app` under uvicorn on a free 127.0.0.1 port in a thread; yields its base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=free_port(),
        log_level="warning",
        lifespan="on",
        # Open streams would hold a graceful shutdown forever; the tests close theirs first.
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout_s=15, what="uvicorn to start")
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(15)
        assert not thread.is_alive(), "uvicorn did not stop within 15 s"
