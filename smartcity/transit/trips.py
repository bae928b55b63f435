"""Trips as tracking and prediction see them: the shape, the stops' distances along it and the
scheduled times, read from the active version of a feed and kept in memory.

A city's vehicles run the trips of the feed whose `feed_id` is the city's name. Plans are
cached per (version, trip) and shapes per (version, shape); the active version of a feed is
looked up again after `ACTIVE_VERSION_TTL_S`, so a newly imported version takes over without a
restart (trips already under way keep the plan they started with until they end).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import psycopg

from smartcity.transit.geometry import FloatArray, Polyline

# How long a feed's active version is trusted before it is looked up again (an import of a new
# version is rare; one query a minute per feed per worker is nothing).
ACTIVE_VERSION_TTL_S = 60.0


@dataclass(frozen=True, slots=True)
class TripPlan:
    """One trip of one feed version: stops in stop_sequence order, distances in metres along
    `line`, times in seconds after the service day's noon minus 12 h (GTFS's midnight)."""

    feed_id: str
    version_id: int
    trip_id: str
    route_id: str
    line: Polyline
    stop_ids: tuple[str, ...]
    stop_seq: tuple[int, ...]
    stop_dist: FloatArray
    arr_s: FloatArray
    dep_s: FloatArray
    tz: ZoneInfo

    @property
    def stops(self) -> int:
        return len(self.stop_ids)

    def origin(self, start_date: date) -> float:
        """Epoch seconds of the service day's time 00:00:00 (noon minus 12 h, local)."""
        noon = datetime(start_date.year, start_date.month, start_date.day, 12, tzinfo=self.tz)
        return (noon - timedelta(hours=12)).astimezone(UTC).timestamp()

    def hour_of_week(self, ts: float) -> int:
        """0 for Monday 00:00–01:00 local, up to 167."""
        return _hour_of_week(self.tz, int(ts // _QUARTER_HOUR_S))


# Time zone offsets are whole quarter hours, so the hour of week is constant within each
# quarter hour of epoch time: prediction asks it for every stop ahead, and this keeps it cheap.
_QUARTER_HOUR_S = 900


@lru_cache(maxsize=65536)
def _hour_of_week(tz: ZoneInfo, quarter: int) -> int:
    local = datetime.fromtimestamp(quarter * _QUARTER_HOUR_S, tz)
    return local.weekday() * 24 + local.hour


class TripCache:
    """Trip plans loaded on first use. One per process (or per tracker); not thread-safe."""

    def __init__(self) -> None:
        self._active: dict[str, tuple[int | None, float]] = {}
        self._plans: dict[tuple[int, str], TripPlan | None] = {}
        self._lines: dict[tuple[int, str], Polyline] = {}
        self._tz: dict[int, ZoneInfo] = {}

    def active_version(
        self, conn: psycopg.Connection[tuple[object, ...]], feed_id: str
    ) -> int | None:
        cached = self._active.get(feed_id)
        now = time.monotonic()
        if cached is not None and now - cached[1] < ACTIVE_VERSION_TTL_S:
            return cached[0]
        row = conn.execute(
            "SELECT version_id FROM gtfs_active_versions WHERE feed_id = %s", (feed_id,)
        ).fetchone()
        version = int(row[0]) if row else None  # type: ignore[call-overload]
        self._active[feed_id] = (version, now)
        return version

    def plan(
        self, conn: psycopg.Connection[tuple[object, ...]], feed_id: str, trip_id: str
    ) -> TripPlan | None:
        """The trip in the feed's active version, or None when the feed or trip is unknown."""
        version = self.active_version(conn, feed_id)
        if version is None:
            return None
        key = (version, trip_id)
        if key not in self._plans:
            self._plans[key] = self._load(conn, feed_id, version, trip_id)
        return self._plans[key]

    def _load(
        self, conn: psycopg.Connection[tuple[object, ...]], feed_id: str, version: int, trip_id: str
    ) -> TripPlan | None:
        trip = conn.execute(
            "SELECT route_id, shape_id FROM gtfs_trips WHERE version_id = %s AND trip_id = %s",
            (version, trip_id),
        ).fetchone()
        if trip is None:
            return None
        route_id, shape_id = str(trip[0]), trip[1]
        rows = conn.execute(
            """
            SELECT st.stop_sequence, st.stop_id, st.arrival_s, st.departure_s, st.dist_m,
                   s.stop_lat, s.stop_lon
            FROM gtfs_stop_times st
            LEFT JOIN gtfs_stops s ON s.version_id = st.version_id AND s.stop_id = st.stop_id
            WHERE st.version_id = %s AND st.trip_id = %s
            ORDER BY st.stop_sequence
            """,
            (version, trip_id),
        ).fetchall()
        if len(rows) < 2:
            return None
        if shape_id is not None:
            line = self._line(conn, version, str(shape_id))
        else:
            # No shape: the import laid the trip out on straight lines between its stops.
            lats = [float(r[5]) for r in rows]  # type: ignore[arg-type]
            lons = [float(r[6]) for r in rows]  # type: ignore[arg-type]
            line = Polyline(lats, lons)
        return TripPlan(
            feed_id=feed_id,
            version_id=version,
            trip_id=trip_id,
            route_id=route_id,
            line=line,
            stop_ids=tuple(str(r[1]) for r in rows),
            stop_seq=tuple(int(r[0]) for r in rows),  # type: ignore[call-overload]
            stop_dist=np.array([float(r[4]) for r in rows]),  # type: ignore[arg-type]
            arr_s=np.array([float(r[2]) for r in rows]),  # type: ignore[arg-type]
            dep_s=np.array([float(r[3]) for r in rows]),  # type: ignore[arg-type]
            tz=self._zone(conn, version),
        )

    def _line(
        self, conn: psycopg.Connection[tuple[object, ...]], version: int, shape_id: str
    ) -> Polyline:
        key = (version, shape_id)
        if key not in self._lines:
            pts = conn.execute(
                """
                SELECT shape_pt_lat, shape_pt_lon FROM gtfs_shapes
                WHERE version_id = %s AND shape_id = %s ORDER BY shape_pt_sequence
                """,
                (version, shape_id),
            ).fetchall()
            self._lines[key] = Polyline(
                [float(p[0]) for p in pts],  # type: ignore[arg-type]
                [float(p[1]) for p in pts],  # type: ignore[arg-type]
            )
        return self._lines[key]

    def _zone(self, conn: psycopg.Connection[tuple[object, ...]], version: int) -> ZoneInfo:
        if version not in self._tz:
            row = conn.execute(
                "SELECT agency_timezone FROM gtfs_agencies WHERE version_id = %s LIMIT 1",
                (version,),
            ).fetchone()
            self._tz[version] = ZoneInfo(str(row[0]) if row else "UTC")
        return self._tz[version]
