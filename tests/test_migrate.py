"""`smartcity db migrate`: creates the database, is idempotent, and keeps its storage mode."""

from __future__ import annotations

import uuid
from datetime import date

import psycopg
from typer.testing import CliRunner

from smartcity.cli import app
from smartcity.db import storage
from smartcity.db.migrate import migrate
from smartcity.db.migrations import MIGRATIONS
from smartcity.settings import Settings

_SNAPSHOT_SQL = """
SELECT 'column', table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable
  FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT 'index', indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'constraint', conrelid::regclass || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT 'migration', version || ' ' || description || ' ' || applied_at
  FROM schema_migrations
UNION ALL
SELECT 'meta', key || '=' || value FROM schema_meta
ORDER BY 1, 2
"""


def _snapshot(conninfo: str) -> list[tuple[object, ...]]:
    with psycopg.connect(conninfo) as conn:
        return conn.execute(_SNAPSHOT_SQL).fetchall()


def test_migrate_creates_a_missing_database_and_a_second_run_changes_nothing(
    pg_admin: str,
) -> None:
    name = f"smartcity_migrate_twice_{uuid.uuid4().hex[:8]}"
    conninfo = psycopg.conninfo.make_conninfo(pg_admin, dbname=name)
    with psycopg.connect(pg_admin, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    try:
        env = {"SMARTCITY_DATABASE_URL": conninfo}
        first = CliRunner().invoke(app, ["db", "migrate"], env=env)
        assert first.exit_code == 0, first.output
        assert "created database" in first.output
        assert "applied migration 0001" in first.output
        before = _snapshot(conninfo)
        assert len(before) > 20

        second = CliRunner().invoke(app, ["db", "migrate"], env=env)
        assert second.exit_code == 0, second.output
        assert "schema is up to date" in second.output
        assert "applied migration" not in second.output
        assert _snapshot(conninfo) == before
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_every_migration_is_recorded_with_the_storage_mode(database_url: str) -> None:
    report = migrate(Settings(_env_file=None, database_url=database_url))  # type: ignore[call-arg]
    assert report.applied == []
    assert report.already_applied == len(MIGRATIONS)
    with psycopg.connect(database_url) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        assert versions == [m.version for m in MIGRATIONS]
        # This machine has no TimescaleDB, so auto picks plain PostgreSQL partitioning.
        assert storage.read_mode(conn) is storage.StorageMode.POSTGRESQL


def test_plain_mode_creates_daily_partitions_on_demand(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        mode = storage.read_mode(conn)
        days = {date(2026, 11, 23), date(2026, 11, 24)}
        storage.ensure_partitions(conn, mode, "lighting_readings", days)
        storage.ensure_partitions(conn, mode, "lighting_readings", days)  # idempotent
        assert storage.existing_partition_days(conn, "lighting_readings") == days
        bounds = conn.execute(
            "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c "
            "WHERE c.relname = 'lighting_readings_p20261123'"
        ).fetchone()
        assert bounds is not None
        assert "2026-11-23 00:00:00+00" in str(bounds[0])
        assert "2026-11-24 00:00:00+00" in str(bounds[0])
