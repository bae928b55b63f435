"""Live transit state: observed stop arrivals and the current arrival predictions.

The tracker (after each committed batch of bus positions) writes `stop_arrivals` — when a
vehicle really reached and left a stop of its trip — and replaces the predictions of the trips
it tracks in `transit_predictions`. The resident endpoints and the GTFS-Realtime feeds read
`transit_predictions` and fall back to the schedule for trips without a live vehicle.

A city's vehicles run the trips of the GTFS feed whose `feed_id` is the city's name (the
active version of it). Trips are named by (feed_id, trip_id, start_date): a trip id repeats
every service day. Plain tables in both storage modes: `stop_arrivals` grows by a few rows per
bus per minute (a city of 800 buses: ~1 M rows a day) and is pruned by its own retention;
`transit_predictions` holds only the current predictions.
"""

from __future__ import annotations

import psycopg

from smartcity.db.storage import StorageMode

VERSION = 31
DESCRIPTION = "observed stop arrivals, current arrival predictions"


def apply(conn: psycopg.Connection[tuple[object, ...]], mode: StorageMode) -> None:
    del mode  # ordinary tables: the same in both storage modes
    # One row per (trip, service day, stop visit). `scheduled_arrival` is the schedule's time
    # for this visit as an instant, so delay_s = arrived_at - scheduled_arrival needs no join.
    # `departed_at` is filled when the vehicle leaves (NULL while it dwells).
    conn.execute(
        """
        CREATE TABLE stop_arrivals (
            feed_id           text        NOT NULL,
            trip_id           text        NOT NULL,
            start_date        date        NOT NULL,
            stop_sequence     integer     NOT NULL,
            stop_id           text        NOT NULL,
            route_id          text        NOT NULL,
            vehicle_id        text        NOT NULL,
            city              text        NOT NULL,
            arrived_at        timestamptz NOT NULL,
            departed_at       timestamptz,
            scheduled_arrival timestamptz NOT NULL,
            delay_s           double precision GENERATED ALWAYS AS
                (extract(epoch FROM arrived_at - scheduled_arrival)) STORED,
            detected_at       timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (feed_id, trip_id, start_date, stop_sequence)
        )
        """
    )
    conn.execute("CREATE INDEX ON stop_arrivals (city, arrived_at DESC)")
    conn.execute("CREATE INDEX ON stop_arrivals (feed_id, route_id, arrived_at DESC)")
    conn.execute("CREATE INDEX ON stop_arrivals (feed_id, stop_id, arrived_at DESC)")

    # The latest prediction for each downstream stop of each tracked trip. The tracker replaces
    # a trip's rows in the transaction that reads its new position, so readers never see a
    # half-updated trip. `uncertainty_s` is one standard deviation of the predicted arrival;
    # `made_at` is when the prediction was made, `position_ts` the event time of the GPS fix
    # it rests on (GPS age = now - position_ts).
    conn.execute(
        """
        CREATE TABLE transit_predictions (
            feed_id            text             NOT NULL,
            trip_id            text             NOT NULL,
            start_date         date             NOT NULL,
            stop_sequence      integer          NOT NULL,
            stop_id            text             NOT NULL,
            route_id           text             NOT NULL,
            vehicle_id         text             NOT NULL,
            city               text             NOT NULL,
            predicted_arrival  timestamptz      NOT NULL,
            uncertainty_s      double precision NOT NULL CHECK (uncertainty_s >= 0),
            scheduled_arrival  timestamptz      NOT NULL,
            made_at            timestamptz      NOT NULL,
            position_ts        timestamptz      NOT NULL,
            PRIMARY KEY (feed_id, trip_id, start_date, stop_sequence)
        )
        """
    )
    conn.execute("CREATE INDEX ON transit_predictions (feed_id, stop_id, predicted_arrival)")
    conn.execute("CREATE INDEX ON transit_predictions (city, vehicle_id)")
