"""Drive a lamp fleet on the simulated clock and publish its readings.

Each lamp reports every `interval_s` simulated seconds, at its own phase within the interval
(so the fleet's traffic is spread evenly, as real devices' is). The runner sleeps until the
next report is due, produces every due report with its scheduled `ts`, and publishes it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import orjson

from simulators.clock import SimClock
from simulators.lighting import LampFleet
from smartcity import topics

Sink = Callable[[str, bytes], None]


@dataclass
class RunStats:
    messages: int = 0
    real_seconds: float = 0.0

    @property
    def rate_per_s(self) -> float:
        return self.messages / self.real_seconds if self.real_seconds > 0 else 0.0


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
    n = len(fleet)
    # Phases are drawn from the fleet's own generator, so a seed fixes the schedule too.
    next_due = fleet.rng.uniform(0, interval_s, size=n)
    topics_by_lamp = [
        topics.lamp_telemetry(topic_root, fleet.city.slug, lamp.lamp_id) for lamp in fleet.lamps
    ]
    stats = RunStats()
    started = time.monotonic()
    last_progress = started
    while not stop.is_set():
        horizon = float(next_due.min())
        if duration_s is not None and horizon > duration_s:
            break
        wait_s = clock.real_seconds_until(horizon)
        if wait_s > 0 and stop.wait(min(wait_s, 0.5)):
            break
        now_s = clock.elapsed_s()
        due = np.flatnonzero(next_due <= now_s)
        if duration_s is not None:
            due = due[next_due[due] <= duration_s]
        # Oldest first, so ts advances monotonically across the fleet.
        for i in due[np.argsort(next_due[due], kind="stable")]:
            ts = clock.start + timedelta(seconds=float(next_due[i]))
            sink(topics_by_lamp[i], orjson.dumps(fleet.reading(int(i), ts)))
            stats.messages += 1
        next_due[due] += interval_s
        now = time.monotonic()
        if progress is not None and now - last_progress >= 1.0:
            stats.real_seconds = now - started
            progress(stats)
            last_progress = now
    stats.real_seconds = time.monotonic() - started
    return stats
