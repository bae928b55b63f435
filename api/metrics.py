"""Prometheus metrics of the API process, in a registry of its own (one per app, so tests that
build many apps never collide), and the ASGI middleware that counts requests."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "smartcity_api_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "smartcity_api_request_seconds",
            "Time to the response's first byte, by route template.",
            ["route"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.stream_clients = Gauge(
            "smartcity_api_stream_clients",
            "Clients connected to the live stream.",
            registry=self.registry,
        )
        self.stream_dropped = Counter(
            "smartcity_api_stream_dropped_events",
            "Live events dropped because a client fell behind (oldest dropped first).",
            registry=self.registry,
        )
        self.stream_invalid = Counter(
            "smartcity_api_stream_invalid_messages",
            "Messages on the live feeds that were not valid positions (not forwarded).",
            registry=self.registry,
        )
        self.mqtt_connected = Gauge(
            "smartcity_api_mqtt_connected",
            "1 while the API's MQTT connection is up.",
            registry=self.registry,
        )
        self.lamp_commands = Counter(
            "smartcity_api_lamp_commands_published",
            "Lamp commands published (one per lamp addressed).",
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "smartcity_api_rate_limited",
            "Public requests refused with 429.",
            registry=self.registry,
        )


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app fails before it answers

        async def counting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                self.metrics.latency.labels(_route(scope)).observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, counting)
        finally:
            self.metrics.requests.labels(_route(scope), scope["method"], str(status)).inc()


def _route(scope: Scope) -> str:
    # The route template, never the raw path: raw paths carry ids (unbounded label values).
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"
