"""Write decoded batches: binary COPY into a staging table, then an idempotent insert.

One batch is one transaction: every raw table's rows, the device registry update and the dead
letters of the batch commit together, and only then are the batch's messages acknowledged to
the broker. A redelivered or replayed reading hits the (device, ts) primary key and is skipped
by `ON CONFLICT DO NOTHING`, so it never becomes a second row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import psycopg
from psycopg import sql

from ingest.decode import DeviceSighting, Row
from ingest.rows import DEAD_LETTERS, DEVICES, LIGHTING, TableSpec
from smartcity.db import storage
from smartcity.db.connect import connect

TABLES: dict[str, TableSpec] = {spec.table: spec for spec in (LIGHTING,)}


@dataclass(frozen=True, slots=True)
class DeadLetter:
    received_at: datetime
    topic: str
    payload: bytes
    payload_bytes: int
    reason: str
    detail: str


@dataclass(slots=True)
class Batch:
    rows: dict[str, list[Row]]
    sightings: list[DeviceSighting]
    dead_letters: list[DeadLetter]

    @classmethod
    def empty(cls) -> Batch:
        return cls({}, [], [])

    def row_count(self) -> int:
        return sum(len(rows) for rows in self.rows.values())


def _stage_name(table: str) -> str:
    return f"_stage_{table}"


class BatchWriter:
    """Owns one database connection; `write` commits one batch or raises."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._mode = storage.StorageMode.POSTGRESQL
        self._known_days: dict[str, set[date]] = {}

    def __enter__(self) -> BatchWriter:
        self.open()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed

    def open(self) -> None:
        conn = connect(self._conninfo, autocommit=True)
        try:
            self._mode = storage.read_mode(conn)
            for spec in (*TABLES.values(), DEVICES):
                # Temporary staging tables live as long as the connection; ON COMMIT DELETE ROWS
                # empties them after each batch without a separate TRUNCATE round trip.
                conn.execute(
                    sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
                        sql.Identifier(_stage_name(spec.table)),
                        sql.SQL(", ").join(
                            sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t))
                            for n, t in spec.columns
                        ),
                    )
                )
            self._known_days = {
                table: storage.existing_partition_days(conn, table)
                if self._mode is storage.StorageMode.POSTGRESQL
                else set()
                for table in TABLES
            }
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _require(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            raise RuntimeError("BatchWriter used while not open; call open() first")
        return self._conn

    def _ensure_partitions(self, table: str, rows: Iterable[Row]) -> None:
        if self._mode is storage.StorageMode.TIMESCALEDB:
            return
        known = self._known_days.setdefault(table, set())
        # ts is always the first column of a raw table's row (see ingest.rows).
        days = {storage.day_of(row[0]) for row in rows if isinstance(row[0], datetime)}
        missing = days - known
        if missing:
            storage.ensure_partitions(self._require(), self._mode, table, missing)
            known |= missing

    def write(self, batch: Batch) -> None:
        """Commit `batch` in one transaction; on return every row of it is durable."""
        conn = self._require()
        for table, rows in batch.rows.items():
            self._ensure_partitions(table, rows)
        with conn.transaction(), conn.cursor() as cur:
            for table, rows in batch.rows.items():
                if rows:
                    self._insert_idempotent(cur, TABLES[table], rows)
            if batch.sightings:
                self._upsert_devices(cur, batch.sightings)
            if batch.dead_letters:
                self._copy(
                    cur,
                    DEAD_LETTERS.table,
                    DEAD_LETTERS,
                    [
                        (d.received_at, d.topic, d.payload, d.payload_bytes, d.reason, d.detail)
                        for d in batch.dead_letters
                    ],
                )

    @staticmethod
    def _copy(
        cur: psycopg.Cursor[tuple[object, ...]],
        target: str,
        spec: TableSpec,
        rows: Sequence[Row],
    ) -> None:
        stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(target), sql.SQL(", ").join(map(sql.Identifier, spec.names))
        )
        with cur.copy(stmt) as copy:
            copy.set_types(spec.types)
            for row in rows:
                copy.write_row(row)

    def _insert_idempotent(
        self, cur: psycopg.Cursor[tuple[object, ...]], spec: TableSpec, rows: Sequence[Row]
    ) -> None:
        stage = _stage_name(spec.table)
        self._copy(cur, stage, spec, rows)
        cols = sql.SQL(", ").join(map(sql.Identifier, spec.names))
        cur.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) DO NOTHING").format(
                sql.Identifier(spec.table),
                cols,
                cols,
                sql.Identifier(stage),
                sql.SQL(", ").join(map(sql.Identifier, spec.key)),
            )
        )

    def _upsert_devices(
        self, cur: psycopg.Cursor[tuple[object, ...]], sightings: Sequence[DeviceSighting]
    ) -> None:
        # Collapse to one row per device first: a batch may hold many readings of one lamp.
        # The newest reading (by event time) decides city, district and position.
        merged: dict[tuple[str, str], DeviceSighting] = {}
        first_seen: dict[tuple[str, str], datetime] = {}
        for s in sightings:
            key = (s.domain.value, s.device_id)
            newest = merged.get(key)
            if newest is None or s.ts >= newest.ts:
                merged[key] = s
            first_seen[key] = min(first_seen.get(key, s.ts), s.ts)
        # Sorted, so two workers updating overlapping devices lock them in the same order.
        ordered = [
            (k[0], k[1], s.city, s.district, first_seen[k], s.ts, s.lat, s.lon)
            for k, s in sorted(merged.items())
        ]
        self._copy(cur, _stage_name(DEVICES.table), DEVICES, ordered)
        cur.execute(
            """
            INSERT INTO devices AS d
                (domain, device_id, city, district, first_seen, last_seen, lat, lon)
            SELECT domain, device_id, city, district, first_seen, last_seen, lat, lon
            FROM _stage_devices ORDER BY domain, device_id
            ON CONFLICT (domain, device_id) DO UPDATE SET
                first_seen = LEAST(d.first_seen, EXCLUDED.first_seen),
                last_seen  = GREATEST(d.last_seen, EXCLUDED.last_seen),
                city       = CASE WHEN EXCLUDED.last_seen >= d.last_seen
                                  THEN EXCLUDED.city ELSE d.city END,
                district   = COALESCE(CASE WHEN EXCLUDED.last_seen >= d.last_seen
                                           THEN EXCLUDED.district END, d.district),
                lat        = COALESCE(EXCLUDED.lat, d.lat),
                lon        = COALESCE(EXCLUDED.lon, d.lon)
            """
        )
