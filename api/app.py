"""The FastAPI application. `create_app(settings)` builds it; the lifespan owns the DB pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api import problems
from api.routes import health, lighting
from smartcity import __version__
from smartcity.settings import Settings

DESCRIPTION = """
Smart-city telemetry: street lighting, electricity and water metering, and buses.

Operators read lighting status and energy; apps and residents read bus arrivals.
Errors are `application/problem+json`.
"""


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One pool per process, opened here and closed surely on shutdown.
        pool: AsyncConnectionPool[AsyncConnection[tuple[object, ...]]] = AsyncConnectionPool(
            settings.database_conninfo,
            min_size=settings.db_pool_min_size,
            max_size=settings.db_pool_max_size,
            open=False,
            # Fail a request after 5 s without a connection rather than hang it.
            timeout=5.0,
            kwargs={"autocommit": True},
        )
        await pool.open()
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(
        title="Smart-city telemetry API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    problems.install(app)
    app.include_router(health.router)
    app.include_router(lighting.router)
    return app
