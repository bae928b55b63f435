"""`smartcity simulate …`: publish (and/or record) simulated device feeds.

`lighting`, `metering` and `transit` run one feed; `all` runs every feed at once. Every
command shares the time, fault and recording options; docs/simulators.md lists them all.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from smartcity.cli.signals import stop_event
from smartcity.errors import ConfigurationError
from smartcity.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from simulators.live import RunPlan, RunResult
    from simulators.scenario import Scenario, ScenarioOptions
    from simulators.stream import RunStats

app = typer.Typer(
    help="Publish (or record) simulated device feeds: lighting, metering, transit, or all.",
    no_args_is_help=True,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str | None) -> float | None:
    """'90', '90s', '15m', '2h', '30d' → simulated seconds."""
    if value is None:
        return None
    match = _DURATION.match(value)
    if not match or float(match.group(1)) <= 0:
        raise ConfigurationError(
            f"--duration {value!r} is not a positive span of time; use e.g. 3600, 90m, 2h or 1d"
        )
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def parse_speed(value: str) -> float | None:
    """'60' → 60.0 simulated seconds per real second; 'max' → None (unpaced)."""
    if value.strip().lower() == "max":
        return None
    try:
        speed = float(value)
    except ValueError:
        speed = -1.0
    if speed <= 0:
        raise ConfigurationError(f"--speed {value!r} must be a positive number or 'max'")
    return speed


Speed = Annotated[
    str,
    typer.Option(help="Simulated seconds per real second (60 = one minute per second), or 'max'."),
]
Duration = Annotated[
    str | None,
    typer.Option(
        help="Stop after this span of simulated time (3600, 90m, 2h, 1d); default: never."
    ),
]
Start = Annotated[
    datetime | None,
    typer.Option(
        help="Simulated start time, UTC (default: now).", formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]
    ),
]
Seed = Annotated[int, typer.Option(help="Random seed: the same seed gives the same bytes.")]
Record = Annotated[
    Path | None, typer.Option(help="Also write every message to this recording (SCREC1 format).")
]
NoPublish = Annotated[
    bool, typer.Option("--no-publish", help="Do not connect to the broker (use with --record).")
]
Faults = Annotated[
    list[str] | None,
    typer.Option(
        "--fault",
        help="Inject a fault: KIND=RATE (expected occurrences per device per simulated day), "
        "e.g. --fault lamp_failure=0.01 --fault metering.silent=0.02. Repeatable.",
    ),
]
Malformed = Annotated[
    float,
    typer.Option(min=0.0, max=1.0, help="Share of messages replaced by malformed copies (0–1)."),
]
FaultLogOpt = Annotated[
    Path | None, typer.Option(help="Write the injected faults (ground truth) as JSON lines here.")
]
GroundTruth = Annotated[
    Path | None,
    typer.Option(help="Write each bus's actual arrival at each stop (CSV) here."),
]
Workers = Annotated[
    int, typer.Option(min=1, help="Publisher processes (each its own share of the devices).")
]


def _run(
    options: ScenarioOptions,
    *,
    speed: str,
    duration: str | None,
    start: datetime | None,
    record: Path | None,
    no_publish: bool,
    fault_log: Path | None,
    ground_truth: Path | None,
    workers: int,
    label: str,
) -> RunResult:
    from simulators.live import RunPlan

    settings = Settings()
    console = Console(stderr=True)
    plan = RunPlan(
        options,
        start=(start.replace(tzinfo=UTC) if start else datetime.now(UTC).replace(microsecond=0)),
        speed=parse_speed(speed),
        duration_s=parse_duration(duration),
        publish=not no_publish,
        record=record,
        fault_log=fault_log,
        ground_truth=ground_truth,
        workers=workers,
        client_id=f"smartcity-sim-{label}-{options.seed}",
    )
    try:
        plan.validate()
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    target = "" if no_publish else f"; broker {settings.mqtt_host}:{settings.mqtt_port}"

    def announce(scenario: Scenario) -> None:
        console.print(
            f"simulating {scenario.describe()}; from {plan.start:%Y-%m-%d %H:%M:%S}Z, speed "
            f"{'max' if plan.speed is None else f'×{plan.speed:g}'}{target}"
            + (f"; recording to {record}" if record else ""),
            highlight=False,
        )

    result = _with_progress(plan, settings, console, announce)
    _summary(console, plan, result)
    return result


def _with_progress(
    plan: RunPlan, settings: Settings, console: Console, announce: Callable[[Scenario], None]
) -> RunResult:
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from simulators.live import run

    stop = stop_event()
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[messages]:>12,} msgs  {task.fields[rate]:>9,.0f}/s"),
        TextColumn("lag {task.fields[lag]:5.2f} s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("simulated time", total=plan.duration_s, messages=0, rate=0.0, lag=0.0)

        def show(stats: RunStats) -> None:
            bar.update(
                task,
                completed=stats.sim_seconds,
                messages=stats.messages,
                rate=stats.rate_per_s,
                lag=max(stats.lag_s, 0.0),
            )

        result = run(plan, settings, stop, show, announce)
        show(result.stats)
        if plan.duration_s is not None and not stop.is_set():
            bar.update(task, completed=plan.duration_s)
    return result


def _summary(console: Console, plan: RunPlan, result: RunResult) -> None:
    s = result.stats
    kinds = ", ".join(f"{n:,} {k}" for k, n in sorted(s.by_kind.items()))
    console.print(
        f"sent {s.messages:,} messages ({kinds}) in {s.real_seconds:.1f} s: "
        f"achieved {s.rate_per_s:,.0f} msg/s with {result.workers} worker(s)",
        highlight=False,
    )
    if plan.speed is not None:
        verdict = "[green]sustained[/]" if s.max_lag_s < 1.0 else "[red]fell behind[/]"
        console.print(
            f"configured ≈ {result.configured_rate_per_s:,.0f} msg/s (buses count only while in "
            f"service); worst lag behind the clock {s.max_lag_s:.2f} s: {verdict}",
            highlight=False,
        )
    if plan.publish:
        console.print(
            f"acknowledged by the broker: {result.acknowledged:,} of {result.sent:,}",
            highlight=False,
        )
    if result.commands_applied or result.commands_rejected:
        console.print(
            f"lamp commands applied: {result.commands_applied}, rejected: "
            f"{len(result.commands_rejected)}",
            highlight=False,
        )
        for reason in result.commands_rejected[:5]:
            console.print(f"  rejected command — {reason}", highlight=False)


def _options(**kw: object) -> ScenarioOptions:
    from simulators.scenario import ScenarioOptions

    return ScenarioOptions(**kw)  # type: ignore[arg-type]


@app.command("lighting")
def lighting(
    city: Annotated[str, typer.Option(help="City slug (astana, almaty, shymkent, aktobe).")] = (
        "astana"
    ),
    lamps: Annotated[int, typer.Option(min=1, help="Number of lamps.")] = 1000,
    interval: Annotated[
        float, typer.Option(min=1.0, help="Seconds (simulated) between a lamp's reports.")
    ] = 60.0,
    speed: Speed = "1",
    duration: Duration = None,
    start: Start = None,
    seed: Seed = 1,
    record: Record = None,
    no_publish: NoPublish = False,
    fault: Faults = None,
    malformed: Malformed = 0.0,
    fault_log: FaultLogOpt = None,
    workers: Workers = 1,
) -> None:
    """Street lamps that switch on at dusk and off at dawn (from the sun's position), dim to
    50 % after midnight, obey lamp commands, and report power, voltage, current and their
    energy register.

    Publishes QoS 1 on {root}/{city}/lighting/{lamp_id}/telemetry, listens on …/cmd, and prints
    the achieved rate.
    """
    _run(
        _options(
            lamps=lamps,
            lighting_city=city,
            lamp_interval_s=interval,
            seed=seed,
            faults=fault or [],
            malformed_rate=malformed,
        ),
        speed=speed,
        duration=duration,
        start=start,
        record=record,
        no_publish=no_publish,
        fault_log=fault_log,
        ground_truth=None,
        workers=workers,
        label=f"lighting-{city}",
    )


@app.command("metering")
def metering(
    city: Annotated[str, typer.Option(help="City slug.")] = "astana",
    meters: Annotated[int, typer.Option(min=1, help="Number of meters.")] = 1000,
    interval: Annotated[
        float, typer.Option(min=1.0, help="Seconds (simulated) per meter interval.")
    ] = 900.0,
    gateway_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of meters behind data concentrators.")
    ] = 0.5,
    speed: Speed = "1",
    duration: Duration = None,
    start: Start = None,
    seed: Seed = 1,
    record: Record = None,
    no_publish: NoPublish = False,
    fault: Faults = None,
    malformed: Malformed = 0.0,
    fault_log: FaultLogOpt = None,
    workers: Workers = 1,
) -> None:
    """Electricity and water meters of households and businesses: load profiles by hour,
    weekday and season, monotonic registers, 15-minute interval readings; part of the fleet
    through data concentrators as SenML packs."""
    _run(
        _options(
            meters=meters,
            metering_city=city,
            meter_interval_s=interval,
            gateway_share=gateway_share,
            seed=seed,
            faults=fault or [],
            malformed_rate=malformed,
        ),
        speed=speed,
        duration=duration,
        start=start,
        record=record,
        no_publish=no_publish,
        fault_log=fault_log,
        ground_truth=None,
        workers=workers,
        label=f"metering-{city}",
    )


@app.command("transit")
def transit(
    city: Annotated[str, typer.Option(help="City slug.")] = "shymkent",
    buses: Annotated[int, typer.Option(min=1, help="Number of buses.")] = 100,
    interval: Annotated[float, typer.Option(min=1.0, help="Seconds between GPS fixes.")] = 10.0,
    gtfs: Annotated[
        Path | None, typer.Option(help="Drive this GTFS zip (default: generate the network).")
    ] = None,
    routes: Annotated[int, typer.Option(min=1, help="Routes of a generated network.")] = 30,
    ground_truth: GroundTruth = None,
    speed: Speed = "1",
    duration: Duration = None,
    start: Start = None,
    seed: Seed = 1,
    record: Record = None,
    no_publish: NoPublish = False,
    fault: Faults = None,
    malformed: Malformed = 0.0,
    fault_log: FaultLogOpt = None,
    workers: Workers = 1,
) -> None:
    """Buses driving the network's trips along their shapes: rush-hour speeds, dwell at stops,
    running late or early, GPS fixes with noise; the ground truth of every arrival."""
    _run(
        _options(
            buses=buses,
            transit_city=city,
            bus_interval_s=interval,
            gtfs_path=gtfs,
            routes=routes,
            seed=seed,
            faults=fault or [],
            malformed_rate=malformed,
        ),
        speed=speed,
        duration=duration,
        start=start,
        record=record,
        no_publish=no_publish,
        fault_log=fault_log,
        ground_truth=ground_truth,
        workers=workers,
        label=f"transit-{city}",
    )


@app.command("all")
def all_feeds(
    lamps: Annotated[int, typer.Option(min=0, help="Lamps (in --lighting-city).")] = 1000,
    meters: Annotated[int, typer.Option(min=0, help="Meters (in --metering-city).")] = 1000,
    buses: Annotated[int, typer.Option(min=0, help="Buses (in --transit-city).")] = 100,
    lighting_city: Annotated[str, typer.Option()] = "astana",
    metering_city: Annotated[str, typer.Option()] = "astana",
    transit_city: Annotated[str, typer.Option()] = "shymkent",
    gtfs: Annotated[Path | None, typer.Option(help="Drive this GTFS zip.")] = None,
    routes: Annotated[int, typer.Option(min=1, help="Routes of a generated network.")] = 30,
    ground_truth: GroundTruth = None,
    speed: Speed = "1",
    duration: Duration = None,
    start: Start = None,
    seed: Seed = 1,
    record: Record = None,
    no_publish: NoPublish = False,
    fault: Faults = None,
    malformed: Malformed = 0.0,
    fault_log: FaultLogOpt = None,
    workers: Workers = 1,
) -> None:
    """Every feed at once (lamps every 60 s, meters every 15 min, buses every 10 s, simulated),
    paced on one simulated clock; prints the achieved rate and whether it kept up."""
    _run(
        _options(
            lamps=lamps,
            meters=meters,
            buses=buses,
            lighting_city=lighting_city,
            metering_city=metering_city,
            transit_city=transit_city,
            gtfs_path=gtfs,
            routes=routes,
            seed=seed,
            faults=fault or [],
            malformed_rate=malformed,
        ),
        speed=speed,
        duration=duration,
        start=start,
        record=record,
        no_publish=no_publish,
        fault_log=fault_log,
        ground_truth=ground_truth,
        workers=workers,
        label="all",
    )
