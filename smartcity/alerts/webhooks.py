"""Webhook delivery: every alert state change POSTed as JSON to each configured URL.

Two steps per pass of `smartcity alerts run`, each its own transaction:

    enqueue    alerts whose `state` differs from `webhook_state` get one outbox row per URL
               (with the alert's JSON as it is now), and `webhook_state` is set: a change is
               queued exactly once, even with several loops (FOR UPDATE SKIP LOCKED)
    send_due   due outbox rows are POSTed; a 2xx marks the row delivered, anything else (an
               error status, a timeout, a refused connection) counts an attempt and schedules
               the next one after an exponential backoff with jitter, capped

The outbox is a table, so a restart loses nothing: undelivered rows are simply due again.
Delivery is at least once: a receiver that answers after our timeout may see a change twice;
the payload carries `alert_id` and `state` to de-duplicate on. Rows are sent in id order per
pass, but a row waiting for its retry does not hold back later ones.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

import httpx2
import orjson
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from smartcity.alerts.delivery import ALERT_COLUMNS

# Rows handled per pass: bounds the transaction holding their locks (and a pass's duration
# when a receiver times out on each).
BATCH_MAX = 100


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry n (1-based): base × 2^(n−1), at most `max_s`, ±20 % jitter."""

    base_s: float = 2.0
    max_s: float = 600.0

    def delay_s(self, attempt: int) -> float:
        delay = min(self.max_s, self.base_s * 2.0 ** (attempt - 1))
        return float(delay * random.uniform(0.8, 1.2))


def enqueue(conn: psycopg.Connection[tuple[object, ...]], urls: list[str]) -> int:
    """Queue every alert change not yet queued, one row per URL; the number of changes."""
    if not urls:
        return 0
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            sql.SQL(
                "SELECT {} FROM alerts WHERE webhook_state IS DISTINCT FROM state "
                "ORDER BY alert_id LIMIT %s FOR UPDATE SKIP LOCKED"
            ).format(ALERT_COLUMNS),
            (BATCH_MAX,),
        )
        changes = cur.fetchall()
        for alert in changes:
            payload = Jsonb(orjson.loads(orjson.dumps(alert)))
            for url in urls:
                cur.execute(
                    "INSERT INTO alert_webhook_outbox (alert_id, url, payload) VALUES (%s, %s, %s)",
                    (alert["alert_id"], url, payload),
                )
        cur.execute(
            "UPDATE alerts SET webhook_state = state WHERE alert_id = ANY(%s)",
            ([a["alert_id"] for a in changes],),
        )
    return len(changes)


def send_due(
    conn: psycopg.Connection[tuple[object, ...]], client: httpx2.Client, backoff: Backoff
) -> tuple[int, int]:
    """POST every due outbox row (up to BATCH_MAX); (delivered, failed)."""
    delivered = failed = 0
    with conn.transaction():
        rows = conn.execute(
            "SELECT id, url, payload, attempts FROM alert_webhook_outbox "
            "WHERE delivered_at IS NULL AND next_attempt_at <= now() "
            "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            (BATCH_MAX,),
        ).fetchall()
        for row_id, url, payload, attempts in rows:
            error = _post(client, str(url), payload)
            if error is None:
                conn.execute(
                    "UPDATE alert_webhook_outbox SET delivered_at = now(), "
                    "attempts = attempts + 1, last_error = NULL WHERE id = %s",
                    (row_id,),
                )
                delivered += 1
                continue
            n = int(attempts) + 1  # type: ignore[call-overload]
            conn.execute(
                "UPDATE alert_webhook_outbox SET attempts = %s, last_error = %s, "
                "next_attempt_at = now() + %s WHERE id = %s",
                (n, error, timedelta(seconds=backoff.delay_s(n)), row_id),
            )
            failed += 1
    return delivered, failed


def _post(client: httpx2.Client, url: str, payload: object) -> str | None:
    """None when the receiver took it (2xx), else what went wrong."""
    try:
        response = client.post(
            url,
            content=orjson.dumps(payload),
            headers={"content-type": "application/json"},
        )
    except httpx2.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if response.is_success:
        return None
    return f"HTTP {response.status_code}"
