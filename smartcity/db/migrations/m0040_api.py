"""The API's own tables: hashed API keys, per-meter resident tokens, the lamp-command log."""

from __future__ import annotations

import psycopg

from smartcity.db.storage import StorageMode

VERSION = 40
DESCRIPTION = "api keys, meter tokens, lamp commands"


def apply(conn: psycopg.Connection[tuple[object, ...]], mode: StorageMode) -> None:
    del mode  # ordinary tables: the same in both storage modes
    # Only the SHA-256 of a key is stored (see smartcity.security for why SHA-256 suffices);
    # `key_prefix` is the key's public first characters, so a person can tell keys apart.
    conn.execute(
        """
        CREATE TABLE api_keys (
            name       text        PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.@-]{1,64}$'),
            role       text        NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
            key_prefix text        NOT NULL,
            key_hash   bytea       NOT NULL UNIQUE CHECK (length(key_hash) = 32),
            created_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE meter_tokens (
            token_hash bytea       PRIMARY KEY CHECK (length(token_hash) = 32),
            meter_id   text        NOT NULL,
            created_by text        NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz
        )
        """
    )
    conn.execute("CREATE INDEX ON meter_tokens (meter_id)")
    # One row per lamp addressed: a cabinet or district command fans out to many lamps, and an
    # operator asking "what was lamp X told, by whom, when" reads one lamp's rows.
    conn.execute(
        """
        CREATE TABLE lamp_commands (
            command_id  uuid        NOT NULL,
            lamp_id     text        NOT NULL,
            city        text        NOT NULL,
            target_kind text        NOT NULL CHECK (target_kind IN ('lamp', 'cabinet', 'district')),
            target_id   text        NOT NULL,
            lamp_on     boolean,
            dim_pct     real        CHECK (dim_pct BETWEEN 0 AND 100),
            expires_at  timestamptz,
            issued_by   text        NOT NULL,
            issued_at   timestamptz NOT NULL,
            PRIMARY KEY (command_id, lamp_id),
            CHECK (lamp_on IS NOT NULL OR dim_pct IS NOT NULL)
        )
        """
    )
    conn.execute("CREATE INDEX ON lamp_commands (lamp_id, issued_at DESC)")
