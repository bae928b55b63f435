"""Webhook delivery of alert changes: an outbox that survives restarts."""

from __future__ import annotations

import psycopg

from smartcity.db.storage import StorageMode

VERSION = 22
DESCRIPTION = "alert_webhook_outbox; alerts.webhook_state (the last state queued for webhooks)"


def apply(conn: psycopg.Connection[tuple[object, ...]], mode: StorageMode) -> None:
    del mode  # ordinary tables: the same in both storage modes
    conn.execute("ALTER TABLE alerts ADD COLUMN webhook_state text")
    # One row per (alert change, webhook URL). A row is due while `delivered_at` is NULL and
    # `next_attempt_at` has passed; a failed POST pushes `next_attempt_at` back (exponential
    # backoff) and keeps the row: nothing is lost across restarts.
    conn.execute(
        """
        CREATE TABLE alert_webhook_outbox (
            id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            alert_id        bigint      NOT NULL REFERENCES alerts (alert_id),
            url             text        NOT NULL,
            payload         jsonb       NOT NULL,
            created_at      timestamptz NOT NULL DEFAULT now(),
            attempts        integer     NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL DEFAULT now(),
            delivered_at    timestamptz,
            last_error      text
        )
        """
    )
    conn.execute(
        "CREATE INDEX alert_webhook_outbox_due ON alert_webhook_outbox (next_attempt_at) "
        "WHERE delivered_at IS NULL"
    )
