"""The live vehicle stream (SSE) through the real broker and a real HTTP server, and the
drop-oldest policy for slow clients."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx2
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from api.app import create_app
from api.live import LiveHub
from api.metrics import ApiMetrics
from smartcity import topics
from smartcity.settings import Settings
from tests.apidata import serving
from tests.helpers import wait_until

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def _position(vehicle: str, route: str, i: int) -> bytes:
    return orjson.dumps(
        {
            "vehicle_id": vehicle,
            "ts": (T0 + timedelta(seconds=i)).isoformat(),
            "route_id": route,
            "lat": 42.3171,
            "lon": 69.5862 + i * 1e-4,
        }
    )


@pytest.fixture
def publisher(settings: Settings) -> Iterator[mqtt.Client]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pos-pub-{uuid.uuid4().hex[:8]}")
    client.connect(settings.mqtt_host, settings.mqtt_port)
    client.loop_start()
    yield client
    client.disconnect()
    client.loop_stop()


def _events(lines: Iterator[str], n: int) -> list[tuple[str, dict[str, object]]]:
    """The next `n` SSE events (event name, parsed data) from a stream's lines."""
    got: list[tuple[str, dict[str, object]]] = []
    event = "message"
    for line in lines:
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            got.append((event, orjson.loads(line[len("data: ") :])))
            event = "message"
            if len(got) == n:
                break
    return got


def test_positions_stream_filtered_by_city_and_route(
    settings: Settings, publisher: mqtt.Client
) -> None:
    root = settings.mqtt_topic_root

    def publish(city: str, vehicle: str, route: str, i: int) -> None:
        topic = topics.vehicle_position(root, city, vehicle)
        publisher.publish(topic, _position(vehicle, route, i), qos=1).wait_for_publish(5)

    with serving(create_app(settings)) as base, httpx2.Client(base_url=base, timeout=15) as http:
        wait_until(
            lambda: http.get("/ready").status_code == 200,
            timeout_s=15,
            what="the API to connect to the broker",
        )
        with (
            http.stream("GET", "/v1/live/vehicles?city=shymkent&route_id=r07") as r07,
            http.stream("GET", "/v1/live/vehicles") as everything,
        ):
            assert r07.headers["content-type"].startswith("text/event-stream")
            r07_lines, all_lines = r07.iter_lines(), everything.iter_lines()
            # The first line comes after the client is subscribed: publishing is safe now.
            assert next(r07_lines) == ": connected"
            assert next(all_lines) == ": connected"
            # An invalid payload is skipped, not forwarded and not fatal.
            publisher.publish(
                topics.vehicle_position(root, "shymkent", "shy-bus-0001"), b"{not json", qos=1
            ).wait_for_publish(5)
            for i in range(3):
                publish("shymkent", "shy-bus-0002", "r12", i)  # other route
                publish("almaty", "alm-bus-0001", "r07", i)  # other city
                publish("shymkent", "shy-bus-0001", "r07", i)

            got = _events(r07_lines, 3)
            assert [(e, g["city"], g["vehicle_id"], g["route_id"]) for e, g in got] == [
                ("position", "shymkent", "shy-bus-0001", "r07")
            ] * 3
            assert [g["ts"] for _e, g in got] == [
                (T0 + timedelta(seconds=i)).isoformat().replace("+00:00", "Z") for i in range(3)
            ]
            assert len(_events(all_lines, 9)) == 9
            metrics = http.get("/metrics").text
            assert "smartcity_api_stream_clients 2.0" in metrics
            assert "smartcity_api_stream_invalid_messages_total 1.0" in metrics
        # Both clients hung up: the hub forgets them.
        wait_until(
            lambda: "smartcity_api_stream_clients 0.0" in http.get("/metrics").text,
            timeout_s=10,
            what="the server to notice the clients left",
        )


async def test_a_slow_client_loses_the_oldest_events_and_is_told() -> None:
    metrics = ApiMetrics()
    hub = LiveHub("root", queue_max=3, metrics=metrics)
    with hub.subscribe("shymkent", None) as slow:
        for i in range(5):
            hub.offer(
                "root/shymkent/transit/shy-bus-0001/position", _position("shy-bus-0001", "r07", i)
            )
        assert slow.dropped == 2
        kept = [orjson.loads(slow.queue.get_nowait())["ts"] for _ in range(3)]
        assert kept == [
            (T0 + timedelta(seconds=i)).isoformat().replace("+00:00", "Z") for i in (2, 3, 4)
        ]
        assert metrics.stream_dropped._value.get() == 2
        # A position whose payload names another vehicle than its topic is not forwarded.
        hub.offer("root/shymkent/transit/shy-bus-0001/position", _position("other", "r07", 9))
        assert slow.queue.empty()
    assert not hub.subscribers
    await asyncio.sleep(0)
