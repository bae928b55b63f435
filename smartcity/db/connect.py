"""Connecting to PostgreSQL, and creating the service's database when it is missing."""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from smartcity.errors import ServiceUnavailableError

# Short: a person waiting on `db migrate` or a test should hear "PostgreSQL is down" quickly.
CONNECT_TIMEOUT_S = 5


def database_name(conninfo: str) -> str:
    name = conninfo_to_dict(conninfo).get("dbname")
    if not name:
        raise ServiceUnavailableError(
            f"the database URL {redact(conninfo)!r} names no database; "
            "end it with /smartcity (or another name)"
        )
    return str(name)


def redact(conninfo: str) -> str:
    """The conninfo without its password, for messages and logs."""
    params = conninfo_to_dict(conninfo)
    if "password" in params:
        params["password"] = "***"  # noqa: S105 - the mask, not a password
    return make_conninfo(**{k: str(v) for k, v in params.items()})


def with_database(conninfo: str, dbname: str) -> str:
    """The same server and credentials, another database."""
    return make_conninfo(conninfo, dbname=dbname)


def connect(conninfo: str, *, autocommit: bool = False) -> psycopg.Connection[tuple[object, ...]]:
    """Open a connection, turning "cannot connect" into an error that says what to do."""
    try:
        return psycopg.connect(conninfo, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.OperationalError as exc:
        raise ServiceUnavailableError(
            f"cannot connect to PostgreSQL at {redact(conninfo)}: {str(exc).strip()}\n"
            "Start PostgreSQL (e.g. 'pg_ctlcluster 15 main start') or set SMARTCITY_DATABASE_URL."
        ) from exc


def ensure_database(conninfo: str) -> bool:
    """Create the database named in `conninfo` if it does not exist; True if it was created."""
    name = database_name(conninfo)
    with connect(with_database(conninfo, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:
            return False  # created concurrently by another process: fine
        return True
