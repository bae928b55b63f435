"""History for dashboards, benchmarks and travel-time learning: days of simulated messages,
generated as fast as the models go, through the same fleets as a live run.

`history` is the library entry point (the storage benchmark calls it); `smartcity backfill`
feeds it either straight into the ingest's decoder and writer (the default) or to the broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from simulators.faults import FaultLog
from simulators.scenario import Scenario, ScenarioOptions
from simulators.stream import Message
from simulators.transit import GroundTruthSink

DAY_S = 86400.0


def default_start(days: float, now: datetime | None = None) -> datetime:
    """`days` before the start of the current UTC hour: the history ends about now."""
    now = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    return now - timedelta(days=days)


def history(
    options: ScenarioOptions,
    *,
    days: float,
    start: datetime,
    topic_root: str,
    fault_log: FaultLog | None = None,
    ground_truth: GroundTruthSink | None = None,
) -> Iterator[Message]:
    """Every message of `days` simulated days from `start`, in time order: (t_s since
    `start`, topic, payload). Same options and start ⇒ the same messages."""
    if days <= 0:
        raise ValueError("days must be positive")
    scenario = Scenario(
        options,
        start=start.astimezone(UTC),
        topic_root=topic_root,
        fault_log=fault_log,
        ground_truth=ground_truth,
    )
    return scenario.messages(days * DAY_S)
