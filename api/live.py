"""The live stream's fan-out: one MQTT subscription, many SSE clients.

Each client has its own bounded queue (`api_stream_queue_max` events). The MQTT loop never waits
for a client: when a client's queue is full the *oldest* event is dropped to make room (for
positions the newest fix is the one that matters), the client's `dropped` count grows, the
`smartcity_api_stream_dropped_events` metric counts it, and the client is told in its next
`dropped` event. Everything runs on the event loop, so no locks are needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import orjson
from pydantic import ValidationError

from api.metrics import ApiMetrics
from smartcity import topics
from smartcity.models import VehiclePosition
from smartcity.topics import Feed


@dataclass(eq=False)
class Subscriber:
    city: str | None
    route_id: str | None
    queue: asyncio.Queue[bytes]
    dropped: int = 0
    dropped_reported: int = 0

    def wants(self, city: str, route_id: str | None) -> bool:
        return (self.city is None or self.city == city) and (
            self.route_id is None or self.route_id == route_id
        )


@dataclass
class LiveHub:
    topic_root: str
    queue_max: int
    metrics: ApiMetrics
    subscribers: set[Subscriber] = field(default_factory=set)

    @contextmanager
    def subscribe(self, city: str | None, route_id: str | None) -> Iterator[Subscriber]:
        sub = Subscriber(city, route_id, asyncio.Queue(maxsize=self.queue_max))
        self.subscribers.add(sub)
        self.metrics.stream_clients.inc()
        try:
            yield sub
        finally:
            self.subscribers.discard(sub)
            self.metrics.stream_clients.dec()

    def offer(self, topic: str, payload: bytes) -> None:
        """Hand one MQTT message to every subscriber that wants it."""
        info = topics.parse_inbound(self.topic_root, topic)
        if info is None or info.feed is not Feed.VEHICLE_POSITION:
            return
        try:
            position = VehiclePosition.model_validate_json(payload)
        except ValidationError:
            # The ingest records bad payloads in dead_letters; the stream just skips them.
            self.metrics.stream_invalid.inc()
            return
        if position.vehicle_id != info.device_id:
            self.metrics.stream_invalid.inc()
            return
        event: bytes | None = None
        for sub in self.subscribers:
            if not sub.wants(info.city, position.route_id):
                continue
            if event is None:
                event = orjson.dumps({"city": info.city, **position.model_dump(mode="json")})
            if sub.queue.full():
                sub.queue.get_nowait()
                sub.dropped += 1
                self.metrics.stream_dropped.inc()
            sub.queue.put_nowait(event)
