"""Transit data for the API tests: the simulator's feed imported, predictions and GPS fixes
written straight to the tables the tracker and the ingest fill."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import psycopg

from simulators.gtfs import Network, generate, write_zip
from smartcity.cities import get_city
from smartcity.db import storage
from smartcity.settings import Settings
from smartcity.transit.gtfs_import import import_feed

CITY = "shymkent"


def import_sim_feed(settings: Settings, tmp_path: Path, routes: int = 3) -> Network:
    """The simulator's Shymkent network, imported as feed `shymkent`."""
    net = generate(get_city(CITY), seed=5, routes=routes)
    path = tmp_path / "shymkent.zip"
    write_zip(net, path)
    import_feed(settings.database_conninfo, path, feed_id=CITY)
    return net


@dataclass(frozen=True)
class Prediction:
    trip_id: str
    start_date: date
    stop_sequence: int
    stop_id: str
    route_id: str
    vehicle_id: str
    predicted_arrival: datetime
    uncertainty_s: float
    scheduled_arrival: datetime
    position_ts: datetime
    feed_id: str = CITY


def add_predictions(settings: Settings, rows: Iterable[Prediction]) -> None:
    with psycopg.connect(settings.database_conninfo, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO transit_predictions (feed_id, trip_id, start_date, stop_sequence, stop_id,
                route_id, vehicle_id, city, predicted_arrival, uncertainty_s, scheduled_arrival,
                made_at, position_ts)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            [
                (
                    p.feed_id,
                    p.trip_id,
                    p.start_date,
                    p.stop_sequence,
                    p.stop_id,
                    p.route_id,
                    p.vehicle_id,
                    p.feed_id,
                    p.predicted_arrival,
                    p.uncertainty_s,
                    p.scheduled_arrival,
                    p.position_ts + timedelta(seconds=1),
                    p.position_ts,
                )
                for p in rows
            ],
        )


@dataclass(frozen=True)
class Fix:
    vehicle_id: str
    ts: datetime
    lat: float
    lon: float
    route_id: str | None = None
    trip_id: str | None = None
    start_date: str | None = None
    bearing: float | None = 90.0
    speed_mps: float | None = 8.0
    occupancy: str | None = "MANY_SEATS_AVAILABLE"
    city: str = CITY


def add_fixes(settings: Settings, fixes: Sequence[Fix]) -> None:
    """GPS fixes into vehicle_positions and the registry, as the ingest leaves them."""
    with psycopg.connect(settings.database_conninfo, autocommit=True) as conn:
        mode = storage.read_mode(conn)
        storage.ensure_partitions(
            conn, mode, "vehicle_positions", {storage.day_of(f.ts) for f in fixes}
        )
        with conn.cursor() as cur:
            cur.executemany(
                """
                INSERT INTO vehicle_positions (ts, vehicle_id, city, trip_id, route_id,
                    start_date, lat, lon, bearing, speed_mps, occupancy)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                """,
                [
                    (
                        f.ts,
                        f.vehicle_id,
                        f.city,
                        f.trip_id,
                        f.route_id,
                        f.start_date,
                        f.lat,
                        f.lon,
                        f.bearing,
                        f.speed_mps,
                        f.occupancy,
                    )
                    for f in fixes
                ],
            )
            cur.executemany(
                """
                INSERT INTO devices (domain, device_id, city, first_seen, last_seen, lat, lon)
                VALUES ('transit', %s, %s, %s, %s, %s, %s)
                ON CONFLICT (domain, device_id) DO UPDATE SET
                    last_seen = GREATEST(devices.last_seen, EXCLUDED.last_seen)
                """,
                [(f.vehicle_id, f.city, f.ts, f.ts, f.lat, f.lon) for f in fixes],
            )
