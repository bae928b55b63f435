"""`smartcity apikey …`: API keys for operators and apps, tokens for residents' meters."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from smartcity import apikeys
from smartcity.db.connect import connect
from smartcity.security import Role
from smartcity.settings import Settings

app = typer.Typer(
    help="Create, list and revoke API keys (roles viewer < operator < admin) and meter tokens. "
    "Keys are stored hashed: a new key is printed once and cannot be shown again.",
    no_args_is_help=True,
)


@app.command("create")
def create(
    name: Annotated[str, typer.Option(help="Who or what uses the key, e.g. ops-dashboard.")],
    role: Annotated[Role, typer.Option(help="viewer reads; operator also commands lamps.")],
) -> None:
    """Create a key and print it once (to stdout, alone, so scripts can capture it)."""
    with connect(Settings().database_conninfo, autocommit=True) as conn:
        key = apikeys.create_key(conn, name, role)
    Console(stderr=True).print(
        f"created {role.value} key {name!r}; it is shown only now, store it safely:"
    )
    print(key)


@app.command("list")
def list_() -> None:
    """The keys, their roles and whether they are revoked (never the keys themselves)."""
    with connect(Settings().database_conninfo, autocommit=True) as conn:
        keys = apikeys.list_keys(conn)
    table = Table("name", "role", "key starts", "created (UTC)", "revoked (UTC)")
    for k in keys:
        table.add_row(
            k.name,
            k.role,
            k.key_prefix + "…",
            f"{k.created_at:%Y-%m-%d %H:%M}",
            "" if k.revoked_at is None else f"{k.revoked_at:%Y-%m-%d %H:%M}",
        )
    Console().print(table)


@app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke a key; requests with it are refused from then on."""
    with connect(Settings().database_conninfo, autocommit=True) as conn:
        apikeys.revoke_key(conn, name)
    Console().print(f"revoked API key {name!r}")


@app.command("meter-token")
def meter_token(
    meter_id: Annotated[str, typer.Argument(help="The resident's meter.")],
    issued_by: Annotated[str, typer.Option(help="Who hands the token out (recorded).")] = "cli",
) -> None:
    """Create a token that reads one meter's consumption and print it once."""
    with connect(Settings().database_conninfo, autocommit=True) as conn:
        token = apikeys.create_meter_token(conn, meter_id, issued_by)
    Console(stderr=True).print(f"created a token for meter {meter_id!r}; shown only now:")
    print(token)


@app.command("revoke-meter-tokens")
def revoke_meter_tokens(
    meter_id: Annotated[str, typer.Argument(help="The meter whose tokens to revoke.")],
) -> None:
    """Revoke every token of a meter (e.g. when its resident moves out)."""
    with connect(Settings().database_conninfo, autocommit=True) as conn:
        count = apikeys.revoke_meter_tokens(conn, meter_id)
    Console().print(f"revoked {count} token(s) of meter {meter_id!r}")
