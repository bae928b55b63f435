"""Alerts as people see and handle them: list, one alert, acknowledge, clear."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

Conn = AsyncConnection[tuple[object, ...]]

COLUMNS = sql.SQL(
    "alert_id, rule, domain, device_id, city, severity, state, message, first_occurrence, "
    "last_occurrence, occurrence_count, raised_at, acknowledged_at, acknowledged_by, "
    "cleared_at, cleared_by, clear_reason"
)


@dataclass(frozen=True, slots=True)
class AlertFilter:
    city: str | None = None
    domain: str | None = None
    rule: str | None = None
    severity: str | None = None
    state: str | None = None
    since: datetime | None = None  # last occurrence at or after
    until: datetime | None = None  # first occurrence before
    before_id: int | None = None  # paging: newest first, ids below this


async def list_alerts(conn: Conn, f: AlertFilter, limit: int) -> list[dict[str, Any]]:
    """Alerts matching `f`, newest first (by id), at most `limit`."""
    where: list[sql.Composable] = []
    params: list[object] = []
    for column, value in (
        ("city", f.city),
        ("domain", f.domain),
        ("rule", f.rule),
        ("severity", f.severity),
        ("state", f.state),
    ):
        if value is not None:
            where.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value)
    if f.since is not None:
        where.append(sql.SQL("last_occurrence >= %s"))
        params.append(f.since)
    if f.until is not None:
        where.append(sql.SQL("first_occurrence < %s"))
        params.append(f.until)
    if f.before_id is not None:
        where.append(sql.SQL("alert_id < %s"))
        params.append(f.before_id)
    query = sql.SQL("SELECT {} FROM alerts WHERE {} ORDER BY alert_id DESC LIMIT %s").format(
        COLUMNS, sql.SQL(" AND ").join(where) if where else sql.SQL("TRUE")
    )
    params.append(limit)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def get_alert(conn: Conn, alert_id: int) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            sql.SQL("SELECT {} FROM alerts WHERE alert_id = %s").format(COLUMNS), (alert_id,)
        )
        return await cur.fetchone()


async def acknowledge(conn: Conn, alert_id: int, by: str) -> bool:
    """active → acknowledged, recording who and when; False if the alert is not active."""
    cur = await conn.execute(
        "UPDATE alerts SET state = 'acknowledged', acknowledged_at = now(), "
        "acknowledged_by = %s WHERE alert_id = %s AND state = 'active' RETURNING alert_id",
        (by, alert_id),
    )
    return await cur.fetchone() is not None


async def clear(conn: Conn, alert_id: int, by: str, reason: str) -> bool:
    """active or acknowledged → cleared, recording who, when and why; False if cleared."""
    cur = await conn.execute(
        "UPDATE alerts SET state = 'cleared', cleared_at = now(), cleared_by = %s, "
        "clear_reason = %s WHERE alert_id = %s AND state <> 'cleared' RETURNING alert_id",
        (by, reason, alert_id),
    )
    return await cur.fetchone() is not None
