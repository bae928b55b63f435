"""The API's one MQTT connection: publishes lamp commands, feeds the live stream.

`MqttLink.run()` is a background task owned by the app's lifespan (started there, cancelled and
awaited there). It connects, subscribes to the vehicle-position feed (QoS 0: a live view needs
the newest fix, not every fix), hands each message to the `LiveHub`, and reconnects after a
broker outage with capped, jittered backoff. While it is disconnected `publish` raises
`BrokerUnavailableError` (a 503) at once rather than queueing commands the operator believes were
sent.
"""

from __future__ import annotations

import asyncio
import random
import uuid

import aiomqtt
import structlog

from api.live import LiveHub
from api.metrics import ApiMetrics
from api.problems import BrokerUnavailableError
from smartcity import topics
from smartcity.settings import Settings
from smartcity.topics import Feed

log = structlog.get_logger("api.mqtt")

# Reconnect backoff: start fast (a broker restart takes a second or two), cap so a long outage
# is retried often enough to notice recovery within half a minute.
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 30.0
# A QoS 1 publish waits for the broker's PUBACK at most this long before the request fails.
PUBLISH_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 5.0
# QoS 1 publishes awaiting PUBACK at once (paho's default is 20): a district command fans out to
# thousands of lamps, and a round trip per 20 would make it needlessly slow.
MAX_INFLIGHT = 100
# Lamp commands publish up to this many at once (see api.routes.commands); aiomqtt warns above
# its threshold, which would log a warning per lamp of a large district command.
MAX_PENDING_PUBLISHES = 250
# Positions received but not yet handed to the hub. `offer` never waits, so this only fills if
# the event loop is starved; then paho drops the newest (QoS 0: a live view loses a fix).
MAX_QUEUED_POSITIONS = 10_000


class MqttLink:
    def __init__(self, settings: Settings, hub: LiveHub, metrics: ApiMetrics) -> None:
        self._settings = settings
        self._hub = hub
        self._metrics = metrics
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()

    def _new_client(self) -> aiomqtt.Client:
        s = self._settings
        client = aiomqtt.Client(
            s.mqtt_host,
            s.mqtt_port,
            identifier=f"{s.api_client_id}-{uuid.uuid4().hex[:8]}",
            username=s.mqtt_username,
            password=s.mqtt_password,
            keepalive=s.mqtt_keepalive_s,
            timeout=CONNECT_TIMEOUT_S,
            clean_session=True,
            max_inflight_messages=MAX_INFLIGHT,
            max_queued_incoming_messages=MAX_QUEUED_POSITIONS,
        )
        client.pending_calls_threshold = MAX_PENDING_PUBLISHES
        return client

    async def run(self) -> None:
        """Stay connected until cancelled."""
        backoff_s = RECONNECT_FIRST_S
        feed = topics.subscription(self._settings.mqtt_topic_root, Feed.VEHICLE_POSITION)
        while True:
            try:
                async with self._new_client() as client:
                    await client.subscribe(feed, qos=0)
                    self._client = client
                    self.connected.set()
                    self._metrics.mqtt_connected.set(1)
                    backoff_s = RECONNECT_FIRST_S
                    log.info("mqtt connected", host=self._settings.mqtt_host)
                    async for message in client.messages:
                        payload = message.payload
                        if not isinstance(payload, bytes):
                            continue
                        try:
                            self._hub.offer(message.topic.value, payload)
                        except Exception:
                            # A bug on one message must not end the live feed for everyone.
                            log.exception("live message not forwarded", topic=message.topic.value)
            except aiomqtt.MqttError as exc:
                log.warning("mqtt disconnected", error=str(exc), retry_in_s=round(backoff_s, 1))
            finally:
                self._client = None
                self.connected.clear()
                self._metrics.mqtt_connected.set(0)
            await asyncio.sleep(backoff_s * random.uniform(0.8, 1.2))
            backoff_s = min(backoff_s * 2, RECONNECT_MAX_S)

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 and wait for the broker's acknowledgement."""
        client = self._client
        if client is None:
            raise BrokerUnavailableError("not connected to the MQTT broker")
        try:
            await client.publish(topic, payload, qos=1, timeout=PUBLISH_TIMEOUT_S)
        except aiomqtt.MqttError as exc:
            raise BrokerUnavailableError(str(exc)) from exc
