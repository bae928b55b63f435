"""The scheduled `offline` rule: a device that stopped reporting, with the reason recorded.

A device is offline when its last will or status says so (`devices.last_status = 'offline'`
newer than its last reading), or when no reading came within k × its expected reporting
interval (by event time, against the sweep's clock). It clears after it has been back for a
hold-off of one such period, so a device that coughs up one reading and falls silent again
keeps its alert (one more occurrence) instead of raising a new one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg

from smartcity.alerts.rules import Severity

RULE = "offline"
# The reporting interval a device of each domain promises (the simulators' and the reference
# fleets' defaults): lamps every minute, meters every quarter hour, buses every 10 s.
EXPECTED_INTERVAL_S: dict[str, float] = {"lighting": 60.0, "metering": 900.0, "transit": 10.0}

_RAISE = """
    INSERT INTO alerts AS a (rule, domain, device_id, city, severity, message,
                             first_occurrence, last_occurrence)
    SELECT %(rule)s, d.domain, d.device_id, d.city, %(severity)s,
           CASE WHEN d.last_status = 'offline' AND d.status_ts >= d.last_seen
                THEN 'device reported offline (status or last will) at ' || d.status_ts
                ELSE 'no reading since ' || d.last_seen || ' (expected every '
                     || i.interval_s || ' s)' END,
           %(now)s, %(now)s
    FROM devices d
    JOIN unnest(%(domains)s::text[], %(intervals)s::float8[]) AS i (domain, interval_s)
      ON i.domain = d.domain
    WHERE (d.last_status = 'offline' AND d.status_ts >= d.last_seen)
       OR d.last_seen < %(now)s - make_interval(secs => %(factor)s * i.interval_s)
    ON CONFLICT (domain, device_id, rule) WHERE state <> 'cleared' DO UPDATE SET
        occurrence_count = a.occurrence_count + CASE WHEN a.ok_since IS NOT NULL THEN 1 ELSE 0 END,
        ok_since = NULL,
        last_occurrence = EXCLUDED.last_occurrence,
        message = EXCLUDED.message
    RETURNING alert_id
"""

_BACK = """
    UPDATE alerts a SET ok_since = coalesce(a.ok_since, %(now)s)
    FROM devices d
    JOIN unnest(%(domains)s::text[], %(intervals)s::float8[]) AS i (domain, interval_s)
      ON i.domain = d.domain
    WHERE a.rule = %(rule)s AND a.state <> 'cleared'
      AND d.domain = a.domain AND d.device_id = a.device_id
      AND NOT coalesce(d.last_status = 'offline' AND d.status_ts >= d.last_seen, false)
      AND d.last_seen >= %(now)s - make_interval(secs => %(factor)s * i.interval_s)
"""

_CLEAR = """
    UPDATE alerts a SET state = 'cleared', cleared_at = now(), cleared_by = 'auto',
                        clear_reason = 'reporting again'
    FROM unnest(%(domains)s::text[], %(intervals)s::float8[]) AS i (domain, interval_s)
    WHERE a.rule = %(rule)s AND a.state <> 'cleared' AND a.domain = i.domain
      AND a.ok_since <= %(now)s - make_interval(secs => %(factor)s * i.interval_s)
    RETURNING a.alert_id
"""


def sweep(
    conn: psycopg.Connection[tuple[object, ...]], now: datetime, factor: float
) -> tuple[int, int]:
    """Raise or repeat `offline` for silent devices, clear the ones back; (raised, cleared)."""
    domains = sorted(EXPECTED_INTERVAL_S)
    params = {
        "rule": RULE,
        "severity": Severity.MAJOR.value,
        "now": now,
        "factor": factor,
        "domains": domains,
        "intervals": [EXPECTED_INTERVAL_S[d] for d in domains],
    }
    with conn.transaction():
        raised = len(conn.execute(_RAISE, params).fetchall())
        conn.execute(_BACK, params)
        cleared = len(conn.execute(_CLEAR, params).fetchall())
    return raised, cleared


def hold_off(domain: str, factor: float) -> timedelta:
    return timedelta(seconds=factor * EXPECTED_INTERVAL_S[domain])
