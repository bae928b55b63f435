"""`smartcity alerts …`: the scheduled alert rules and alert delivery."""

from __future__ import annotations

import typer

from smartcity import logs
from smartcity.settings import Settings

app = typer.Typer(help="Scheduled alert rules and delivery.", no_args_is_help=True)


@app.command("run")
def run() -> None:
    """Sweep the offline rule and publish alert changes to MQTT every SMARTCITY_ALERTS_INTERVAL_S.

    The per-reading rules run inside the ingest (after each commit); this loop does what needs
    the clock. Stops cleanly on SIGINT/SIGTERM.
    """
    from smartcity.alerts.loop import run as run_loop
    from smartcity.cli.signals import stop_event

    settings = Settings()
    logs.configure(settings)
    run_loop(settings, stop_event())
