"""`smartcity gtfs …`: GTFS static schedules — generate a city's network, import a feed, list and
remove its versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from smartcity.cities import get_city
from smartcity.db.connect import connect
from smartcity.settings import Settings

app = typer.Typer(
    help="GTFS static schedules: generate a network, import a feed as a new version, list and "
    "remove versions.",
    no_args_is_help=True,
)


class _RichProgress:
    """The importer's progress callback, drawn as one rich bar per step."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, task: str, completed: int, total: int) -> None:
        if total <= 0:  # an empty table: done as soon as it starts
            completed = total = 1
        task_id = self._tasks.get(task)
        if task_id is None:
            task_id = self._tasks[task] = self._progress.add_task(task, total=total)
        self._progress.update(task_id, completed=completed, total=total)


@app.command("import")
def import_(
    file: Annotated[
        Path, typer.Argument(help="The GTFS zip (agency.txt, stops.txt, routes.txt ...).")
    ],
    feed_id: Annotated[
        str | None,
        typer.Option(
            "--feed-id",
            help="Which feed this is a version of (default: from the file name, e.g. "
            "poa_gtfs.zip → poa_gtfs). Importing the same feed id again adds a new version.",
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option(help="No progress bars (they are drawn only on a terminal anyway).")
    ] = False,
) -> None:
    """Import a GTFS static feed as a new version, which becomes the active one.

    Reads agency, stops, routes, trips, stop_times, calendar and/or calendar_dates, shapes,
    frequencies, translations and feed_info; checks every reference and the order of each
    trip's times; computes distances along shapes in metres. The feed is refused as a whole
    if anything is wrong, with the file, line and field of each problem; the import runs in
    one transaction, so the active version changes only when it succeeds.
    """
    from smartcity.transit.gtfs_import import import_feed

    settings = Settings()
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description:<32}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet or not console.is_terminal,  # bars only where a person watches
        transient=True,
    ) as progress:
        result = import_feed(
            settings.database_conninfo, file, feed_id=feed_id, progress=_RichProgress(progress)
        )
    for warning in result.warnings:
        console.print(f"[yellow]note:[/] {warning}", highlight=False)
    counts = ", ".join(f"{n:,} {t.removeprefix('gtfs_')}" for t, n in result.row_counts.items())
    console.print(
        f"imported {file.name} as feed {result.feed_id!r} version {result.version_id} "
        f"(now active) in {result.seconds:.1f} s: {counts}",
        highlight=False,
    )


@app.command("list")
def list_(
    feed_id: Annotated[
        str | None, typer.Option("--feed-id", help="Only this feed's versions.")
    ] = None,
) -> None:
    """List the stored feed versions, newest first; the active one of each feed is marked."""
    from smartcity.transit.gtfs_store import list_versions

    settings = Settings()
    with connect(settings.database_conninfo) as conn:
        versions = list_versions(conn, feed_id)
    if not versions:
        Console().print("no GTFS feed versions; import one with 'smartcity gtfs import FILE.zip'")
        return
    table = Table("version", "feed", "active", "imported at (UTC)", "file", "trips", "stops")
    for v in versions:
        table.add_row(
            str(v.version_id),
            v.feed_id,
            "yes" if v.active else "",
            f"{v.imported_at:%Y-%m-%d %H:%M:%S}",
            v.source_name,
            f"{v.row_counts.get('gtfs_trips', 0):,}",
            f"{v.row_counts.get('gtfs_stops', 0):,}",
        )
    Console().print(table)


@app.command("remove")
def remove(
    version: Annotated[int, typer.Argument(help="The version id ('smartcity gtfs list').")],
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Also remove an active version (the one before becomes active)."
        ),
    ] = False,
) -> None:
    """Remove one feed version and all of its rows.

    An active version is removed only with --force; the feed's previous version (if any)
    then becomes active, which is how to roll back a bad import.
    """
    from smartcity.transit.errors import GtfsError
    from smartcity.transit.gtfs_store import list_versions, remove_version

    settings = Settings()
    with connect(settings.database_conninfo) as conn, conn.transaction():
        active = {v.version_id for v in list_versions(conn) if v.active}
        if version in active and not force:
            raise GtfsError(
                f"version {version} is the active version of its feed; add --force to remove "
                "it anyway (the previous version, if any, becomes active)"
            )
        removed = remove_version(conn, version)
        now_active = [v.version_id for v in list_versions(conn, removed.feed_id) if v.active]
    after = f"; version {now_active[0]} is now active" if now_active else ""
    Console().print(f"removed feed {removed.feed_id!r} version {version}{after}")


@app.command("generate")
def generate(
    out: Annotated[Path, typer.Option(help="Where to write the GTFS zip.")],
    city: Annotated[str, typer.Option(help="City slug (astana, almaty, shymkent, aktobe).")] = (
        "shymkent"
    ),
    routes: Annotated[int, typer.Option(min=1, help="Number of bus routes.")] = 30,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same feed.")] = 1,
) -> None:
    """Write a generated but plausible bus network as a GTFS zip: agency, stops, routes, trips
    (with blocks), stop_times, calendar, shapes, feed_info and translations (stop names in
    Kazakh, Russian and English). The same seed writes the same bytes."""
    from simulators.gtfs import generate as generate_network
    from simulators.gtfs import write_zip

    network = generate_network(get_city(city), seed=seed, routes=routes)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_zip(network, out)
    Console(stderr=True).print(
        f"wrote {out}: {len(network.routes)} routes, {len(network.stops)} stops, "
        f"{len(network.trips)} trips",
        highlight=False,
    )
