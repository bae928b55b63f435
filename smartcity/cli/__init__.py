"""The `smartcity` command: one entry point, a subcommand per job.

Each subcommand builds its own `Settings` (environment variables with the `SMARTCITY_` prefix,
or `.env`) and imports the process package it runs (`ingest`, `simulators`, `api`) only when
it runs, so `smartcity --help` is fast and the packages stay independent of each other.
"""

from __future__ import annotations

import sys

import structlog
import typer
from rich.console import Console

from smartcity.cli import (
    alerts,
    apikey,
    backfill,
    bench,
    dashboards,
    db,
    demo,
    deploy,
    gtfs,
    maintain,
    recordings,
    serve,
    simulate,
    soak,
)
from smartcity.errors import SmartCityError

app = typer.Typer(
    name="smartcity",
    help=(
        "Smart-city telemetry: street lights, meters and buses over MQTT into PostgreSQL/"
        "TimescaleDB, with an HTTP API.\n\n"
        "Start with 'smartcity demo' (everything at once), or run the parts: 'db migrate', "
        "'simulate lighting', 'ingest', 'api'. Settings come from SMARTCITY_* environment "
        "variables or a .env file (see .env.example)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _log_to_stderr() -> None:
    # Standard output is for what a command prints (tables, `--json` objects); log lines go to
    # standard error, also from commands that do not configure logging themselves. The stream
    # is looked up when a logger is made, so a replaced sys.stderr (tests) is followed.
    structlog.configure(logger_factory=lambda *_args: structlog.PrintLogger(sys.stderr))


app.add_typer(db.app, name="db")
app.add_typer(simulate.app, name="simulate")
app.add_typer(bench.app, name="bench")
app.add_typer(dashboards.app, name="dashboards")
app.add_typer(deploy.app, name="deploy")
app.add_typer(gtfs.app, name="gtfs")
app.add_typer(apikey.app, name="apikey")
app.add_typer(alerts.app, name="alerts")
app.command("ingest")(serve.ingest)
app.command("api")(serve.api)
app.command("demo")(demo.demo)
app.command("maintain")(maintain.maintain)
app.command("backfill")(backfill.backfill)
app.command("record")(recordings.record)
app.command("replay")(recordings.replay)
app.command("soak")(soak.soak)


def main() -> None:
    try:
        app()
    except SmartCityError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
