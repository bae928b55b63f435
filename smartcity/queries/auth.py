"""Looking up API keys and meter tokens by their digest (see smartcity.security)."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import AsyncConnection

from smartcity.security import Role, digest, same_digest


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request: the key's name (recorded with commands) and its role."""

    name: str
    role: Role


async def caller_for_key(conn: AsyncConnection[tuple[object, ...]], key: str) -> Caller | None:
    """The active key matching `key`, or None (unknown or revoked look the same)."""
    wanted = digest(key)
    cur = await conn.execute(
        "SELECT name, role, key_hash FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL",
        (wanted,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    name, role, stored = row
    assert isinstance(stored, bytes)
    if not same_digest(stored, wanted):
        return None
    return Caller(str(name), Role(str(role)))


async def token_reads_meter(
    conn: AsyncConnection[tuple[object, ...]], token: str, meter_id: str
) -> bool:
    """True if `token` is an active token of `meter_id`.

    One query whatever the case (unknown token, another meter's token, unknown meter), so
    neither the answer nor its timing tells a caller whether a meter id exists.
    """
    wanted = digest(token)
    cur = await conn.execute(
        "SELECT token_hash FROM meter_tokens "
        "WHERE token_hash = %s AND meter_id = %s AND revoked_at IS NULL",
        (wanted, meter_id),
    )
    row = await cur.fetchone()
    if row is None:
        return False
    stored = row[0]
    assert isinstance(stored, bytes)
    return same_digest(stored, wanted)
