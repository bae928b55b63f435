"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import ConnDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


@router.get("/health", response_model=Health, summary="Liveness: the process answers")
async def health() -> Health:
    """Always `ok` while the process runs."""
    return Health(status="ok")


@router.get("/ready", response_model=Health, summary="Readiness: the database answers")
async def ready(conn: ConnDep) -> Health:
    """`ok` when a database connection from the pool answers a query."""
    await conn.execute("SELECT 1")
    return Health(status="ok")
