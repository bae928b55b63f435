"""`smartcity db …`: the database schema."""

from __future__ import annotations

import typer
from rich.console import Console

from smartcity.db.connect import redact
from smartcity.db.migrate import migrate as run_migrate
from smartcity.settings import Settings

app = typer.Typer(help="Create and upgrade the database schema.", no_args_is_help=True)


@app.command("migrate")
def migrate() -> None:
    """Create the database if it is missing and apply every pending migration.

    Safe to run any number of times: applied versions are recorded in `schema_migrations`
    and skipped. The storage mode (TimescaleDB hypertables, or plain PostgreSQL partitioned
    tables) is chosen on the first run (SMARTCITY_STORAGE_MODE, default auto) and kept.
    """
    settings = Settings()
    console = Console()
    report = run_migrate(settings)
    where = redact(settings.database_conninfo)
    if report.database_created:
        console.print(f"created database at {where}")
    for m in report.applied:
        console.print(f"applied migration {m.version:04d}: {m.description}")
    if not report.applied:
        console.print(
            f"schema is up to date ({report.already_applied} migrations applied, "
            f"storage mode {report.storage_mode.value}) at {where}"
        )
    else:
        console.print(f"storage mode: {report.storage_mode.value}")
