"""Per-rule rate limits of new alerts: what was raised and what was held back, per minute."""

from __future__ import annotations

import psycopg

from smartcity.db.storage import StorageMode

VERSION = 21
DESCRIPTION = "alert_rate: new alerts raised and held back per city, rule and minute"


def apply(conn: psycopg.Connection[tuple[object, ...]], mode: StorageMode) -> None:
    del mode  # an ordinary table: the same in both storage modes
    # `minute` is the event-time minute of the readings that raised (or would have raised) the
    # alerts; `suppressed` counts raises held back by the limit (see docs/alerts.md).
    conn.execute(
        """
        CREATE TABLE alert_rate (
            city       text        NOT NULL,
            rule       text        NOT NULL,
            minute     timestamptz NOT NULL,
            raised     integer     NOT NULL DEFAULT 0,
            suppressed integer     NOT NULL DEFAULT 0,
            PRIMARY KEY (city, rule, minute)
        )
        """
    )
