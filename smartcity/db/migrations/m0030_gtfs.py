"""GTFS static schedules, versioned: one row in `gtfs_feed_versions` per import.

Every table carries `version_id`; removing a version cascades to its rows. An import runs in
one transaction, so a version row exists only once all of its rows do: the newest version of
a feed (`gtfs_active_versions`) is always complete. Times are seconds after midnight of the
service day (they may pass 24 h); distances are our own metres, computed on import.
Plain tables in both storage modes: schedules are small and not time series.
"""

from __future__ import annotations

import psycopg

from smartcity.db.storage import StorageMode

VERSION = 30
DESCRIPTION = "GTFS static feeds, versioned"

_TABLES = (
    """
    CREATE TABLE gtfs_feed_versions (
        version_id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        feed_id         text        NOT NULL,
        imported_at     timestamptz NOT NULL DEFAULT now(),
        source_name     text        NOT NULL,
        source_sha256   text        NOT NULL,
        publisher_name  text,
        feed_version    text,
        feed_start_date date,
        feed_end_date   date,
        row_counts      jsonb       NOT NULL DEFAULT '{}'::jsonb
    )
    """,
    "CREATE INDEX ON gtfs_feed_versions (feed_id, version_id DESC)",
    # The newest version of each feed. Versions only become visible when their import commits,
    # so the newest one is complete; removing it makes the one before it active again.
    """
    CREATE VIEW gtfs_active_versions AS
    SELECT DISTINCT ON (feed_id) feed_id, version_id
    FROM gtfs_feed_versions
    ORDER BY feed_id, version_id DESC
    """,
    """
    CREATE TABLE gtfs_agencies (
        version_id      bigint NOT NULL REFERENCES gtfs_feed_versions ON DELETE CASCADE,
        agency_id       text NOT NULL,
        agency_name     text NOT NULL,
        agency_url      text NOT NULL,
        agency_timezone text NOT NULL,
        agency_lang     text,
        agency_phone    text,
        PRIMARY KEY (version_id, agency_id)
    )
    """,
    """
    CREATE TABLE gtfs_stops (
        version_id          bigint NOT NULL REFERENCES gtfs_feed_versions ON DELETE CASCADE,
        stop_id             text NOT NULL,
        stop_code           text,
        stop_name           text,
        stop_desc           text,
        stop_lat            double precision,
        stop_lon            double precision,
        zone_id             text,
        location_type       smallint NOT NULL DEFAULT 0,
        parent_station      text,
        wheelchair_boarding smallint,
        platform_code       text,
        PRIMARY KEY (version_id, stop_id)
    )
    """,
    "CREATE INDEX ON gtfs_stops (version_id, stop_lat, stop_lon)",
    """
    CREATE TABLE gtfs_routes (
        version_id       bigint NOT NULL REFERENCES gtfs_feed_versions ON DELETE CASCADE,
        route_id         text NOT NULL,
        agency_id        text NOT NULL,
        route_short_name text,
        route_long_name  text,
        route_desc       text,
        route_type       integer NOT NULL,
        route_url        text,
        route_color      text,
        route_text_color text,
        route_sort_order integer,
        PRIMARY KEY (version_id, route_id)
    )
    """,
    """
    CREATE TABLE gtfs_calendar (
        version_id bigint NOT NULL REFERENCES gtfs_feed_versions ON DELETE CASCADE,
        service_id text    NOT NULL,
        monday     boolean NOT NULL,
        tuesday    boolean NOT NULL,
        wednesday  boolean NOT NULL,
        thursday   boolean NOT NULL,
        friday     boolean NOT NULL,
        saturday   boolean NOT NULL,
        sunday     boolean NOT NULL,
        start_date date    NOT NULL,
        end_date   date    NOT NULL,
        PRIMARY KEY (version_id, service_id)
    )
    """,
    """
    CREATE TABLE gtfs_calendar_dates (
        version_id     bigint NOT NULL REFERENCES gtfs_feed_versions ON DELETE CASCADE,
        service_id     text     NOT NULL,
        date           date     NOT NULL,
        exception_type smallint NOT NULL CHECK (exception_type IN (1, 2)),
        PRIMARY KEY (version_id, service_id, date)
    )
    """,
    """
    CREATE TABLE gtfs_shapes (
        version_id        bigint NOT NULL REFERENCES gtfs_feed_versions ON DELETE CASCADE,
        shape_id          text             NOT NULL,
        shape_pt_sequence integer          NOT NULL,
        shape_pt_lat      double precision NOT NULL,
        shape_pt_lon      double precision NOT NULL,
        dist_m            double precision NOT NULL,
        PRIMARY KEY (version_id, shape_id, shape_pt_sequence)
    )
    """,
    """
    CREATE TABLE gtfs_trips (
        version_id            bigint NOT NULL REFERENCES gtfs_feed_versions ON DELETE CASCADE,
        trip_id               text NOT NULL,
        route_id              text NOT NULL,
        service_id            text NOT NULL,
        trip_headsign         text,
        trip_short_name       text,
        direction_id          smallint,
        block_id              text,
        shape_id              text,
        wheelchair_accessible smallint,
        bikes_allowed         smallint,
        length_m              double precision NOT NULL,
        PRIMARY KEY (version_id, trip_id)
    )
    """,
    "CREATE INDEX ON gtfs_trips (version_id, route_id)",
    "CREATE INDEX ON gtfs_trips (version_id, service_id)",
    # arrival_s/departure_s are always filled: stops without times in the feed get times
    # interpolated by distance along the trip (`time_interpolated`), as the spec asks consumers
    # to do. dist_m is the stop's distance along the trip's shape; offset_m how far the stop
    # lies from that shape.
    """
    CREATE TABLE gtfs_stop_times (
        version_id        bigint NOT NULL REFERENCES gtfs_feed_versions ON DELETE CASCADE,
        trip_id           text             NOT NULL,
        stop_sequence     integer          NOT NULL,
        stop_id           text             NOT NULL,
        arrival_s         integer          NOT NULL,
        departure_s       integer          NOT NULL,
        time_interpolated boolean          NOT NULL,
        stop_headsign     text,
        pickup_type       smallint,
        drop_off_type     smallint,
        timepoint         smallint,
        dist_m            double precision NOT NULL,
        offset_m          double precision NOT NULL,
        PRIMARY KEY (version_id, trip_id, stop_sequence)
    )
    """,
    "CREATE INDEX ON gtfs_stop_times (version_id, stop_id, departure_s)",
    """
    CREATE TABLE gtfs_frequencies (
        version_id  bigint NOT NULL REFERENCES gtfs_feed_versions ON DELETE CASCADE,
        trip_id     text     NOT NULL,
        start_s     integer  NOT NULL,
        end_s       integer  NOT NULL,
        headway_s   integer  NOT NULL CHECK (headway_s > 0),
        exact_times smallint NOT NULL DEFAULT 0,
        PRIMARY KEY (version_id, trip_id, start_s)
    )
    """,
    """
    CREATE TABLE gtfs_translations (
        version_id    bigint NOT NULL REFERENCES gtfs_feed_versions ON DELETE CASCADE,
        table_name    text NOT NULL,
        field_name    text NOT NULL,
        language      text NOT NULL,
        translation   text NOT NULL,
        record_id     text,
        record_sub_id text,
        field_value   text
    )
    """,
    "CREATE INDEX ON gtfs_translations (version_id, table_name, field_name, language)",
    # A field's text in the language asked for, else the feed's own text. A translation may
    # name its record by id (+ sub id: the stop_sequence of a stop_times row) or by the
    # original text (field_value); the id wins. 'kk' also matches a feed's 'kk-KZ'.
    """
    CREATE FUNCTION gtfs_translate(
        p_version bigint, p_table text, p_field text, p_record text, p_value text, p_lang text,
        p_sub text DEFAULT NULL
    ) RETURNS text LANGUAGE sql STABLE AS $$
        SELECT coalesce((
            SELECT t.translation
            FROM gtfs_translations t
            WHERE p_lang IS NOT NULL
              AND t.version_id = p_version
              AND t.table_name = p_table
              AND t.field_name = p_field
              AND (lower(t.language) = lower(p_lang)
                   OR lower(t.language) LIKE lower(p_lang) || '-%')
              AND ((t.record_id = p_record
                    AND (t.record_sub_id IS NULL OR t.record_sub_id = p_sub))
                   OR (t.record_id IS NULL AND t.field_value = p_value))
            ORDER BY t.record_id IS NULL, lower(t.language) <> lower(p_lang)
            LIMIT 1
        ), p_value)
    $$
    """,
)


def apply(conn: psycopg.Connection[tuple[object, ...]], mode: StorageMode) -> None:
    del mode  # the same plain tables in both storage modes
    for statement in _TABLES:
        conn.execute(statement)
