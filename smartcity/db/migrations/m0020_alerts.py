"""Alerts: one row per problem, with its lifecycle (active → acknowledged → cleared)."""

from __future__ import annotations

import psycopg

from smartcity.db.storage import StorageMode

VERSION = 20
DESCRIPTION = "alerts with lifecycle; one open alert per device and rule"


def apply(conn: psycopg.Connection[tuple[object, ...]], mode: StorageMode) -> None:
    del mode  # an ordinary table: the same in both storage modes
    # `ok_since` is the event time from which the condition has been seen to hold no longer;
    # the alert clears itself once that lasted the rule's hold-off (flapping does not flood:
    # the condition returning before then re-uses the alert and counts an occurrence).
    conn.execute(
        """
        CREATE TABLE alerts (
            alert_id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            rule             text        NOT NULL,
            domain           text        NOT NULL
                             CHECK (domain IN ('lighting', 'metering', 'transit')),
            device_id        text        NOT NULL,
            city             text        NOT NULL,
            severity         text        NOT NULL
                             CHECK (severity IN ('critical', 'major', 'minor', 'warning')),
            state            text        NOT NULL DEFAULT 'active'
                             CHECK (state IN ('active', 'acknowledged', 'cleared')),
            message          text        NOT NULL,
            first_occurrence timestamptz NOT NULL,
            last_occurrence  timestamptz NOT NULL,
            occurrence_count integer     NOT NULL DEFAULT 1 CHECK (occurrence_count >= 1),
            ok_since         timestamptz,
            raised_at        timestamptz NOT NULL DEFAULT now(),
            acknowledged_at  timestamptz,
            acknowledged_by  text,
            cleared_at       timestamptz,
            cleared_by       text,
            clear_reason     text,
            delivered_state  text,
            CHECK ((state = 'cleared') = (cleared_at IS NOT NULL))
        )
        """
    )
    # The constraint that makes several ingest workers raise a problem once: a raise is
    # INSERT ... ON CONFLICT (domain, device_id, rule) WHERE state <> 'cleared' DO UPDATE.
    conn.execute(
        """
        CREATE UNIQUE INDEX alerts_one_open_per_device_rule
            ON alerts (domain, device_id, rule) WHERE state <> 'cleared'
        """
    )
    conn.execute("CREATE INDEX ON alerts (city, first_occurrence DESC)")
    conn.execute("CREATE INDEX ON alerts (state, rule)")
    # Delivery (MQTT) finds what changed since it last published: state <> delivered_state.
    conn.execute(
        "CREATE INDEX alerts_undelivered ON alerts (alert_id) "
        "WHERE delivered_state IS DISTINCT FROM state"
    )
