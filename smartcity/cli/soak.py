"""`smartcity soak`: the whole system at city scale under load and faults (docs/soak.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from smartcity.cli.simulate import parse_duration
from smartcity.errors import ConfigurationError
from smartcity.settings import Settings
from smartcity.soak.plan import SoakPlan


def soak(
    duration: Annotated[
        str, typer.Option(help="Real time the simulators publish (60 s or more): 120, 2m, 20m.")
    ] = "20m",
    scale: Annotated[
        float,
        typer.Option(
            help="Fraction of the full fleet (50,000 lamps, 100,000 meters, 800 buses in total, "
            "split over Astana, Almaty and Shymkent). docs/benchmarks.md says what this "
            "machine sustains."
        ),
    ] = 0.2,
    speed: Annotated[
        float,
        typer.Option(help="Simulated seconds per real second (event time reaches now at the end)."),
    ] = 1.0,
    api_rate: Annotated[
        float,
        typer.Option(
            help="API requests per second (operators and residents); the default is what this "
            "2-core machine answers beside the rest (docs/benchmarks.md)."
        ),
    ] = SoakPlan.api_rate_per_s,
    device_faults: Annotated[
        int,
        typer.Option(
            min=0,
            help="Device faults injected per kind and city (the alert score's ground truth).",
        ),
    ] = SoakPlan.device_faults_per_kind,
    storm_clients: Annotated[
        int, typer.Option(min=1, help="Devices connecting at once in the reconnect storm.")
    ] = 2000,
    malformed: Annotated[int, typer.Option(min=1, help="Messages in the malformed burst.")] = 1000,
    db_pause: Annotated[
        float, typer.Option(min=0.5, help="Seconds the database stays paused (SIGSTOP).")
    ] = 10.0,
    configured_servers: Annotated[
        bool,
        typer.Option(
            "--configured-servers",
            help="Use SMARTCITY_MQTT_* and SMARTCITY_DATABASE_URL's server (a throw-away "
            "database on it) instead of private ones; the broker restart and database pause "
            "are then skipped.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Write a PNG of the time series, faults marked.")
    ] = None,
) -> None:
    """Simulators for three cities, the ingest (2 workers), the API under operator and resident
    load, and five faults on a schedule; then every published reading is looked up.

    Prints published, stored, lost, duplicates, rejected by reason, publish→commit lag, API
    p99 (baseline and outside fault windows), memory growth per process, and the faults.
    """
    from smartcity.soak.report import plot as write_plot
    from smartcity.soak.report import print_table
    from smartcity.soak.run import run

    duration_s = parse_duration(duration)
    assert duration_s is not None
    plan = SoakPlan(
        duration_s=duration_s,
        scale=scale,
        speed=speed,
        api_rate_per_s=api_rate,
        device_faults_per_kind=device_faults,
        storm_clients=storm_clients,
        malformed_messages=malformed,
        db_pause_s=db_pause,
        private_servers=not configured_servers,
        sample_every_s=max(1.0, min(5.0, duration_s / 120)),
    )
    try:
        plan.validate()
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    console = Console(stderr=True)
    started = time.monotonic()

    def say(text: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:6.1f} s[/]  {text}", highlight=False)

    result = run(plan, Settings(), say)
    if plot is not None:
        write_plot(result, plan, plot)
        console.print(f"plot written to {plot}")
    if as_json:
        print(json.dumps(result.as_json()))
    else:
        print_table(result, Console())
    if not (result.acceptance["lost_zero"] and result.acceptance["duplicates_zero"]):
        raise typer.Exit(1)
