"""`smartcity db migrate`: create the database if missing, apply pending migrations.

Idempotent: applied versions are recorded in `schema_migrations`, and a second run applies
nothing. Concurrent runs (several containers starting at once) are serialised by an advisory
lock, so each migration runs exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from smartcity.db.connect import connect, ensure_database
from smartcity.db.migrations import MIGRATIONS, Migration
from smartcity.db.storage import StorageMode, choose_mode, prepare, read_mode
from smartcity.errors import MigrationError
from smartcity.settings import Settings

_MIGRATE_LOCK_KEY = 0x5C17_0000


@dataclass
class MigrationReport:
    database_created: bool
    storage_mode: StorageMode
    applied: list[Migration] = field(default_factory=list)
    already_applied: int = 0


def _bootstrap(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version     integer     PRIMARY KEY,
            description text        NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_meta (key text PRIMARY KEY, value text NOT NULL)"
    )


def migrate(settings: Settings) -> MigrationReport:
    """Bring the configured database to the newest schema version."""
    conninfo = settings.database_conninfo
    created = ensure_database(conninfo)
    with connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATE_LOCK_KEY,))
        try:
            with conn.transaction():
                _bootstrap(conn)
            has_mode = conn.execute(
                "SELECT 1 FROM schema_meta WHERE key = 'storage_mode'"
            ).fetchone()
            if has_mode:
                mode = read_mode(conn)
            else:
                mode = choose_mode(conn, settings.storage_mode)
                with conn.transaction():
                    prepare(conn, mode)
                    conn.execute(
                        "INSERT INTO schema_meta (key, value) VALUES ('storage_mode', %s)",
                        (mode.value,),
                    )
            done = {int(str(v)) for (v,) in conn.execute("SELECT version FROM schema_migrations")}
            report = MigrationReport(created, mode, already_applied=len(done))
            for migration in MIGRATIONS:
                if migration.version in done:
                    continue
                try:
                    with conn.transaction():
                        migration.apply(conn, mode)
                        conn.execute(
                            "INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                            (migration.version, migration.description),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"migration {migration.version} ({migration.description}) failed and was "
                        f"rolled back: {str(exc).strip()}"
                    ) from exc
                report.applied.append(migration)
            return report
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATE_LOCK_KEY,))
