"""The transit part of `smartcity bench api`'s database: a city's timetable and live buses.

Imports the simulator's Shymkent network (all its routes) as feed `shymkent`, then puts
`buses` buses on as many trip runs of today, each somewhere along its trip: the newest GPS fix
of each (in `vehicle_positions` and the registry, as the ingest leaves them) and, as the
tracker leaves them, a prediction for every stop still ahead (`transit_predictions`), with a
delay and an uncertainty that grow along the trip. Returns the ids of the stops that have
predictions, for the stop-arrivals requests.
"""

from __future__ import annotations

import random
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from smartcity.cities import get_city
from smartcity.db import storage
from smartcity.db.connect import connect
from smartcity.transit.gtfs_import import import_feed

CITY = "shymkent"


def fill_transit(
    conninfo: str, buses: int, at: datetime, *, routes: int = 30, seed: int = 1
) -> list[str]:
    from simulators.gtfs import generate, write_zip  # the simulators package: a bench-only need

    city = get_city(CITY)
    net = generate(city, seed=seed, routes=routes)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{CITY}.zip"
        write_zip(net, path)
        import_feed(conninfo, path, feed_id=CITY)

    rng = random.Random(seed)
    today = at.astimezone(ZoneInfo(city.tz_name)).date()
    trips = sorted(net.trips.values(), key=lambda t: (t.departure_s[0], t.trip_id))
    step = max(1, len(trips) // buses)
    chosen = trips[::step][:buses]
    positions: list[tuple[object, ...]] = []
    predictions: list[tuple[object, ...]] = []
    for k, trip in enumerate(chosen):
        vehicle_id = f"shy-bus-{k:04d}"
        here = rng.randrange(0, len(trip.stop_ids) - 1)  # the last stop passed
        fix_ts = at - timedelta(seconds=rng.uniform(1, 15))
        stop = net.stops[trip.stop_ids[here]]
        positions.append(
            (fix_ts, vehicle_id, CITY, trip.trip_id, trip.route_id, f"{today:%Y%m%d}",
             stop.lat, stop.lon, 90.0, 7.5, "MANY_SEATS_AVAILABLE")
        )  # fmt: skip
        delay_s = rng.gauss(60, 90)
        for j in range(here + 1, len(trip.stop_ids)):
            ahead_s = trip.arrival_s[j] - trip.arrival_s[here]
            predicted = at + timedelta(seconds=ahead_s + delay_s)
            predictions.append(
                (CITY, trip.trip_id, today, j + 1, trip.stop_ids[j], trip.route_id, vehicle_id,
                 CITY, predicted, 20 + 0.08 * ahead_s, predicted - timedelta(seconds=delay_s),
                 fix_ts + timedelta(seconds=1), fix_ts)
            )  # fmt: skip

    with connect(conninfo, autocommit=True) as conn:
        mode = storage.read_mode(conn)
        storage.ensure_partitions(conn, mode, "vehicle_positions", {storage.day_of(at)})
        with conn.cursor() as cur:
            with cur.copy(
                "COPY vehicle_positions (ts, vehicle_id, city, trip_id, route_id, start_date, "
                "lat, lon, bearing, speed_mps, occupancy) FROM STDIN"
            ) as copy:
                for row in positions:
                    copy.write_row(row)
            with cur.copy(
                "COPY transit_predictions (feed_id, trip_id, start_date, stop_sequence, stop_id, "
                "route_id, vehicle_id, city, predicted_arrival, uncertainty_s, "
                "scheduled_arrival, made_at, position_ts) FROM STDIN"
            ) as copy:
                for row in predictions:
                    copy.write_row(row)
        conn.execute(
            """
            INSERT INTO devices (domain, device_id, city, first_seen, last_seen, last_status,
                                 status_ts, lat, lon)
            SELECT 'transit', vehicle_id, city, ts, ts, 'online', ts, lat, lon
            FROM vehicle_positions
            """
        )
        # As autovacuum would leave them after a while: statistics, and visibility maps that
        # let index-only scans skip the heap.
        conn.execute("VACUUM (ANALYZE) gtfs_stop_times, gtfs_trips, gtfs_translations")
        conn.execute("ANALYZE")
    return sorted({str(p[4]) for p in predictions})


def freshen_transit(conninfo: str, at: datetime) -> None:
    """Move every fix and prediction forward so that the newest fix is 1 s old at `at`.

    The fill happens minutes before the stop-arrivals load starts (the other routes are
    measured first), and the API uses only predictions whose GPS is at most 90 s old: without
    this the load would measure the timetable-only path.
    """
    with connect(conninfo, autocommit=True) as conn:
        mode = storage.read_mode(conn)
        storage.ensure_partitions(conn, mode, "vehicle_positions", {storage.day_of(at)})
        row = conn.execute("SELECT max(position_ts) FROM transit_predictions").fetchone()
        if row is None or not isinstance(row[0], datetime):
            return
        shift = at - timedelta(seconds=1) - row[0]
        with conn.transaction():
            conn.execute(
                """
                UPDATE transit_predictions SET position_ts = position_ts + %(s)s,
                    made_at = made_at + %(s)s, predicted_arrival = predicted_arrival + %(s)s,
                    scheduled_arrival = scheduled_arrival + %(s)s
                """,
                {"s": shift},
            )
            conn.execute("UPDATE vehicle_positions SET ts = ts + %(s)s", {"s": shift})
            conn.execute(
                """
                UPDATE devices SET first_seen = first_seen + %(s)s,
                    last_seen = last_seen + %(s)s, status_ts = status_ts + %(s)s
                WHERE domain = 'transit'
                """,
                {"s": shift},
            )
        conn.execute("VACUUM (ANALYZE) transit_predictions, devices")
