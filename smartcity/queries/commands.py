"""Lamp commands: which lamps a target addresses, and the log of who commanded what."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection

Conn = AsyncConnection[tuple[object, ...]]


@dataclass(frozen=True, slots=True)
class LampRef:
    lamp_id: str
    city: str


async def lamp(conn: Conn, lamp_id: str) -> list[LampRef]:
    cur = await conn.execute(
        "SELECT device_id, city FROM devices WHERE domain = 'lighting' AND device_id = %s",
        (lamp_id,),
    )
    return [LampRef(str(i), str(c)) for i, c in await cur.fetchall()]


async def cabinet_lamps(conn: Conn, cabinet_id: str) -> list[LampRef]:
    """Lamps whose newest reading (by event time) names `cabinet_id`.

    The cabinet is not in the registry: a lamp reports it, and a lamp rewired to another
    cabinet belongs to the new one from its next reading on.
    """
    cur = await conn.execute(
        """
        SELECT d.device_id, d.city FROM devices d
        CROSS JOIN LATERAL (
            SELECT cabinet_id FROM lighting_readings r
            WHERE r.lamp_id = d.device_id ORDER BY r.ts DESC LIMIT 1
        ) latest
        WHERE d.domain = 'lighting' AND latest.cabinet_id = %s
        ORDER BY d.device_id
        """,
        (cabinet_id,),
    )
    return [LampRef(str(i), str(c)) for i, c in await cur.fetchall()]


async def district_lamps(conn: Conn, city: str, district: str) -> list[LampRef]:
    cur = await conn.execute(
        "SELECT device_id, city FROM devices "
        "WHERE domain = 'lighting' AND city = %s AND district = %s ORDER BY device_id",
        (city, district),
    )
    return [LampRef(str(i), str(c)) for i, c in await cur.fetchall()]


@dataclass(frozen=True, slots=True)
class CommandRecord:
    command_id: uuid.UUID
    target_kind: str
    target_id: str
    lamp_on: bool | None
    dim_pct: float | None
    expires_at: datetime | None
    issued_by: str
    issued_at: datetime


async def record(conn: Conn, cmd: CommandRecord, lamps: Sequence[LampRef]) -> None:
    """One row per lamp addressed, written with binary COPY (a district may have thousands)."""
    async with (
        conn.cursor() as cur,
        cur.copy(
            "COPY lamp_commands (command_id, lamp_id, city, target_kind, target_id, lamp_on, "
            "dim_pct, expires_at, issued_by, issued_at) FROM STDIN (FORMAT BINARY)"
        ) as copy,
    ):
        copy.set_types(
            [
                "uuid",
                "text",
                "text",
                "text",
                "text",
                "bool",
                "float4",
                "timestamptz",
                "text",
                "timestamptz",
            ]
        )
        for lamp_ref in lamps:
            await copy.write_row(
                (
                    cmd.command_id,
                    lamp_ref.lamp_id,
                    lamp_ref.city,
                    cmd.target_kind,
                    cmd.target_id,
                    cmd.lamp_on,
                    cmd.dim_pct,
                    cmd.expires_at,
                    cmd.issued_by,
                    cmd.issued_at,
                )
            )
