"""Write decoded batches: binary COPY into a staging table, then an idempotent insert.

One batch is one transaction: every raw table's rows, the device registry update and the dead
letters of the batch commit together, and only then are the batch's messages acknowledged to
the broker. A redelivered or replayed reading hits the (device, ts) primary key and is skipped
by `ON CONFLICT DO NOTHING`, so it never becomes a second row.

Meter registers (`energy_import_kwh`, `volume_m3`) must not go backwards. That check needs the
meter's previous reading, which may be in the database or may be in flight in another worker
(shared subscriptions spread one meter's messages over all workers), so a per-worker memory
cache cannot decide it. It runs in the database, inside the batch's transaction. The batch
first upserts the `devices` rows of every device it saw, in sorted order; that locks each of
those rows until commit (ON CONFLICT DO UPDATE locks the row even when its WHERE skips the
update; a new row blocks a concurrent insert of the same key). Then every staged reading is
compared with the meter's reading just before it in event time — from the table or from the
same batch, whichever is later. Rows that fail are removed from the staging table and
dead-lettered with their message (`register_backwards`), in the same transaction. Two workers
holding readings of the same meter therefore check and insert one after the other (the second
waits for the first's commit and then sees its rows), while batches with different meters do
not wait for each other at all. Locks are row locks, so they do not fill PostgreSQL's lock table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import psycopg
from psycopg import sql

from ingest.decode import Decoded, DeviceSighting, Row, StatusUpdate
from ingest.rows import DEAD_LETTERS, DEVICES, LIGHTING, METERS, STATUS, VEHICLES, TableSpec
from smartcity.db import storage
from smartcity.db.connect import connect

TABLES: dict[str, TableSpec] = {spec.table: spec for spec in (LIGHTING, METERS, VEHICLES)}

# How far back the register check looks for a meter's previous reading. Bounded so the lookup
# touches a few daily partitions, not all of them.
REGISTER_LOOKBACK = "35 days"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    received_at: datetime
    topic: str
    payload: bytes
    payload_bytes: int
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Origin:
    """The message a batch's rows came from (for dead-lettering a row the database refuses)."""

    received_at: float
    topic: str
    payload: bytes


@dataclass(slots=True)
class Batch:
    rows: dict[str, list[Row]]
    sightings: list[DeviceSighting]
    dead_letters: list[DeadLetter]
    statuses: list[StatusUpdate]
    # origins[i] is the message of every meter row whose last (stage-only `_msg`) field is i.
    origins: list[Origin]

    @classmethod
    def empty(cls) -> Batch:
        return cls({}, [], [], [], [])

    def row_count(self) -> int:
        return sum(len(rows) for rows in self.rows.values())

    def add(self, decoded: Decoded, origin: Origin) -> None:
        """Add one message's rows, sightings and statuses; `origin` is that message."""
        for table, rows in decoded.rows.items():
            if table == "meter_readings":
                # Stage-only `_msg`: which message a row came from, for the register check.
                i = len(self.origins)
                self.origins.append(origin)
                self.rows.setdefault(table, []).extend([(*r, i) for r in rows])
            else:
                self.rows.setdefault(table, []).extend(rows)
        self.sightings.extend(decoded.sightings)
        self.statuses.extend(decoded.statuses)


def _stage_name(table: str) -> str:
    return f"_stage_{table}"


class BatchWriter:
    """Owns one database connection; `write` commits one batch or raises."""

    def __init__(
        self,
        conninfo: str,
        *,
        register_tolerance: float = 0.001,
        dead_letter_cap_bytes: int = 4096,
    ) -> None:
        self._conninfo = conninfo
        self._tolerance = register_tolerance
        self._cap = dead_letter_cap_bytes
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
            for spec in (*TABLES.values(), DEVICES, STATUS):
                # Temporary staging tables live as long as the connection; ON COMMIT DELETE ROWS
                # empties them after each batch without a separate TRUNCATE round trip.
                conn.execute(
                    sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
                        sql.Identifier(_stage_name(spec.table)),
                        sql.SQL(", ").join(
                            sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t))
                            for n, t in spec.stage_columns
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
        stamps = {row[0] for row in rows}  # many rows share a time (a SenML pack: all)
        days = {storage.day_of(ts) for ts in stamps if isinstance(ts, datetime)}
        missing = days - known
        if missing:
            storage.ensure_partitions(self._require(), self._mode, table, missing)
            known |= missing

    def write(self, batch: Batch) -> list[DeadLetter]:
        """Commit `batch` in one transaction; on return every row of it is durable.

        Returns the dead letters the database-side checks added (rows refused for a register
        going backwards); they are committed with the batch."""
        conn = self._require()
        for table, rows in batch.rows.items():
            self._ensure_partitions(table, rows)
        refused: list[DeadLetter] = []
        with conn.transaction(), conn.cursor() as cur:
            # Devices first: their row locks order concurrent batches of the same meters (see
            # the module docstring) before the register check reads the table.
            if batch.sightings:
                self._upsert_devices(cur, batch.sightings)
            for table, rows in batch.rows.items():
                if rows:
                    spec = TABLES[table]
                    self._copy(cur, _stage_name(table), spec, rows, stage=True)
                    if spec is METERS:
                        refused = self._refuse_backward_registers(cur, batch.origins)
                    self._insert_from_stage(cur, spec)
            if batch.statuses:
                self._update_statuses(cur, batch.statuses)
            letters = [*batch.dead_letters, *refused]
            if letters:
                self._copy(
                    cur,
                    DEAD_LETTERS.table,
                    DEAD_LETTERS,
                    [
                        (d.received_at, d.topic, d.payload, d.payload_bytes, d.reason, d.detail)
                        for d in letters
                    ],
                )
        return refused

    def _refuse_backward_registers(
        self, cur: psycopg.Cursor[tuple[object, ...]], origins: Sequence[Origin]
    ) -> list[DeadLetter]:
        cur.execute(
            """
            WITH staged AS (
                SELECT meter_id, ts, _msg, coalesce(energy_import_kwh, volume_m3) AS reg,
                       lag(coalesce(energy_import_kwh, volume_m3))
                           OVER (PARTITION BY meter_id ORDER BY ts) AS batch_prev,
                       lag(ts) OVER (PARTITION BY meter_id ORDER BY ts) AS batch_prev_ts
                FROM _stage_meter_readings
            ), checked AS (
                SELECT s.meter_id, s.ts, s._msg, s.reg,
                       CASE WHEN s.batch_prev_ts < s.ts
                                 AND (d.ts IS NULL OR s.batch_prev_ts > d.ts)
                            THEN s.batch_prev ELSE d.reg END AS prev,
                       CASE WHEN s.batch_prev_ts < s.ts
                                 AND (d.ts IS NULL OR s.batch_prev_ts > d.ts)
                            THEN s.batch_prev_ts ELSE d.ts END AS prev_ts
                FROM staged s
                LEFT JOIN LATERAL (
                    SELECT m.ts, coalesce(m.energy_import_kwh, m.volume_m3) AS reg
                    FROM meter_readings m
                    WHERE m.meter_id = s.meter_id AND m.ts < s.ts
                      AND m.ts >= s.ts - %s::interval
                    ORDER BY m.ts DESC LIMIT 1
                ) d ON true
            ), bad AS (
                SELECT * FROM checked WHERE prev - reg > %s
            )
            DELETE FROM _stage_meter_readings t USING bad
            WHERE t.meter_id = bad.meter_id AND t.ts = bad.ts
            RETURNING bad._msg, bad.meter_id, bad.ts, bad.reg, bad.prev, bad.prev_ts
            """,
            (REGISTER_LOOKBACK, self._tolerance),
        )
        letters = []
        for msg_i, meter_id, ts, reg, prev, prev_ts in cur.fetchall():
            origin = origins[int(str(msg_i))]
            when = ts.isoformat() if isinstance(ts, datetime) else str(ts)
            prev_when = prev_ts.isoformat() if isinstance(prev_ts, datetime) else str(prev_ts)
            letters.append(
                DeadLetter(
                    received_at=datetime.fromtimestamp(origin.received_at, tz=UTC),
                    topic=origin.topic,
                    payload=origin.payload[: self._cap],
                    payload_bytes=len(origin.payload),
                    reason="register_backwards",
                    detail=(
                        f"meter {meter_id} at {when}: register {reg} is below "
                        f"{prev} at {prev_when} by more than the tolerance "
                        f"{self._tolerance:g} (SMARTCITY_INGEST_REGISTER_TOLERANCE)"
                    ),
                )
            )
        return letters

    @staticmethod
    def _copy(
        cur: psycopg.Cursor[tuple[object, ...]],
        target: str,
        spec: TableSpec,
        rows: Sequence[Row],
        *,
        stage: bool = False,
    ) -> None:
        columns = spec.stage_columns if stage else spec.columns
        stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(target), sql.SQL(", ").join(sql.Identifier(n) for n, _ in columns)
        )
        with cur.copy(stmt) as copy:
            copy.set_types([t for _, t in columns])
            write_row = copy.write_row
            for row in rows:
                write_row(row)

    def _insert_from_stage(self, cur: psycopg.Cursor[tuple[object, ...]], spec: TableSpec) -> None:
        # Fast path: a plain INSERT, in a savepoint. Almost every batch is new data, and a plain
        # insert skips the speculative-insertion work of ON CONFLICT. A redelivered reading
        # makes it fail with a unique violation; then the savepoint is undone and the batch
        # goes in with ON CONFLICT DO NOTHING, which skips exactly the rows already stored.
        stage = sql.Identifier(_stage_name(spec.table))
        cols = sql.SQL(", ").join(map(sql.Identifier, spec.names))
        insert = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
            sql.Identifier(spec.table), cols, cols, stage
        )
        try:
            with self._require().transaction():
                cur.execute(insert)
                return
        except psycopg.errors.UniqueViolation:
            pass
        cur.execute(
            sql.SQL("{} ON CONFLICT ({}) DO NOTHING").format(
                insert, sql.SQL(", ").join(map(sql.Identifier, spec.key))
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
                lat        = COALESCE(CASE WHEN EXCLUDED.last_seen >= d.last_seen
                                           THEN EXCLUDED.lat END, d.lat),
                lon        = COALESCE(CASE WHEN EXCLUDED.last_seen >= d.last_seen
                                           THEN EXCLUDED.lon END, d.lon)
            -- A redelivered or late reading changes nothing: skip writing a new row version.
            WHERE EXCLUDED.last_seen > d.last_seen OR EXCLUDED.first_seen < d.first_seen
            """
        )

    def _update_statuses(
        self, cur: psycopg.Cursor[tuple[object, ...]], statuses: Sequence[StatusUpdate]
    ) -> None:
        # The newest status (by event time) of each device wins, in the batch and against the
        # table: a retained "online" replayed after a newer "offline" will must not flip it.
        newest: dict[tuple[str, str], StatusUpdate] = {}
        for u in statuses:
            key = (u.domain.value, u.device_id)
            seen = newest.get(key)
            if seen is None or u.ts >= seen.ts:
                newest[key] = u
        ordered = [(k[0], k[1], u.city, u.status, u.ts) for k, u in sorted(newest.items())]
        self._copy(cur, _stage_name(STATUS.table), STATUS, ordered)
        cur.execute(
            """
            INSERT INTO devices AS d
                (domain, device_id, city, first_seen, last_seen, last_status, status_ts)
            SELECT domain, device_id, city, status_ts, status_ts, status, status_ts
            FROM _stage_device_status ORDER BY domain, device_id
            ON CONFLICT (domain, device_id) DO UPDATE SET
                last_status = CASE WHEN d.status_ts IS NULL OR EXCLUDED.status_ts >= d.status_ts
                                   THEN EXCLUDED.last_status ELSE d.last_status END,
                status_ts   = GREATEST(d.status_ts, EXCLUDED.status_ts)
            """
        )
