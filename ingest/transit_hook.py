"""After-commit hook: the bus tracker sees every committed batch of positions
(`smartcity.transit.tracking_store`), which records stop arrivals and replaces predictions.

Failure-isolated like the alert hook: its own database connection, run after the positions
are committed, any error logged, counted and swallowed. It runs before the batch is
acknowledged, so a crash in between redelivers the batch; the tracker ignores fixes no newer
than a vehicle's state, so seeing them again changes nothing.
"""

from __future__ import annotations

import time

import psycopg
import structlog

from ingest.metrics import IngestMetrics
from ingest.rows import VEHICLES
from ingest.writer import Batch
from smartcity.transit.tracking_store import Position, Tracker

log = structlog.get_logger("ingest.transit")


def positions(batch: Batch) -> list[Position]:
    """The batch's vehicle positions as the tracker takes them."""
    names = VEHICLES.names
    out: list[Position] = []
    for row in batch.rows.get(VEHICLES.table, ()):
        r = dict(zip(names, row, strict=False))
        out.append(
            Position(
                vehicle_id=str(r["vehicle_id"]),
                city=str(r["city"]),
                ts=r["ts"].timestamp(),  # type: ignore[attr-defined]
                trip_id=None if r["trip_id"] is None else str(r["trip_id"]),
                start_date=None if r["start_date"] is None else str(r["start_date"]),
                lat=float(r["lat"]),  # type: ignore[arg-type]
                lon=float(r["lon"]),  # type: ignore[arg-type]
                speed_mps=None if r["speed_mps"] is None else float(r["speed_mps"]),  # type: ignore[arg-type]
            )
        )
    return out


class TransitHook:
    """Owns one database connection and the tracker's caches; `close` releases them."""

    def __init__(
        self,
        conninfo: str,
        metrics: IngestMetrics,
        *,
        enabled: bool,
        stats_reload_s: float,
        eta_sample_pct: float,
    ) -> None:
        self._conninfo = conninfo
        self._metrics = metrics
        self._enabled = enabled
        self._tracker = Tracker(stats_reload_s=stats_reload_s, eta_sample_pct=eta_sample_pct)
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def after_commit(self, batch: Batch) -> None:
        if not self._enabled or not batch.rows.get(VEHICLES.table):
            return
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self._conninfo, autocommit=True)
            self._tracker.process(self._conn, positions(batch), now=time.time())
        except Exception:
            self._metrics.transit_errors.inc()
            log.exception("bus tracking failed; the positions are committed, ingest goes on")
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
