"""`smartcity record` and `smartcity replay`: recordings of MQTT traffic (SCREC1 files)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from smartcity.cli.signals import stop_event
from smartcity.cli.simulate import parse_duration, parse_speed
from smartcity.errors import ConfigurationError
from smartcity.settings import Settings


def record(
    out: Annotated[Path, typer.Argument(help="The recording to write.")],
    topic: Annotated[
        str | None, typer.Option(help="Topic filter (default: '{root}/#', every city feed).")
    ] = None,
    duration: Annotated[
        str | None, typer.Option(help="Stop after this much real time (90, 15m, 2h).")
    ] = None,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many messages.")] = None,
) -> None:
    """Record the broker's traffic into a compact file (topic, payload, arrival time) that
    'smartcity replay' can republish. Ctrl-C stops and keeps what was recorded."""
    from simulators.replay import record_broker

    settings = Settings()
    console = Console(stderr=True)
    topic_filter = topic or f"{settings.mqtt_topic_root}/#"
    console.print(
        f"recording {topic_filter} from {settings.mqtt_host}:{settings.mqtt_port} to {out}",
        highlight=False,
    )
    with console.status("recording…") as status:
        recorded = record_broker(
            settings,
            out,
            topic_filter=topic_filter,
            stop=stop_event(),
            duration_s=parse_duration(duration),
            max_messages=count,
            client_id=f"smartcity-record-{out.stem}",
            progress=lambda n: status.update(f"recording… {n:,} messages"),
        )
    console.print(f"recorded {recorded:,} messages to {out}", highlight=False)


def replay(
    path: Annotated[
        Path, typer.Argument(help="A recording (from 'simulate --record' or 'record').")
    ],
    speed: Annotated[
        str, typer.Option(help="Replay speed: 1 = original timing, 60 = 60× faster, or 'max'.")
    ] = "1",
    city_prefix: Annotated[
        str | None,
        typer.Option(
            help="Republish under this '{root}/{city}' prefix instead of the recorded one, "
            "e.g. 'city/aktobe'."
        ),
    ] = None,
) -> None:
    """Republish a recording (QoS 1), preserving the relative timing of its messages divided by
    --speed, or as fast as the broker takes them with --speed max."""
    from simulators.publish import Publisher
    from simulators.recording import RecordingError
    from simulators.replay import replay as run_replay

    if not path.is_file():
        raise ConfigurationError(f"no recording at {path}")
    if city_prefix is not None and len(city_prefix.strip("/").split("/")) != 2:
        raise ConfigurationError("--city-prefix must be two topic levels, e.g. 'city/aktobe'")
    settings = Settings()
    console = Console(stderr=True)
    columns = [
        TextColumn("[bold]replay"),
        BarColumn(),
        TextColumn("{task.fields[messages]:>12,} msgs  {task.fields[rate]:>9,.0f}/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with (
        Publisher(settings, client_id=f"smartcity-replay-{path.stem}") as pub,
        Progress(*columns, console=console) as bar,
    ):
        task = bar.add_task("replay", total=1.0, messages=0, rate=0.0)
        try:
            stats = run_replay(
                path,
                pub.publish,
                speed=parse_speed(speed),
                stop=stop_event(),
                prefix=city_prefix,
                progress=lambda s, share: bar.update(
                    task, completed=share, messages=s.messages, rate=s.rate_per_s
                ),
            )
        except RecordingError as exc:
            raise ConfigurationError(str(exc)) from None
        bar.update(task, completed=1.0, messages=stats.messages, rate=stats.rate_per_s)
        pub.flush()
    console.print(
        f"replayed {stats.messages:,} messages in {stats.real_seconds:.1f} s "
        f"({stats.rate_per_s:,.0f}/s); acknowledged by the broker: {pub.acknowledged:,}",
        highlight=False,
    )
