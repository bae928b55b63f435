"""A parsed, validated GTFS feed held in memory, shaped for binary COPY.

Rows are tuples in the column order of the matching `gtfs_*` table (see migration 30);
`None` is SQL NULL. Stop times and shape points stay grouped by trip and shape, because the
layout step (distances along shapes, interpolated times) works on one trip or shape at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

Row = tuple[object, ...]

# (task, completed, total): how far a long step has come; the CLI draws it with rich.
ProgressFn = Callable[[str, int, int], None]


@dataclass(slots=True)
class StopTime:
    """One stop of a trip as the feed gives it; times may be missing on non-timepoints."""

    line: int
    stop_sequence: int
    stop_id: str
    arrival_s: int | None
    departure_s: int | None
    stop_headsign: str | None
    pickup_type: int | None
    drop_off_type: int | None
    timepoint: int | None


@dataclass(slots=True)
class ShapePoints:
    """A shape's points sorted by `shape_pt_sequence`."""

    sequences: list[int]
    lats: list[float]
    lons: list[float]


@dataclass(slots=True)
class Trip:
    trip_id: str
    route_id: str
    service_id: str
    trip_headsign: str | None
    trip_short_name: str | None
    direction_id: int | None
    block_id: str | None
    shape_id: str | None
    wheelchair_accessible: int | None
    bikes_allowed: int | None
    line: int


@dataclass(slots=True)
class FeedInfo:
    publisher_name: str | None = None
    feed_version: str | None = None
    start_date: date | None = None
    end_date: date | None = None


@dataclass(slots=True)
class Feed:
    agencies: list[Row] = field(default_factory=list)
    stops: list[Row] = field(default_factory=list)
    stop_coords: dict[str, tuple[float, float]] = field(default_factory=dict)
    routes: list[Row] = field(default_factory=list)
    calendar: list[Row] = field(default_factory=list)
    calendar_dates: list[Row] = field(default_factory=list)
    shapes: dict[str, ShapePoints] = field(default_factory=dict)
    trips: dict[str, Trip] = field(default_factory=dict)
    stop_times: dict[str, list[StopTime]] = field(default_factory=dict)
    frequencies: list[Row] = field(default_factory=list)
    translations: list[Row] = field(default_factory=list)
    info: FeedInfo = field(default_factory=FeedInfo)
    # Things that were skipped rather than refused (legacy translations, unused files ...).
    warnings: list[str] = field(default_factory=list)
