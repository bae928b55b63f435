"""The device registry: lists, one device with its latest reading, its recent history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import class_row, dict_row

from smartcity.topics import Domain

Conn = AsyncConnection[tuple[object, ...]]

# Each domain's raw table and the column naming its device.
RAW_TABLES: dict[Domain, tuple[str, str]] = {
    Domain.LIGHTING: ("lighting_readings", "lamp_id"),
    Domain.METERING: ("meter_readings", "meter_id"),
    Domain.TRANSIT: ("vehicle_positions", "vehicle_id"),
}


@dataclass(frozen=True, slots=True)
class DeviceRow:
    domain: str
    device_id: str
    city: str
    district: str | None
    first_seen: datetime
    last_seen: datetime
    last_status: str | None
    status_ts: datetime | None
    lat: float | None
    lon: float | None


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    city: str | None = None
    domain: Domain | None = None
    district: str | None = None
    status: str | None = None  # 'online', 'offline' or 'unknown' (never reported)
    id_prefix: str | None = None


_COLUMNS = sql.SQL(
    "domain, device_id, city, district, first_seen, last_seen, last_status, status_ts, lat, lon"
)


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching ids that start with `prefix` literally."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


async def list_devices(
    conn: Conn, flt: DeviceFilter, after: tuple[str, str] | None, limit: int
) -> list[DeviceRow]:
    """Devices matching `flt`, ordered by (domain, device_id), after the keyset `after`."""
    where: list[sql.Composable] = [sql.SQL("TRUE")]
    params: list[Any] = []
    if flt.city is not None:
        where.append(sql.SQL("city = %s"))
        params.append(flt.city)
    if flt.domain is not None:
        where.append(sql.SQL("domain = %s"))
        params.append(flt.domain.value)
    if flt.district is not None:
        where.append(sql.SQL("district = %s"))
        params.append(flt.district)
    if flt.status == "unknown":
        where.append(sql.SQL("last_status IS NULL"))
    elif flt.status is not None:
        where.append(sql.SQL("last_status = %s"))
        params.append(flt.status)
    if flt.id_prefix:
        where.append(sql.SQL("device_id LIKE %s"))
        params.append(_like_prefix(flt.id_prefix))
    if after is not None:
        where.append(sql.SQL("(domain, device_id) > (%s, %s)"))
        params.extend(after)
    query = sql.SQL("SELECT {} FROM devices WHERE {} ORDER BY domain, device_id LIMIT %s").format(
        _COLUMNS, sql.SQL(" AND ").join(where)
    )
    params.append(limit)
    async with conn.cursor(row_factory=class_row(DeviceRow)) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def get_device(conn: Conn, domain: Domain, device_id: str) -> DeviceRow | None:
    query = sql.SQL("SELECT {} FROM devices WHERE domain = %s AND device_id = %s").format(_COLUMNS)
    async with conn.cursor(row_factory=class_row(DeviceRow)) as cur:
        await cur.execute(query, (domain.value, device_id))
        return await cur.fetchone()


def _history_query(domain: Domain) -> sql.Composed:
    table, id_col = RAW_TABLES[domain]
    # The reading as the device sent it: bookkeeping columns are left out.
    body = sql.SQL(
        "SELECT to_jsonb(r) - 'ingested_at' - 'city' - {id_name} AS reading FROM {table} r "
        "WHERE {id_col} = %(device)s AND ts >= %(since)s AND ts <= %(until)s "
        "ORDER BY ts DESC LIMIT %(limit)s"
    )
    return body.format(
        id_name=sql.Literal(id_col),
        table=sql.Identifier(table),
        id_col=sql.Identifier(id_col),
    )


@dataclass(frozen=True, slots=True)
class DeviceDetailRow:
    device: DeviceRow
    latest: dict[str, Any] | None


async def device_with_latest(conn: Conn, domain: Domain, device_id: str) -> DeviceDetailRow | None:
    """The device and its newest reading by event time, in one round trip."""
    table, id_col = RAW_TABLES[domain]
    query = sql.SQL(
        "SELECT {cols}, (SELECT to_jsonb(r) - 'ingested_at' - 'city' - {id_name} FROM {table} r "
        "WHERE r.{id_col} = d.device_id ORDER BY r.ts DESC LIMIT 1) AS latest "
        "FROM devices d WHERE d.domain = %s AND d.device_id = %s"
    ).format(
        cols=_COLUMNS,
        id_name=sql.Literal(id_col),
        table=sql.Identifier(table),
        id_col=sql.Identifier(id_col),
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, (domain.value, device_id))
        row = await cur.fetchone()
    if row is None:
        return None
    latest = row.pop("latest")
    return DeviceDetailRow(DeviceRow(**row), None if latest is None else dict(latest))


async def reading_history(
    conn: Conn, domain: Domain, device_id: str, since: datetime, until: datetime, limit: int
) -> list[dict[str, Any]]:
    """Readings in [since, until], newest first, at most `limit`."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            _history_query(domain),
            {"device": device_id, "since": since, "until": until, "limit": limit},
        )
        return [dict(r["reading"]) for r in await cur.fetchall()]
