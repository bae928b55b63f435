"""`smartcity maintain`: keep the rollups, partitions and retention current."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from smartcity import logs
from smartcity.cli.signals import stop_event
from smartcity.settings import Settings


def maintain(
    once: Annotated[bool, typer.Option("--once", help="Run one pass and exit.")] = False,
) -> None:
    """Fold newly ingested readings into the hourly and daily rollups (late readings update
    their old buckets), create partitions ahead and drop expired data per tier.

    Runs every SMARTCITY_MAINTAIN_INTERVAL_S until Ctrl-C / SIGTERM, or once with --once.
    On TimescaleDB it also installs the columnstore and retention policies, which the
    extension's scheduler then runs. See docs/storage.md.
    """
    from smartcity.rollups.maintain import run, run_once

    settings = Settings()
    logs.configure(settings)
    if once:
        report = run_once(settings)
        Console().print(
            f"rollups refreshed: hours {report.hours_refreshed}, days {report.days_refreshed}; "
            f"watermark {report.watermark}; removed {report.removed}",
            highlight=False,
        )
        return
    run(settings, stop_event())
