"""`smartcity simulate …`: publish simulated device feeds over MQTT."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console

from smartcity.cities import get_city
from smartcity.cli.signals import stop_event
from smartcity.settings import Settings

app = typer.Typer(help="Publish simulated device feeds over MQTT.", no_args_is_help=True)


@app.command("lighting")
def lighting(
    city: Annotated[str, typer.Option(help="City slug (astana, almaty, shymkent, aktobe).")] = (
        "astana"
    ),
    lamps: Annotated[int, typer.Option(min=1, help="Number of lamps.")] = 1000,
    interval: Annotated[
        float, typer.Option(min=1.0, help="Seconds (simulated) between a lamp's reports.")
    ] = 60.0,
    speed: Annotated[
        float, typer.Option(min=0.001, help="Simulated seconds per real second (60 = 1 min/s).")
    ] = 1.0,
    duration: Annotated[
        float | None,
        typer.Option(help="Stop after this many simulated seconds (default: run until Ctrl-C)."),
    ] = None,
    start: Annotated[
        datetime | None,
        typer.Option(
            help="Simulated start time, UTC (default: now).", formats=["%Y-%m-%dT%H:%M:%S"]
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same lamps.")] = 1,
) -> None:
    """Street lamps that switch on at dusk and off at dawn (from the sun's position), dim to
    50 % after midnight, and report power, voltage, current and their energy register.

    Publishes QoS 1 on {root}/{city}/lighting/{lamp_id}/telemetry and prints the achieved rate.
    """
    from simulators.clock import SimClock
    from simulators.lighting import LampFleet
    from simulators.publish import Publisher
    from simulators.runner import RunStats, run_lighting

    settings = Settings()
    console = Console(stderr=True)
    fleet = LampFleet(get_city(city), lamps, seed)
    clock = SimClock(start.replace(tzinfo=UTC) if start else None, speed)
    stop = stop_event()

    def show(stats: RunStats) -> None:
        console.print(
            f"published {stats.messages} readings ({stats.rate_per_s:,.0f}/s); "
            f"simulated time {clock.now():%Y-%m-%d %H:%M:%S}Z",
            highlight=False,
        )

    console.print(
        f"simulating {lamps} lamps in {fleet.city.name}, one report every {interval:g} s "
        f"(simulated), speed ×{speed:g}; broker {settings.mqtt_host}:{settings.mqtt_port}",
        highlight=False,
    )
    with Publisher(settings, client_id=f"smartcity-sim-lighting-{city}-{seed}") as pub:
        stats = run_lighting(
            fleet,
            clock,
            pub.publish,
            topic_root=settings.mqtt_topic_root,
            interval_s=interval,
            duration_s=duration,
            stop=stop,
            progress=show,
        )
        if not pub.flush():
            console.print("[yellow]warning:[/] the broker did not acknowledge every reading")
    show(stats)
    console.print(f"acknowledged by the broker: {pub.acknowledged} of {pub.sent}")
