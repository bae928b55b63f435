"""Fixtures on the real PostgreSQL and Mosquitto.

* The shared servers (127.0.0.1:5432 and :1883, or SMARTCITY_TEST_DATABASE_URL and
  SMARTCITY_TEST_MQTT_HOST/PORT) are used when they answer. When one does not, a private
  instance is started from the system binaries for the session; when that is impossible too,
  the run stops with a message saying what to install.
* Every test gets its own database (a copy of a migrated template, so it costs one
  CREATE DATABASE) and its own MQTT topic root and client ids, so tests never see each
  other's data or messages.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from smartcity.db.connect import with_database
from smartcity.db.migrate import migrate
from smartcity.errors import ServiceUnavailableError
from smartcity.servers import PrivateMosquitto, PrivatePostgres, port_open
from smartcity.settings import Settings
from tests.helpers import discard_session

_DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/postgres"


def _server_ok(conninfo: str) -> bool:
    try:
        psycopg.connect(conninfo, connect_timeout=3).close()
        return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[str]:
    """Conninfo of a PostgreSQL server's `postgres` database that the tests may use."""
    conninfo = os.environ.get("SMARTCITY_TEST_DATABASE_URL", _DEFAULT_DB)
    if _server_ok(conninfo):
        yield conninfo
        return
    try:
        private = PrivatePostgres()
    except ServiceUnavailableError as exc:
        pytest.exit(
            f"PostgreSQL is not reachable at {conninfo} and no private server can start: {exc}. "
            "Install and start PostgreSQL ≥ 15 (Debian: apt-get install postgresql; "
            "pg_ctlcluster 15 main start) or set SMARTCITY_TEST_DATABASE_URL.",
            returncode=3,
        )
    with private:
        yield private.conninfo


@pytest.fixture(scope="session")
def mqtt_server() -> Iterator[tuple[str, int]]:
    """(host, port) of an MQTT broker the tests may use."""
    host = os.environ.get("SMARTCITY_TEST_MQTT_HOST", "127.0.0.1")
    port = int(os.environ.get("SMARTCITY_TEST_MQTT_PORT", "1883"))
    if port_open(host, port):
        yield host, port
        return
    try:
        private = PrivateMosquitto()
    except ServiceUnavailableError as exc:
        pytest.exit(
            f"no MQTT broker at {host}:{port} and no private one can start: {exc}. "
            "Install and start Mosquitto 2 (Debian: apt-get install mosquitto; "
            "mosquitto -d) or set SMARTCITY_TEST_MQTT_HOST/PORT.",
            returncode=3,
        )
    with private:
        yield private.host, private.port


@pytest.fixture(scope="session")
def template_db(pg_admin: str) -> Iterator[str]:
    """A migrated database that each test's database is copied from."""
    name = f"smartcity_tmpl_{uuid.uuid4().hex[:8]}"
    conninfo = with_database(pg_admin, name)
    migrate(Settings(_env_file=None, database_url=conninfo))  # type: ignore[call-arg]
    yield name
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def database_url(pg_admin: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database of this test's own."""
    name = f"smartcity_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    yield with_database(pg_admin, name)
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def topic_root() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(
    database_url: str, mqtt_server: tuple[str, int], topic_root: str
) -> Iterator[Settings]:
    """Settings for this test: its own database, topic root and MQTT client ids."""
    host, port = mqtt_server
    s = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        mqtt_host=host,
        mqtt_port=port,
        mqtt_topic_root=topic_root,
        ingest_client_id=f"ingest-{topic_root}",
        ingest_metrics_port=0,
    )
    yield s
    # The ingest's session is persistent by design; remove it so the broker keeps nothing.
    discard_session(s, s.ingest_client_id)
