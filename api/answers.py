"""A short-lived, in-process cache of whole answers of public live endpoints.

Why: a stop's next arrivals and a city's GTFS-Realtime feed are the same for everyone for a
second or two — the tracker moves predictions only when a batch of fixes is committed, every
few seconds — while building them costs several queries and milliseconds of CPU (the
trip-updates feed of 800 buses, 0.3–0.5 s). Many residents at one stop, or many trip planners
polling one feed, then cost one build per `ttl_s` instead of one each.

Rules:
- an entry is served for `ttl_s` after it was built, never longer; the caller says how old it
  is (`Age` header) so that HTTP caches downstream add no more than their own max-age;
- one build per key at a time ("single flight"): requests that miss while a build of the same
  key is under way wait for it instead of building it again (the trip-updates feed would
  otherwise be built by every poller that arrives during the first build);
- a failed build is not cached: its waiters build again themselves, and the error reaches
  each caller as it would without the cache; an answer the caller does not keep (`keep`, for
  one too large to hold) still goes to the waiters of its build;
- at most `max_entries` keys (least recently built dropped first), so memory is bounded
  whatever ids clients send; `ttl_s` ≤ 0 turns the cache off.

One instance per app (in `api.deps.Services`), never a module-level singleton, so tests and
several apps in one process never share answers.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from smartcity.queries.transit_live import StopInfo

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Cached(Generic[V]):
    value: V
    age_s: float  # how long ago it was built (0 for a fresh build)
    hit: bool


class _Flight(Generic[V]):
    """A build under way: its waiters take its answer when it succeeds."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.done = asyncio.Event()
        self.ok = False
        self.value: V | None = None


class AnswerCache(Generic[V]):
    def __init__(
        self,
        ttl_s: float,
        max_entries: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._building: dict[Hashable, _Flight[V]] = {}
        self.hits = 0
        self.misses = 0

    def _fresh(self, key: Hashable) -> Cached[V] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        age_s = self._clock() - entry[0]
        if age_s >= self.ttl_s:
            return None
        return Cached(entry[1], max(0.0, age_s), True)

    async def get(
        self,
        key: Hashable,
        build: Callable[[], Awaitable[V]],
        *,
        keep: Callable[[V], bool] | None = None,
    ) -> Cached[V]:
        """The answer for `key`: a fresh cached one, the one a build under way makes, or
        `build()`'s (kept for the next callers unless `keep` says no, e.g. for an answer too
        large to hold)."""
        if self.ttl_s <= 0:
            return Cached(await build(), 0.0, False)
        while True:
            found = self._fresh(key)
            if found is not None:
                self.hits += 1
                return found
            flight = self._building.get(key)
            if flight is None:
                break
            await flight.done.wait()
            if flight.ok:
                self.hits += 1
                age_s = max(0.0, self._clock() - flight.started)
                return Cached(cast(V, flight.value), age_s, True)
            # that build failed: look again, and build ourselves if nobody else does
        self.misses += 1
        flight = _Flight[V](self._clock())
        self._building[key] = flight
        try:
            value = await build()
            flight.value, flight.ok = value, True
            if keep is None or keep(value):
                self._entries[key] = (flight.started, value)
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            return Cached(value, 0.0, False)
        finally:
            del self._building[key]
            flight.done.set()

    def __len__(self) -> int:
        return len(self._entries)


# A stop's timetable facts (feed, name, time zone, last departure) change only when a feed is
# imported: a minute of reuse is invisible next to the hour that its Cache-Control allows.
STOP_INFO_TTL_S = 60.0
# Distinct stops of a large city (Almaty has ~2,500) with a few languages each; an entry is
# a few kilobytes at most.
MAX_STOP_ANSWERS = 10_000
# Feeds × formats: a handful per city.
MAX_FEED_ANSWERS = 64
# Operators' aggregate pages (figures from the rollups only) are reused while the rollups'
# watermark stands — it is part of their key, and it moves on every maintenance pass — and
# at most this long even so, should anything but the maintenance job ever write a rollup.
FIGURES_TTL_S = 60.0
# Dashboards ask a few dozen distinct pages; a page larger than this (thousands of lamp rows)
# is not kept: at most ~16 MB in all.
MAX_FIGURES_ANSWERS = 64
FIGURES_MAX_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class AnswerCaches:
    """The API's answer caches, one set per app (see the module doc)."""

    arrivals: AnswerCache[bytes]  # rendered JSON, by (stop, feed, lang, limit)
    stops: AnswerCache[list[StopInfo]]  # `find_stop`'s answer, by (stop, feed, lang)
    feeds: AnswerCache[bytes]  # serialized GTFS-RT feed, by (kind, feed, format)
    figures: AnswerCache[bytes]  # aggregate pages from rollups, by (parameters, watermark)

    @classmethod
    def with_ttl(cls, ttl_s: float) -> AnswerCaches:
        return cls(
            arrivals=AnswerCache(ttl_s, MAX_STOP_ANSWERS),
            stops=AnswerCache(STOP_INFO_TTL_S if ttl_s > 0 else 0.0, MAX_STOP_ANSWERS),
            feeds=AnswerCache(ttl_s, MAX_FEED_ANSWERS),
            figures=AnswerCache(FIGURES_TTL_S if ttl_s > 0 else 0.0, MAX_FIGURES_ANSWERS),
        )
