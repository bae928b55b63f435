"""The FastAPI application. `create_app(settings)` builds it; the lifespan owns the DB pool and
the MQTT link (a background task it starts, cancels and awaits)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from psycopg_pool import AsyncConnectionPool

from api import problems
from api.answers import AnswerCaches
from api.bodylimit import BodySizeLimit
from api.deps import Pool, Services
from api.live import LiveHub
from api.metrics import ApiMetrics, MetricsMiddleware
from api.mqtt_link import MqttLink
from api.ratelimit import TokenBucketLimiter
from api.routes import aggregates, alerts, commands, devices, health, kpis, lighting, live, meters
from api.routes.gtfs_rt import router as gtfs_rt_router
from api.routes.transit import router as transit_router
from smartcity import __version__
from smartcity.settings import Settings

# Fail a request after this long without a free DB connection (→ 503) rather than hang it.
POOL_TIMEOUT_S = 5.0

DESCRIPTION = """
Smart-city telemetry: street lighting, electricity and water metering, and buses.

* **Operators** (API key with role `viewer`, `operator` or `admin`; `Authorization: Bearer <key>`
  or `X-API-Key: <key>`): devices, their latest readings and history; lamp commands (`operator`).
* **Apps and residents** (public, rate-limited per client): city lighting summary, the live
  vehicle stream; a resident reads their own meter with that meter's token.

Errors are `application/problem+json` (RFC 9457). Guide: `docs/api.md`.
"""


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def create_app(settings: Settings) -> FastAPI:
    metrics = ApiMetrics()
    hub = LiveHub(settings.mqtt_topic_root, settings.api_stream_queue_max, metrics)
    services = Services(
        settings=settings,
        metrics=metrics,
        limiter=TokenBucketLimiter(settings.api_rate_limit_per_s, settings.api_rate_limit_burst),
        trusted_proxies=frozenset(_csv(settings.api_trusted_proxies)),
        hub=hub,
        link=MqttLink(settings, hub, metrics),
        answers=AnswerCaches.with_ttl(settings.api_answer_cache_s),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # One pool per process, opened here and closed surely on shutdown.
        pool: Pool = AsyncConnectionPool(
            settings.database_conninfo,
            min_size=settings.db_pool_min_size,
            max_size=settings.db_pool_max_size,
            open=False,
            timeout=POOL_TIMEOUT_S,
            kwargs={"autocommit": True},
        )
        await pool.open()
        services.pool = pool
        link_task = asyncio.create_task(services.link.run(), name="api-mqtt-link")
        try:
            yield
        finally:
            link_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await link_task
            services.pool = None
            await pool.close()

    app = FastAPI(
        title="Smart-city telemetry API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.services = services
    problems.install(app)
    for router in (
        health.router,
        lighting.router,
        commands.router,
        devices.router,
        meters.router,
        live.router,
        alerts.router,
        transit_router,
        gtfs_rt_router,
        aggregates.router,
        kpis.router,
    ):
        app.include_router(router)
    # Added inside out: the last added runs first. Metrics see every response, 413s included.
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)
    origins = _csv(settings.api_cors_origins)
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
