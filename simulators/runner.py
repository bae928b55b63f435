"""Drive a lamp fleet on the simulated clock and publish its readings (the lighting-only entry
point the first slice used; `simulators.scenario` runs every feed)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from simulators.clock import SimClock
from simulators.lighting import LampFleet
from simulators.stream import RunStats, Sink, drive, until

__all__ = ["RunStats", "run_lighting"]


def run_lighting(
    fleet: LampFleet,
    clock: SimClock,
    sink: Sink,
    *,
    topic_root: str,
    interval_s: float,
    duration_s: float | None,
    stop: threading.Event,
    progress: Callable[[RunStats], None] | None = None,
) -> RunStats:
    """Publish the fleet's readings until `duration_s` simulated seconds pass or `stop` is set."""
    messages = until(fleet.messages(clock.start, topic_root, interval_s), duration_s)
    return drive(
        messages,
        lambda _t, topic, payload: sink(topic, payload),
        clock=clock,
        stop=stop,
        progress=progress,
    )
