"""`smartcity dashboards …`: build, check and push the Grafana dashboards."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from smartcity.settings import Settings

app = typer.Typer(help="Grafana dashboards as code (dashboards/).", no_args_is_help=True)


@app.command("build")
def build() -> None:
    """Write every dashboard's JSON into dashboards/json/ (commit the result)."""
    from dashboards.build import write

    console = Console()
    for path in write():
        console.print(f"wrote {path}")


@app.command("check")
def check(
    database_url: Annotated[
        str | None,
        typer.Option(help="Database with data to run the panels' SQL on (default: settings)."),
    ] = None,
    sql: Annotated[
        bool, typer.Option(help="Run the panels' SQL and EXPLAIN it (needs the database).")
    ] = True,
) -> None:
    """Check the committed dashboards: they round-trip through the SDK's model, panel ids and
    positions are unique, the JSON is what 'build' generates, and (with --sql) every panel's
    SQL with Grafana's macros expanded returns rows without a sequential scan of a raw table.
    """
    from dashboards.check import check_all

    conninfo = (database_url or Settings().database_conninfo) if sql else None
    problems = check_all(conninfo)
    console = Console()
    for problem in problems:
        console.print(f"[red]✗[/] {problem}", highlight=False, soft_wrap=True)
    if problems:
        console.print(f"{len(problems)} problem(s)")
        raise typer.Exit(1)
    console.print("dashboards OK" + ("" if sql else " (SQL not checked)"))


@app.command("push")
def push(
    url: Annotated[str, typer.Option(help="Grafana's base URL, e.g. http://127.0.0.1:3000.")],
    token: Annotated[
        str,
        typer.Option(
            envvar="GRAFANA_TOKEN", help="Service account token (Editor); or GRAFANA_TOKEN."
        ),
    ],
    datasource_uid: Annotated[
        str, typer.Option(help="uid of the PostgreSQL datasource in that Grafana.")
    ] = "smartcity-pg",
    prometheus_uid: Annotated[
        str,
        typer.Option(help="uid of the Prometheus datasource (ingest health) in that Grafana."),
    ] = "smartcity-prometheus",
    folder_uid: Annotated[str | None, typer.Option(help="Folder to save into.")] = None,
) -> None:
    """Upload every committed dashboard to a running Grafana (overwriting by uid)."""
    from dashboards.push import push as run_push

    console = Console()
    for pushed in run_push(
        url,
        token,
        datasource_uid=datasource_uid,
        prometheus_uid=prometheus_uid,
        folder_uid=folder_uid,
    ):
        console.print(f"pushed {pushed.title} ({pushed.uid}) → {pushed.url}", highlight=False)
