"""The compose deployment's database init script, on a private PostgreSQL: Grafana's role
reads every table, including those created after it, and can change nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from smartcity.servers import PrivatePostgres

SCRIPT = Path(__file__).resolve().parent.parent / "deploy/compose/postgres/10-grafana-reader.sh"


@pytest.mark.slow
def test_grafana_reader_can_read_but_not_write() -> None:
    with PrivatePostgres() as pg:
        env = {
            "PATH": os.environ["PATH"],
            "PGHOST": pg.host,
            "PGPORT": str(pg.port),
            # What the timescale/timescaledb image sets for its init scripts.
            "POSTGRES_USER": "postgres",
            "POSTGRES_DB": "postgres",
            "GRAFANA_DB_PASSWORD": "reader-secret",
        }
        run = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, check=False)
        assert run.returncode == 0, run.stderr.decode()
        with psycopg.connect(pg.conninfo, autocommit=True) as admin:
            # A table created later, as a migration would.
            admin.execute("CREATE TABLE lighting_readings (lamp_id text)")
            admin.execute("INSERT INTO lighting_readings VALUES ('ast-lamp-000001')")
        reader = make_conninfo(pg.conninfo, user="grafana_reader", password="reader-secret")
        with psycopg.connect(reader, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM lighting_readings").fetchone() == (1,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("INSERT INTO lighting_readings VALUES ('x')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE TABLE mine (x int)")

        missing = subprocess.run(
            ["sh", str(SCRIPT)],
            env={k: v for k, v in env.items() if k != "GRAFANA_DB_PASSWORD"},
            capture_output=True,
            check=False,
        )
        assert missing.returncode != 0
        assert b"GRAFANA_DB_PASSWORD" in missing.stderr
