"""GTFS-Realtime feeds (https://gtfs.org/realtime/): VehiclePositions and TripUpdates.

Built with the spec's own protobuf classes (`gtfs-realtime-bindings`) and its best practices:
- header: `gtfs_realtime_version` "2.0", `incrementality` FULL_DATASET, `timestamp` = when the
  feed was made; every timestamp in POSIX seconds;
- every entity has a unique `id`; a TripDescriptor gives `trip_id`, `route_id`, `start_date`
  and `schedule_relationship` (plus `start_time` for frequency-based trips, which the spec
  requires there); a VehicleDescriptor gives the vehicle's `id`;
- TripUpdate: `timestamp` of the GPS fix the prediction rests on, `stop_time_update`s in
  stop_sequence order, each with `stop_sequence` and `stop_id`, an arrival `time` and its
  `uncertainty` (one standard deviation, seconds);
- only fresh data (the caller reads fixes and predictions no older than its freshness limit).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime

# protobuf ships no type stubs (types-protobuf would be one more pin for one function); the
# generated GTFS-RT classes below do ship theirs.
from google.protobuf import json_format  # type: ignore[import-untyped]
from google.transit import gtfs_realtime_pb2 as rt

from smartcity.queries.transit_live import PredictionRow, VehicleNow

GTFS_RT_VERSION = "2.0"
SCHEDULED = rt.TripDescriptor.ScheduleRelationship.SCHEDULED


def gtfs_time(seconds: int) -> str:
    """A GTFS time (HH:MM:SS, hours may pass 24) from seconds after the service day's start."""
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def posix(ts: datetime) -> int:
    return round(ts.timestamp())


def _message(at: datetime) -> rt.FeedMessage:
    feed = rt.FeedMessage()
    feed.header.gtfs_realtime_version = GTFS_RT_VERSION
    feed.header.incrementality = rt.FeedHeader.Incrementality.FULL_DATASET
    feed.header.timestamp = posix(at)
    return feed


def _fill_trip(
    trip: rt.TripDescriptor,
    trip_id: str,
    route_id: str | None,
    start_date: str | None,
    start_time: str | None,
) -> None:
    trip.trip_id = trip_id
    if route_id:
        trip.route_id = route_id
    if start_date:
        trip.start_date = start_date
    if start_time:
        trip.start_time = start_time
    trip.schedule_relationship = SCHEDULED


def trip_updates(rows: Sequence[PredictionRow], at: datetime) -> rt.FeedMessage:
    """One TripUpdate per tracked trip run, from its predictions (ordered by run and stop)."""
    feed = _message(at)
    for (trip_id, start_date), group in itertools.groupby(
        rows, key=lambda r: (r.trip_id, r.start_date)
    ):
        stops = list(group)
        first = stops[0]
        start = first.frequency_start_s
        entity = feed.entity.add()
        entity.id = f"{trip_id}:{start_date:%Y%m%d}" + (f":{gtfs_time(start)}" if start else "")
        update = entity.trip_update
        _fill_trip(
            update.trip,
            trip_id,
            first.route_id,
            f"{start_date:%Y%m%d}",
            gtfs_time(start) if start is not None else None,
        )
        update.vehicle.id = first.vehicle_id
        update.timestamp = posix(max(s.position_ts for s in stops))
        for s in stops:
            stu = update.stop_time_update.add()
            stu.stop_sequence = s.stop_sequence
            stu.stop_id = s.stop_id
            stu.arrival.time = posix(s.predicted_arrival)
            stu.arrival.uncertainty = round(s.uncertainty_s)
            stu.schedule_relationship = rt.TripUpdate.StopTimeUpdate.ScheduleRelationship.SCHEDULED
    return feed


def vehicle_positions(
    vehicles: Sequence[VehicleNow], rows: Sequence[PredictionRow], at: datetime
) -> rt.FeedMessage:
    """One VehiclePosition per bus with a fresh fix; `rows` (the fresh predictions) give the
    start time of frequency-based trips."""
    start_times = {
        (r.vehicle_id, r.trip_id): gtfs_time(r.frequency_start_s)
        for r in rows
        if r.frequency_start_s is not None
    }
    feed = _message(at)
    for v in vehicles:
        entity = feed.entity.add()
        entity.id = v.vehicle_id
        vp = entity.vehicle
        vp.vehicle.id = v.vehicle_id
        vp.timestamp = posix(v.ts)
        vp.position.latitude = v.lat
        vp.position.longitude = v.lon
        if v.bearing is not None:
            vp.position.bearing = v.bearing
        if v.speed_mps is not None:
            vp.position.speed = v.speed_mps
        if v.occupancy:
            vp.occupancy_status = rt.VehiclePosition.OccupancyStatus.Value(v.occupancy)
        start_time = start_times.get((v.vehicle_id, v.trip_id or ""))
        if v.trip_id and (start_time or not v.frequency_based):
            _fill_trip(vp.trip, v.trip_id, v.route_id, v.start_date, start_time)
        elif v.route_id:
            # A frequency-based run we cannot name (no start time), or no trip at all: the
            # route alone is a valid, if partial, descriptor.
            vp.trip.route_id = v.route_id
        if v.next_stop_id is not None and v.next_stop_sequence is not None:
            vp.stop_id = v.next_stop_id
            vp.current_stop_sequence = v.next_stop_sequence
            vp.current_status = rt.VehiclePosition.VehicleStopStatus.IN_TRANSIT_TO
    return feed


def to_json(feed: rt.FeedMessage) -> str:
    """The feed as JSON (protobuf's JSON mapping, with the spec's snake_case field names)."""
    text: str = json_format.MessageToJson(feed, preserving_proto_field_name=True, indent=None)
    return text
