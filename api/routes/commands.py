"""Lamp control: switch and dim one lamp, a control cabinet's lamps, or a district's lamps.

A command is recorded (who, when, what, for which lamps) and published as a `LampCommand` on each
lamp's `cmd` topic at QoS 1, in one database transaction: if the broker does not acknowledge
every message the record is rolled back and the caller gets 503, so the log never claims a
command that was not sent. The lamps report their new state in their next telemetry.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Self

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator
from pydantic.types import Strict

from api.deps import ConnDep, OperatorDep, ServicesDep
from api.problems import BrokerUnavailableError
from api.timeparams import as_utc
from smartcity import topics
from smartcity.cities import CITIES
from smartcity.models import LampCommand
from smartcity.queries import commands as q
from smartcity.queries.auth import Caller

router = APIRouter(prefix="/v1/lighting", tags=["lamp control"])

# Publishes in flight at once: enough to keep the broker busy for a district of thousands of
# lamps, few enough to stay inside the client's in-flight window without piling up.
PUBLISH_CONCURRENCY = 200
# A temporary override longer than a week is a schedule change, not a command.
MAX_EXPIRY = timedelta(days=7)

IdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$", examples=["ast-lamp-000042"])]

_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body is not readable (e.g. not UTF-8) (problem+json)."},
    401: {"description": "No API key, or an unknown or revoked one (problem+json)."},
    403: {"description": "The key is not an operator's (problem+json)."},
    404: {"description": "No lamp matches the target (problem+json)."},
    422: {"description": "Malformed command (problem+json)."},
    503: {"description": "The MQTT broker or database is down; nothing was sent."},
}


def _command_schema(schema: dict[str, Any]) -> None:
    """What the validators enforce, said in the schema: no nulls, lamp_on or dim_pct present."""
    for name in ("lamp_on", "dim_pct", "expires_at"):
        prop = schema["properties"][name]
        choices = [c for c in prop.pop("anyOf", []) if c.get("type") != "null"]
        if choices:
            prop.update(choices[0])
    schema["anyOf"] = [{"required": ["lamp_on"]}, {"required": ["dim_pct"]}]
    schema["examples"] = [
        {"dim_pct": 60.0, "expires_at": "2026-11-24T01:00:00Z"},
        {"lamp_on": False},
    ]


class CommandRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, json_schema_extra=_command_schema
    )

    # Strict: `"dim_pct": false` or `"lamp_on": "yes"` is a client bug to refuse, not coerce.
    lamp_on: StrictBool | None = Field(default=None, description="Switch on (true) or off (false).")
    dim_pct: Annotated[float, Strict(), Field(ge=0, le=100)] | None = Field(
        default=None, description="Dim level, percent of full light."
    )
    expires_at: datetime | None = Field(
        default=None,
        description="When the lamp returns to its own schedule (RFC 3339, at most 7 days on).",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = sorted(str(k) for k, v in data.items() if v is None)
            if nulls:
                raise ValueError(f"leave out what you do not set instead of null: {nulls}")
        return data

    @model_validator(mode="after")
    def _does_something(self) -> Self:
        if self.lamp_on is None and self.dim_pct is None:
            raise ValueError("a command sets lamp_on, dim_pct or both")
        return self


class CommandAccepted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "command_id": "6f1c1f9e-3c43-4a53-a3f8-8f3c2f1b9a10",
                    "target_kind": "cabinet",
                    "target_id": "ast-cab-0003",
                    "lamps": 40,
                    "issued_by": "ops-console",
                    "issued_at": "2026-11-23T18:00:00Z",
                }
            ]
        }
    )

    command_id: uuid.UUID
    target_kind: Literal["lamp", "cabinet", "district"]
    target_id: str
    lamps: int = Field(description="Lamps the command was published to.")
    issued_by: str = Field(description="Name of the API key that sent it.")
    issued_at: datetime


async def _send(
    services: ServicesDep,
    conn: ConnDep,
    caller: Caller,
    kind: Literal["lamp", "cabinet", "district"],
    target_id: str,
    body: CommandRequest,
    lamps: Sequence[q.LampRef],
) -> CommandAccepted:
    if not lamps:
        raise HTTPException(404, f"no lamps for {kind} {target_id!r}")
    now = datetime.now(UTC)
    expires_at = None
    if body.expires_at is not None:
        expires_at = as_utc(body.expires_at, "expires_at")
        if not now < expires_at <= now + MAX_EXPIRY:
            raise HTTPException(422, "`expires_at` must be in the future and at most 7 days on")
    record = q.CommandRecord(
        command_id=uuid.uuid4(),
        target_kind=kind,
        target_id=target_id,
        lamp_on=body.lamp_on,
        dim_pct=body.dim_pct,
        expires_at=expires_at,
        issued_by=caller.name,
        issued_at=now,
    )
    payload = (
        LampCommand.model_validate(
            {
                "command_id": str(record.command_id),
                "ts": now,
                "lamp_on": body.lamp_on,
                "dim_pct": body.dim_pct,
                "expires_at": expires_at,
            }
        )
        .model_dump_json(exclude_none=True)
        .encode()
    )
    root = services.settings.mqtt_topic_root
    gate = asyncio.Semaphore(PUBLISH_CONCURRENCY)

    async def publish(lamp: q.LampRef) -> None:
        async with gate:
            await services.link.publish(topics.lamp_command(root, lamp.city, lamp.lamp_id), payload)

    async with conn.transaction():
        await q.record(conn, record, lamps)
        try:
            async with asyncio.TaskGroup() as tg:
                for lamp in lamps:
                    tg.create_task(publish(lamp))
        except ExceptionGroup as group:
            # The first failure cancels the rest; unwrap so the problem handler answers 503.
            broker, _rest = group.split(BrokerUnavailableError)
            if broker is not None:
                raise BrokerUnavailableError("publishing lamp commands failed") from group
            raise
    services.metrics.lamp_commands.inc(len(lamps))
    return CommandAccepted(
        command_id=record.command_id,
        target_kind=kind,
        target_id=target_id,
        lamps=len(lamps),
        issued_by=caller.name,
        issued_at=now,
    )


@router.post(
    "/lamps/{lamp_id}/command",
    response_model=CommandAccepted,
    status_code=202,
    summary="Switch or dim one lamp",
    responses=_RESPONSES,
)
async def command_lamp(
    services: ServicesDep, conn: ConnDep, caller: OperatorDep, lamp_id: IdPath, body: CommandRequest
) -> CommandAccepted:
    """Publish a `LampCommand` to the lamp's `cmd` topic (QoS 1) and record it with the key's
    name. Needs an operator key. 202: the broker has it; the lamp reports its new state in its
    next telemetry."""
    return await _send(services, conn, caller, "lamp", lamp_id, body, await q.lamp(conn, lamp_id))


@router.post(
    "/cabinets/{cabinet_id}/command",
    response_model=CommandAccepted,
    status_code=202,
    summary="Switch or dim every lamp of a control cabinet",
    responses=_RESPONSES,
)
async def command_cabinet(
    services: ServicesDep,
    conn: ConnDep,
    caller: OperatorDep,
    cabinet_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$", examples=["ast-cab-0003"])],
    body: CommandRequest,
) -> CommandAccepted:
    """One `LampCommand` per lamp whose newest reading names this cabinet, each on its own
    `cmd` topic, all recorded under one `command_id`. Needs an operator key."""
    lamps = await q.cabinet_lamps(conn, cabinet_id)
    return await _send(services, conn, caller, "cabinet", cabinet_id, body, lamps)


@router.post(
    "/districts/{district}/command",
    response_model=CommandAccepted,
    status_code=202,
    summary="Switch or dim every lamp of a district",
    responses=_RESPONSES,
)
async def command_district(
    services: ServicesDep,
    conn: ConnDep,
    caller: OperatorDep,
    district: Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$", examples=["esil"])],
    body: CommandRequest,
    city: Annotated[str, Query(pattern="^[a-z-]{1,64}$", examples=["astana"])],
) -> CommandAccepted:
    """One `LampCommand` per lamp of the district (from the device registry), recorded under
    one `command_id`. Needs an operator key."""
    if city not in CITIES:
        raise HTTPException(404, f"unknown city {city!r}; known: {', '.join(sorted(CITIES))}")
    lamps = await q.district_lamps(conn, city, district)
    return await _send(services, conn, caller, "district", district, body, lamps)
