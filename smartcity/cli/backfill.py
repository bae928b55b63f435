"""`smartcity backfill`: days of history, generated as fast as the models go.

`--via ingest` (the default) hands every message to the ingest's own decoder and batch writer
(`ingest.decode.decode` → `ingest.writer.BatchWriter`, binary COPY, idempotent), skipping the
broker: the rows are exactly those a live run would make, and a rerun adds none. Feeds the
ingest has no decoder for yet are counted and skipped, not dead-lettered. `--via mqtt`
publishes to the broker (QoS 1, unpaced) for a running ingest to take in.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from smartcity import topics
from smartcity.errors import ConfigurationError, PayloadError
from smartcity.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Iterator

    from simulators.stream import Message

# Rows per transaction: large enough for COPY to pay off, small enough to show progress.
BATCH_ROWS = 5000


class Via(enum.StrEnum):
    INGEST = "ingest"
    MQTT = "mqtt"


def backfill(
    days: Annotated[float, typer.Option(min=0.001, help="Days of history to generate.")] = 30.0,
    lamps: Annotated[int, typer.Option(min=0, help="Lamps (in --lighting-city).")] = 1000,
    meters: Annotated[int, typer.Option(min=0, help="Meters (in --metering-city).")] = 1000,
    buses: Annotated[int, typer.Option(min=0, help="Buses (in --transit-city).")] = 0,
    lighting_city: Annotated[str, typer.Option()] = "astana",
    metering_city: Annotated[str, typer.Option()] = "astana",
    transit_city: Annotated[str, typer.Option()] = "shymkent",
    lamp_interval: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="Seconds between a lamp's reports (history is often "
            "kept coarser than live: 900 = one per 15 min).",
        ),
    ] = 900.0,
    start: Annotated[
        datetime | None,
        typer.Option(
            help="First simulated instant, UTC (default: DAYS before this hour).",
            formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"],
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
    via: Annotated[
        Via,
        typer.Option(
            help="ingest: straight through the ingest writer; mqtt: publish to the broker."
        ),
    ] = Via.INGEST,
    ground_truth: Annotated[
        Path | None, typer.Option(help="Write the buses' actual arrivals (CSV) here.")
    ] = None,
) -> None:
    """Generate DAYS of history through the same models as 'simulate' (for dashboards,
    benchmarks and learning bus travel times), straight into the database by default."""
    import csv

    from simulators.backfill import DAY_S, default_start, history
    from simulators.scenario import ScenarioOptions
    from simulators.transit import GROUND_TRUTH_FIELDS

    settings = Settings()
    console = Console(stderr=True)
    options = ScenarioOptions(
        lamps=lamps,
        meters=meters,
        buses=buses,
        lighting_city=lighting_city,
        metering_city=metering_city,
        transit_city=transit_city,
        lamp_interval_s=lamp_interval,
        seed=seed,
    )
    first = start.replace(tzinfo=UTC) if start else default_start(days)
    truth_file = ground_truth.open("w", newline="", encoding="utf-8") if ground_truth else None
    truth = None
    if truth_file is not None:
        truth = csv.DictWriter(truth_file, GROUND_TRUTH_FIELDS, lineterminator="\n")
        truth.writeheader()
    try:
        messages = history(
            options,
            days=days,
            start=first,
            topic_root=settings.mqtt_topic_root,
            ground_truth=truth.writerow if truth is not None else None,
        )
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    console.print(
        f"backfilling {days:g} days from {first:%Y-%m-%d %H:%M}Z via {via.value}",
        highlight=False,
    )
    columns = [
        TextColumn("[bold]simulated time"),
        BarColumn(),
        TextColumn("{task.fields[messages]:>12,} msgs  {task.fields[rate]:>9,.0f}/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    try:
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("backfill", total=days * DAY_S, messages=0, rate=0.0)
            if via is Via.INGEST:
                counts = _into_ingest(settings, messages, bar, task)
            else:
                counts = _into_mqtt(settings, messages, bar, task)
    finally:
        if truth_file is not None:
            truth_file.close()
    for what, n in sorted(counts.items()):
        console.print(f"  {what}: {n:,}", highlight=False)


def _into_ingest(
    settings: Settings, stream: Iterator[Message], bar: Progress, task: TaskID
) -> dict[str, int]:
    import time

    from ingest.decode import decode
    from ingest.writer import Batch, BatchWriter, DeadLetter

    counts: dict[str, int] = {"messages": 0, "rows written": 0}
    started = time.monotonic()
    batch = Batch.empty()
    root = settings.mqtt_topic_root
    with BatchWriter(settings.database_conninfo) as writer:
        for t_s, topic, payload in stream:
            counts["messages"] += 1
            try:
                decoded = decode(
                    topics.parse_inbound(root, topic),
                    payload,
                    max_payload_bytes=settings.ingest_max_payload_bytes,
                )
            except PayloadError as exc:
                if exc.reason == "unsupported_feed":
                    key = f"skipped, no ingest decoder yet ({topic.rpartition('/')[2]})"
                    counts[key] = counts.get(key, 0) + 1
                    continue
                batch.dead_letters.append(
                    DeadLetter(
                        datetime.now(UTC), topic, payload, len(payload), exc.reason, exc.detail
                    )
                )
                counts["dead letters"] = counts.get("dead letters", 0) + 1
                continue
            for table, rows in decoded.rows.items():
                batch.rows.setdefault(table, []).extend(rows)
            batch.sightings.extend(decoded.sightings)
            if batch.row_count() >= BATCH_ROWS:
                counts["rows written"] += batch.row_count()
                writer.write(batch)
                batch = Batch.empty()
                elapsed = time.monotonic() - started
                bar.update(
                    task,
                    completed=t_s,
                    messages=counts["messages"],
                    rate=counts["messages"] / max(elapsed, 1e-9),
                )
        if batch.row_count() or batch.dead_letters:
            counts["rows written"] += batch.row_count()
            writer.write(batch)
    return counts


def _into_mqtt(
    settings: Settings, stream: Iterator[Message], bar: Progress, task: TaskID
) -> dict[str, int]:
    import threading

    from simulators.publish import Publisher
    from simulators.stream import RunStats, drive

    with Publisher(settings, client_id=f"smartcity-backfill-{settings.mqtt_topic_root}") as pub:

        def show(stats: RunStats) -> None:
            bar.update(
                task,
                completed=stats.sim_seconds,
                messages=stats.messages,
                rate=stats.rate_per_s,
            )

        stats = drive(
            stream,
            lambda _t, topic, payload: pub.publish(topic, payload),
            clock=None,
            stop=threading.Event(),
            progress=show,
        )
        pub.flush()
    return {"messages": stats.messages, "acknowledged by the broker": pub.acknowledged}
