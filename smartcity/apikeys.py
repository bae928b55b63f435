"""Creating, listing and revoking API keys and meter tokens (used by `smartcity apikey`).

The secret is returned once, to be shown once; only its digest is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import class_row

from smartcity.errors import ConfigurationError
from smartcity.security import (
    API_KEY_PREFIX,
    METER_TOKEN_PREFIX,
    SHOWN_PREFIX_CHARS,
    Role,
    digest,
    new_secret,
)
from smartcity.topics import is_valid_level

Conn = psycopg.Connection[tuple[object, ...]]


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    name: str
    role: str
    key_prefix: str
    created_at: datetime
    revoked_at: datetime | None


def create_key(conn: Conn, name: str, role: Role) -> str:
    """Store a new key called `name` with `role`; return the key (the only time it exists)."""
    key = new_secret(API_KEY_PREFIX)
    try:
        conn.execute(
            "INSERT INTO api_keys (name, role, key_prefix, key_hash) VALUES (%s, %s, %s, %s)",
            (name, role.value, key[:SHOWN_PREFIX_CHARS], digest(key)),
        )
    except psycopg.errors.UniqueViolation:
        raise ConfigurationError(
            f"an API key named {name!r} exists already; pick another name or revoke it first"
        ) from None
    except psycopg.errors.CheckViolation:
        raise ConfigurationError(
            f"invalid key name {name!r}: use 1–64 letters, digits, '_', '.', '@' or '-'"
        ) from None
    return key


def list_keys(conn: Conn) -> list[ApiKeyInfo]:
    with conn.cursor(row_factory=class_row(ApiKeyInfo)) as cur:
        cur.execute(
            "SELECT name, role, key_prefix, created_at, revoked_at FROM api_keys ORDER BY name"
        )
        return cur.fetchall()


def revoke_key(conn: Conn, name: str) -> None:
    """Revoke the key called `name`; it stops working on the next request."""
    row = conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL "
        "RETURNING name",
        (name,),
    ).fetchone()
    if row is None:
        raise ConfigurationError(
            f"no active API key named {name!r}; 'smartcity apikey list' shows the keys"
        )


def create_meter_token(conn: Conn, meter_id: str, created_by: str) -> str:
    """A new token that reads `meter_id`'s consumption, and nothing else."""
    if not is_valid_level(meter_id):
        raise ConfigurationError(
            f"invalid meter id {meter_id!r}: 1–64 letters, digits, '_', '.' or '-'"
        )
    token = new_secret(METER_TOKEN_PREFIX)
    conn.execute(
        "INSERT INTO meter_tokens (token_hash, meter_id, created_by) VALUES (%s, %s, %s)",
        (digest(token), meter_id, created_by),
    )
    return token


def revoke_meter_tokens(conn: Conn, meter_id: str) -> int:
    """Revoke every token of `meter_id` (e.g. when the resident moves out); how many."""
    cur = conn.execute(
        "UPDATE meter_tokens SET revoked_at = now() WHERE meter_id = %s AND revoked_at IS NULL",
        (meter_id,),
    )
    return cur.rowcount
