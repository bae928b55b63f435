"""`smartcity gtfs …`: the static transit network (GTFS) of a city."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from smartcity.cities import get_city

app = typer.Typer(help="Static transit networks (GTFS feeds).", no_args_is_help=True)


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
