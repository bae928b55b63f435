"""Message streams: every simulator is an iterator of messages in simulated-time order.

A `Message` is `(t_s, topic, payload)`: `t_s` is the simulated publish time in seconds since
the run's start. Sources generate their messages from the simulated clock alone, never from
the wall clock, so a seed fixes every byte of a run whatever the pacing; `merge` interleaves
several sources by time, and `drive` paces a stream against a `SimClock` (or not at all, for
`--speed max`) and hands each message to a sink (a publisher, a recorder, a list, the ingest).
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from simulators.clock import SimClock

Message = tuple[float, str, bytes]
Sink = Callable[[str, bytes], None]
# Called with the message's simulated time before it is handed to the sink (recorders use it).
TimedSink = Callable[[float, str, bytes], None]

# The longest a paced run sleeps in one go, so that a stop request is seen promptly.
MAX_SLEEP_S = 0.25


@dataclass
class RunStats:
    messages: int = 0
    real_seconds: float = 0.0
    sim_seconds: float = 0.0
    # Messages per feed (the topic's last level: telemetry, reading, senml, position, …).
    by_kind: dict[str, int] = field(default_factory=dict)
    # How far behind its schedule a paced run fell (real seconds): the worst, and the last.
    max_lag_s: float = 0.0
    lag_s: float = 0.0

    @property
    def rate_per_s(self) -> float:
        return self.messages / self.real_seconds if self.real_seconds > 0 else 0.0


def merge(*sources: Iterable[Message]) -> Iterator[Message]:
    """Interleave time-ordered sources into one time-ordered stream (ties keep source order)."""
    return heapq.merge(*sources, key=lambda m: m[0])


def until(messages: Iterable[Message], duration_s: float | None) -> Iterator[Message]:
    """The messages up to and including `duration_s` simulated seconds (all if None)."""
    for msg in messages:
        if duration_s is not None and msg[0] > duration_s:
            return
        yield msg


def drive(
    messages: Iterable[Message],
    sink: TimedSink,
    *,
    clock: SimClock | None,
    stop: threading.Event,
    progress: Callable[[RunStats], None] | None = None,
    progress_every_s: float = 1.0,
) -> RunStats:
    """Hand each message to `sink` when its simulated time comes on `clock`.

    `clock=None` runs as fast as the sink takes messages (`--speed max`). Returns what was sent
    and how long it took; stops early when `stop` is set.
    """
    stats = RunStats()
    by_kind = stats.by_kind
    started = time.monotonic()
    next_progress = started + progress_every_s
    # Simulated seconds known to be due: messages up to here go out without reading the clock
    # again (a clock read per message cost more than the rest of this loop at city scale).
    due_s = -math.inf
    count = 0
    sent_t_s = 0.0
    for t_s, topic, payload in messages:
        if clock is not None and (t_s > due_s or count & 255 == 0):
            wait_s = clock.real_seconds_until(t_s)
            while wait_s > 0:
                if stop.wait(min(wait_s, MAX_SLEEP_S)):
                    break
                wait_s = clock.real_seconds_until(t_s)
            due_s = clock.elapsed_s()
            stats.lag_s = clock.lag_s(t_s)
            stats.max_lag_s = max(stats.max_lag_s, stats.lag_s)
        if stop.is_set():
            break
        sink(t_s, topic, payload)
        count += 1
        sent_t_s = t_s
        kind = topic[topic.rfind("/") + 1 :]
        by_kind[kind] = by_kind.get(kind, 0) + 1
        if progress is not None and count & 255 == 0:
            now = time.monotonic()
            if now >= next_progress:
                stats.messages, stats.sim_seconds = count, sent_t_s
                stats.real_seconds = now - started
                progress(stats)
                next_progress = now + progress_every_s
    stats.messages, stats.sim_seconds = count, sent_t_s
    stats.real_seconds = time.monotonic() - started
    return stats
