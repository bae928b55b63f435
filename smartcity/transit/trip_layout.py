"""What tracking and prediction need precomputed: metres along shapes and trips, full times.

* every shape point gets its distance from the shape's start (haversine metres, our own);
* every stop of a trip gets its distance along the trip's shape, found by projecting the
  trip's stops in order (`Polyline.project_in_order`), so loops and stops served twice land
  on the right pass; a trip without a shape is laid out along the straight lines between
  its stops;
* stops whose times the feed leaves empty get times interpolated by that distance.

Trips that share a shape and a stop pattern (most of them) share one projection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from smartcity.transit.geometry import FloatArray, Polyline, cumulative_distance_m
from smartcity.transit.gtfs_model import Feed, ProgressFn, Row, StopTime

# How often (in trips) the layout reports progress.
_PROGRESS_EVERY_TRIPS = 500


@dataclass(slots=True)
class Layout:
    """Rows for the tables whose values the import computes."""

    shape_rows: list[Row] = field(default_factory=list)
    trip_rows: list[Row] = field(default_factory=list)
    stop_time_rows: list[Row] = field(default_factory=list)
    # Largest distance of a stop from its trip's shape, for the import report.
    max_offset_m: float = 0.0


def lay_out(feed: Feed, progress: ProgressFn | None = None) -> Layout:
    layout = Layout()
    polylines: dict[str, Polyline] = {}
    for shape_id, pts in feed.shapes.items():
        line = Polyline(pts.lats, pts.lons)
        polylines[shape_id] = line
        layout.shape_rows.extend(
            zip(
                [shape_id] * len(pts.sequences),
                pts.sequences,
                pts.lats,
                pts.lons,
                line.cum_m.tolist(),
                strict=True,
            )
        )
    patterns: dict[tuple[str | None, tuple[str, ...]], tuple[FloatArray, FloatArray]] = {}
    total = len(feed.trips)
    for done, trip in enumerate(feed.trips.values(), start=1):
        stops = feed.stop_times[trip.trip_id]
        key = (trip.shape_id, tuple(s.stop_id for s in stops))
        placed = patterns.get(key)
        if placed is None:
            placed = patterns[key] = _place(feed, stops, polylines.get(trip.shape_id or ""))
        along, offset = placed
        length_m = polylines[trip.shape_id].length_m if trip.shape_id else float(along[-1])
        layout.trip_rows.append(
            (
                trip.trip_id,
                trip.route_id,
                trip.service_id,
                trip.trip_headsign,
                trip.trip_short_name,
                trip.direction_id,
                trip.block_id,
                trip.shape_id,
                trip.wheelchair_accessible,
                trip.bikes_allowed,
                length_m,
            )
        )
        arrivals, departures, interpolated = _fill_times(stops, along)
        for i, s in enumerate(stops):
            layout.stop_time_rows.append(
                (
                    trip.trip_id,
                    s.stop_sequence,
                    s.stop_id,
                    arrivals[i],
                    departures[i],
                    interpolated[i],
                    s.stop_headsign,
                    s.pickup_type,
                    s.drop_off_type,
                    s.timepoint,
                    float(along[i]),
                    float(offset[i]),
                )
            )
        layout.max_offset_m = max(layout.max_offset_m, float(offset.max()))
        if progress is not None and (done % _PROGRESS_EVERY_TRIPS == 0 or done == total):
            progress("lay out trips on shapes", done, total)
    return layout


def _place(
    feed: Feed, stops: list[StopTime], line: Polyline | None
) -> tuple[FloatArray, FloatArray]:
    """(distance along, distance off) in metres for each stop of a trip."""
    coords = np.array([feed.stop_coords[s.stop_id] for s in stops], dtype=np.float64)
    if line is None:
        return cumulative_distance_m(coords[:, 0], coords[:, 1]), np.zeros(len(stops))
    projection = line.project_in_order(coords[:, 0], coords[:, 1])
    return projection.along_m, projection.offset_m


def _fill_times(
    stops: list[StopTime], along: FloatArray
) -> tuple[list[int], list[int], list[bool]]:
    """Arrival and departure for every stop; empty ones interpolated by distance (the first
    and last stop always have times: the reader checked)."""
    arrivals: list[int] = []
    departures: list[int] = []
    interpolated: list[bool] = []
    timed = [i for i, s in enumerate(stops) if s.arrival_s is not None]
    nxt = 0
    for i, s in enumerate(stops):
        if s.arrival_s is not None and s.departure_s is not None:
            arrivals.append(s.arrival_s)
            departures.append(s.departure_s)
            interpolated.append(False)
            continue
        while timed[nxt] < i:
            nxt += 1
        a, b = timed[nxt - 1], timed[nxt]
        t0 = stops[a].departure_s
        t1 = stops[b].arrival_s
        assert t0 is not None
        assert t1 is not None
        span_m = float(along[b] - along[a])
        # Spread by distance; by stop count when the stops sit at one place on the shape.
        frac = float(along[i] - along[a]) / span_m if span_m > 0 else (i - a) / (b - a)
        when = round(t0 + frac * (t1 - t0))
        arrivals.append(when)
        departures.append(when)
        interpolated.append(True)
    return arrivals, departures, interpolated
