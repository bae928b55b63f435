"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from api.deps import ServicesDep

router = APIRouter(tags=["health"])

# /ready answers quickly even when the database hangs: an orchestrator's probe has a timeout.
READY_DB_TIMEOUT_S = 2.0


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})
    status: str


class Readiness(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "ok", "database": True, "mqtt": True},
                {"status": "unavailable", "database": True, "mqtt": False},
            ]
        }
    )
    status: str = Field(description="`ok` when every dependency answers, else `unavailable`.")
    database: bool = Field(description="A pooled connection answered `SELECT 1`.")
    mqtt: bool = Field(description="The API's MQTT connection to the broker is up.")


@router.get("/health", response_model=Health, summary="Liveness: the process answers")
async def health() -> Health:
    """Always `ok` while the process runs; it checks nothing else, so a database outage does not
    get the process restarted (that is what `/ready` is for)."""
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Readiness,
    summary="Readiness: the database and the MQTT broker answer",
    responses={503: {"model": Readiness, "description": "A dependency is unreachable."}},
)
async def ready(services: ServicesDep) -> JSONResponse:
    """200 when a database connection answers and the MQTT connection is up; 503 (with what is
    down) otherwise, so a load balancer stops sending traffic here."""
    db_ok = False
    if services.pool is not None:
        try:
            async with services.pool.connection(timeout=READY_DB_TIMEOUT_S) as conn:
                await conn.execute("SELECT 1")
            db_ok = True
        except Exception:
            db_ok = False
    mqtt_ok = services.link.connected.is_set()
    ok = db_ok and mqtt_ok
    body = Readiness(status="ok" if ok else "unavailable", database=db_ok, mqtt=mqtt_ok)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "content": {
                "text/plain": {
                    "example": "# TYPE smartcity_api_requests_total counter\n"
                    'smartcity_api_requests_total{method="GET",route="/health",status="200"} 3.0\n'
                }
            },
            "description": "Prometheus text exposition format.",
        }
    },
)
async def metrics(services: ServicesDep) -> Response:
    """Request counts and latencies by route template, live-stream clients and dropped events,
    MQTT connection state, lamp commands published, requests refused by the rate limit."""
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
