"""The alerts table as the rules write it: raise and auto-clear.

Acknowledge and clear (by a person, through the API) are in `smartcity.queries.alerts`.

One open (active or acknowledged) alert per device + rule is enforced by the partial unique
index `alerts_one_open_per_device_rule`; a raise is one INSERT ... ON CONFLICT DO UPDATE, so
any number of ingest workers raising the same problem at once leave one alert. A raise that
finds the alert recovering (`ok_since` set) counts a new occurrence: a flapping condition is
one alert with an occurrence count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

Conn = psycopg.Connection[tuple[object, ...]]


@dataclass(frozen=True, slots=True)
class Key:
    domain: str
    device_id: str
    rule: str


_RAISE = """
    INSERT INTO alerts AS a (rule, domain, device_id, city, severity, message,
                             first_occurrence, last_occurrence)
    VALUES (%(rule)s, %(domain)s, %(device_id)s, %(city)s, %(severity)s, %(message)s,
            %(first)s, %(last)s)
    ON CONFLICT (domain, device_id, rule) WHERE state <> 'cleared' DO UPDATE SET
        occurrence_count = a.occurrence_count
            + CASE WHEN a.ok_since IS NOT NULL AND a.ok_since <= EXCLUDED.first_occurrence
                   THEN 1 ELSE 0 END,
        ok_since = CASE WHEN a.ok_since IS NOT NULL AND a.ok_since > EXCLUDED.last_occurrence
                        THEN a.ok_since ELSE NULL END,
        last_occurrence = greatest(a.last_occurrence, EXCLUDED.last_occurrence),
        first_occurrence = least(a.first_occurrence, EXCLUDED.first_occurrence),
        message = EXCLUDED.message
    RETURNING alert_id, (xmax = 0) AS inserted
"""


def raise_alert(
    conn: Conn,
    key: Key,
    *,
    city: str,
    severity: str,
    message: str,
    first: datetime,
    last: datetime,
) -> tuple[int, bool]:
    """Raise or repeat the open alert of `key`; (alert_id, True if it is new)."""
    row = conn.execute(
        _RAISE,
        {
            "rule": key.rule,
            "domain": key.domain,
            "device_id": key.device_id,
            "city": city,
            "severity": severity,
            "message": message,
            "first": first,
            "last": last,
        },
    ).fetchone()
    assert row is not None
    return int(row[0]), bool(row[1])  # type: ignore[call-overload]


def condition_ended(
    conn: Conn, key: Key, *, first_ok: datetime, last_ok: datetime, hold_off: timedelta
) -> int | None:
    """The condition of `key` was absent from `first_ok` to `last_ok` (event time).

    Marks the open alert as recovering from the first time the condition was seen absent after
    its last occurrence, and clears it once that lasted `hold_off`. Returns the id of an alert
    cleared now, else None.
    """
    params = {
        "domain": key.domain,
        "device_id": key.device_id,
        "rule": key.rule,
        "first_ok": first_ok,
        "last_ok": last_ok,
        "hold_off": hold_off,
    }
    # A reading older than the last occurrence says nothing about whether it ended.
    conn.execute(
        """
        UPDATE alerts SET ok_since = least(coalesce(ok_since, %(first_ok)s), %(first_ok)s)
        WHERE domain = %(domain)s AND device_id = %(device_id)s AND rule = %(rule)s
          AND state <> 'cleared' AND %(first_ok)s > last_occurrence
        """,
        params,
    )
    row = conn.execute(
        """
        UPDATE alerts SET state = 'cleared', cleared_at = now(), cleared_by = 'auto',
                          clear_reason = 'condition ended'
        WHERE domain = %(domain)s AND device_id = %(device_id)s AND rule = %(rule)s
          AND state <> 'cleared' AND ok_since IS NOT NULL
          AND %(last_ok)s - ok_since >= %(hold_off)s
        RETURNING alert_id
        """,
        params,
    ).fetchone()
    return None if row is None else int(row[0])  # type: ignore[call-overload]


def open_keys(conn: Conn, domain: str, device_ids: list[str]) -> set[Key]:
    """The (device, rule) pairs of `domain` among `device_ids` with an open alert."""
    rows = conn.execute(
        "SELECT device_id, rule FROM alerts "
        "WHERE state <> 'cleared' AND domain = %s AND device_id = ANY(%s)",
        (domain, device_ids),
    ).fetchall()
    return {Key(domain, str(d), str(r)) for d, r in rows}


def take_rate(conn: Conn, city: str, rule: str, when: datetime, limit: int) -> bool:
    """Count one new alert of `rule` in `city` in the event-time minute of `when`; False (and
    counted as suppressed) when that minute already has `limit` of them. `limit` 0: no limit."""
    if limit <= 0:
        return True
    params = {"city": city, "rule": rule, "when": when, "limit": limit}
    row = conn.execute(
        """
        INSERT INTO alert_rate AS r (city, rule, minute, raised)
        VALUES (%(city)s, %(rule)s, date_trunc('minute', %(when)s::timestamptz), 1)
        ON CONFLICT (city, rule, minute) DO UPDATE SET raised = r.raised + 1
            WHERE r.raised < %(limit)s
        RETURNING raised
        """,
        params,
    ).fetchone()
    if row is not None:
        return True
    conn.execute(
        "UPDATE alert_rate SET suppressed = suppressed + 1 WHERE city = %(city)s "
        "AND rule = %(rule)s AND minute = date_trunc('minute', %(when)s::timestamptz)",
        params,
    )
    return False
