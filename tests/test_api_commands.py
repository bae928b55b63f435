"""Lamp commands through the real broker: each addressed lamp receives a valid LampCommand on
its own cmd topic, and the command is recorded with who sent it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from ingest.decode import decode
from ingest.writer import Batch, BatchWriter
from simulators.lighting import LampFleet
from smartcity import topics
from smartcity.cities import get_city
from smartcity.models import LampCommand
from smartcity.security import Role
from smartcity.settings import Settings
from tests.apidata import auth, make_key, ready_client
from tests.helpers import wait_until

NIGHT = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
LAMPS = 100  # several cabinets and every district


class CommandListener:
    """A subscriber on every lamp's cmd topic under this test's root."""

    def __init__(self, settings: Settings) -> None:
        self.received: dict[str, list[bytes]] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"cmd-listener-{uuid.uuid4().hex[:8]}"
        )
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_args: self._subscribed.set()
        self._client.connect(settings.mqtt_host, settings.mqtt_port)
        self._client.subscribe(f"{settings.mqtt_topic_root}/+/lighting/+/cmd", qos=1)
        self._client.loop_start()
        wait_until(self._subscribed.is_set, timeout_s=10, what="the listener to subscribe")

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received.setdefault(msg.topic, []).append(bytes(msg.payload))

    def count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self.received.values())

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def fleet(settings: Settings) -> LampFleet:
    fleet = LampFleet(get_city("astana"), LAMPS, seed=11)
    batch = Batch.empty()
    for i in range(LAMPS):
        topic = topics.lamp_telemetry("city", "astana", fleet.lamps[i].lamp_id)
        out = decode(
            topics.parse_inbound("city", topic),
            orjson.dumps(fleet.reading(i, NIGHT)),
            max_payload_bytes=65536,
        )
        batch.rows.setdefault("lighting_readings", []).extend(out.rows["lighting_readings"])
        batch.sightings.extend(out.sightings)
    with BatchWriter(settings.database_conninfo) as writer:
        writer.write(batch)
    return fleet


@pytest.fixture
def listener(settings: Settings) -> Iterator[CommandListener]:
    lis = CommandListener(settings)
    yield lis
    lis.close()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with ready_client(settings) as c:
        yield c


def _commands_for(
    settings: Settings, listener: CommandListener, lamp_ids: list[str]
) -> dict[str, LampCommand]:
    root = settings.mqtt_topic_root
    wanted = {topics.lamp_command(root, "astana", lamp): lamp for lamp in lamp_ids}
    wait_until(
        lambda: all(t in listener.received for t in wanted),
        timeout_s=15,
        what=f"commands for {len(wanted)} lamps",
    )
    return {
        lamp: LampCommand.model_validate_json(listener.received[topic][-1])
        for topic, lamp in wanted.items()
    }


def test_one_lamp(
    settings: Settings, client: TestClient, fleet: LampFleet, listener: CommandListener
) -> None:
    key = make_key(settings, Role.OPERATOR, "night-shift")
    lamp_id = fleet.lamps[7].lamp_id
    expires = datetime.now(UTC) + timedelta(hours=3)
    resp = client.post(
        f"/v1/lighting/lamps/{lamp_id}/command",
        json={"dim_pct": 35, "expires_at": expires.isoformat()},
        headers=auth(key),
    )
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["lamps"] == 1
    assert body["issued_by"] == "night-shift"
    got = _commands_for(settings, listener, [lamp_id])[lamp_id]
    assert got.dim_pct == 35
    assert got.lamp_on is None
    assert got.command_id == body["command_id"]
    assert abs((got.expires_at or NIGHT) - expires) < timedelta(milliseconds=1)
    assert listener.count() == 1  # nobody else was addressed

    with psycopg.connect(settings.database_conninfo) as conn:
        rows = conn.execute(
            "SELECT lamp_id, target_kind, dim_pct, issued_by, issued_at FROM lamp_commands"
        ).fetchall()
    assert len(rows) == 1
    assert rows[0][:4] == (lamp_id, "lamp", 35.0, "night-shift")
    assert abs(rows[0][4] - datetime.now(UTC)) < timedelta(minutes=1)

    resp = client.post(
        "/v1/lighting/lamps/ast-lamp-999999/command", json={"lamp_on": True}, headers=auth(key)
    )
    assert resp.status_code == 404


def test_a_cabinet_and_a_district(
    settings: Settings, client: TestClient, fleet: LampFleet, listener: CommandListener
) -> None:
    key = make_key(settings, Role.OPERATOR, "ops")
    cabinet = fleet.lamps[45].cabinet_id
    in_cabinet = [lamp.lamp_id for lamp in fleet.lamps if lamp.cabinet_id == cabinet]
    assert 1 < len(in_cabinet) < len(fleet.lamps)  # a real cabinet: several lamps, not all
    resp = client.post(
        f"/v1/lighting/cabinets/{cabinet}/command", json={"lamp_on": False}, headers=auth(key)
    )
    assert resp.status_code == 202, resp.text
    assert resp.json()["lamps"] == len(in_cabinet)
    got = _commands_for(settings, listener, in_cabinet)
    assert all(c.lamp_on is False and c.dim_pct is None for c in got.values())
    assert len({c.command_id for c in got.values()}) == 1
    assert listener.count() == len(in_cabinet)

    district = fleet.lamps[0].district
    in_district = [lamp.lamp_id for lamp in fleet.lamps if lamp.district == district]
    resp = client.post(
        f"/v1/lighting/districts/{district}/command",
        params={"city": "astana"},
        json={"lamp_on": True, "dim_pct": 80},
        headers=auth(key),
    )
    assert resp.status_code == 202, resp.text
    assert resp.json()["lamps"] == len(in_district)
    wait_until(
        lambda: listener.count() == len(in_cabinet) + len(in_district),
        timeout_s=15,
        what="the district's commands",
    )
    got = _commands_for(settings, listener, in_district)
    assert all(c.lamp_on is True and c.dim_pct == 80 for c in got.values())

    with psycopg.connect(settings.database_conninfo) as conn:
        per_target: dict[str, int] = dict(
            conn.execute("SELECT target_kind, count(*) FROM lamp_commands GROUP BY 1").fetchall()
        )
    assert per_target == {"cabinet": len(in_cabinet), "district": len(in_district)}

    resp = client.post(
        "/v1/lighting/districts/nowhere/command",
        params={"city": "astana"},
        json={"lamp_on": True},
        headers=auth(key),
    )
    assert resp.status_code == 404
    resp = client.post(
        f"/v1/lighting/lamps/{fleet.lamps[0].lamp_id}/command",
        json={"dim_pct": 10, "expires_at": "2020-01-01T00:00:00Z"},
        headers=auth(key),
    )
    assert resp.status_code == 422
    assert "expires_at" in resp.json()["detail"]
