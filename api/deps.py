"""Shared route dependencies (`Annotated` aliases): settings, a DB connection, the caller.

Authentication:
* operator and app endpoints take an API key, as `Authorization: Bearer <key>` or
  `X-API-Key: <key>`; no key or an unknown/revoked one is 401, a key whose role is too low 403;
* a resident's meter endpoint takes that meter's token (`Authorization: Bearer <token>`); every
  failure there is the same 401, so nobody learns whether a meter id exists;
* public endpoints take no credentials and are rate-limited per client (429 with Retry-After).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api.answers import AnswerCaches
from api.live import LiveHub
from api.metrics import ApiMetrics
from api.mqtt_link import MqttLink
from api.ratelimit import TokenBucketLimiter, client_address, retry_after_header
from smartcity.queries.auth import Caller, caller_for_key
from smartcity.security import API_KEY_PREFIX, Role, looks_like
from smartcity.settings import Settings

Pool = AsyncConnectionPool[AsyncConnection[tuple[object, ...]]]


@dataclass
class Services:
    """What the lifespan opens and every request may use."""

    settings: Settings
    metrics: ApiMetrics
    limiter: TokenBucketLimiter
    trusted_proxies: frozenset[str]
    hub: LiveHub
    link: MqttLink
    answers: AnswerCaches
    pool: Pool | None = None  # set by the lifespan once opened


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_settings(request: Request) -> Settings:
    return get_services(request).settings


def pool_of(services: Services) -> Pool:
    """The DB pool, for a route that takes a connection only when it needs one (an answer
    served from a cache needs none)."""
    assert services.pool is not None, "the lifespan opens the pool before requests are served"
    return services.pool


async def get_conn(request: Request) -> AsyncIterator[AsyncConnection[tuple[object, ...]]]:
    async with pool_of(get_services(request)).connection() as conn:
        yield conn


# Dependencies are `async def` even where they never await: FastAPI runs a plain `def`
# dependency in a worker thread, a thread hop that cost more CPU than the route's own work on
# a cheap route (rate limit, services and settings on every request).
async def _services(request: Request) -> Services:
    return get_services(request)


async def _settings(request: Request) -> Settings:
    return get_settings(request)


ServicesDep = Annotated[Services, Depends(_services)]
SettingsDep = Annotated[Settings, Depends(_settings)]
ConnDep = Annotated[AsyncConnection[tuple[object, ...]], Depends(get_conn)]

# auto_error=False: a missing header is our 401 problem, not FastAPI's plain 403.
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="The API key, instead of `Authorization`."
)
_meter_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="MeterToken",
    description="`Authorization: Bearer <meter token>`: reads one meter's consumption.",
)

UNAUTHORIZED = HTTPException(
    401,
    "A valid API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`.",
    headers={"WWW-Authenticate": 'Bearer realm="smartcity"'},
)


def require(role: Role) -> Callable[..., Awaitable[Caller]]:
    """A dependency that admits callers with at least `role`."""

    async def dependency(
        conn: ConnDep,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        header_key: Annotated[str | None, Depends(_api_key_header)],
    ) -> Caller:
        key = bearer.credentials if bearer is not None else header_key
        if not key or not looks_like(key, API_KEY_PREFIX):
            raise UNAUTHORIZED
        # The request's own connection (FastAPI resolves ConnDep once per request), so checking
        # the key never needs a second connection from the pool.
        caller = await caller_for_key(conn, key)
        if caller is None:
            raise UNAUTHORIZED
        if not caller.role.allows(role):
            raise HTTPException(
                403,
                f"This needs the {role.value} role; the key {caller.name!r} is a {caller.role}.",
            )
        return caller

    return dependency


ViewerDep = Annotated[Caller, Depends(require(Role.VIEWER))]
OperatorDep = Annotated[Caller, Depends(require(Role.OPERATOR))]


async def meter_token(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_meter_bearer)],
) -> str | None:
    return None if bearer is None else bearer.credentials


MeterTokenDep = Annotated[str | None, Depends(meter_token)]


async def rate_limited(request: Request) -> None:
    """Take one token from the client's bucket or refuse with 429."""
    services = get_services(request)
    peer = request.client.host if request.client else None
    client = client_address(peer, request.headers.get("x-forwarded-for"), services.trusted_proxies)
    wait_s = services.limiter.take(client)
    if wait_s > 0:
        services.metrics.rate_limited.inc()
        raise HTTPException(
            429,
            "Too many requests from this client; wait for Retry-After seconds.",
            headers={"Retry-After": retry_after_header(wait_s)},
        )


RateLimited = Depends(rate_limited)
