"""After-commit hook: the alert rules see every committed batch (smartcity.alerts).

Failure-isolated by design: the hook has its own database connection, so an alert transaction
that fails can never roll back or hold up the readings (they are committed before it runs), and
any error is logged, counted and swallowed: ingest goes on. It runs before the batch is
acknowledged, so a crash in between redelivers the batch and the rules see it again (raising
is idempotent: a repeat of an open alert does not count a new occurrence).
"""

from __future__ import annotations

import psycopg
import structlog

from ingest.metrics import IngestMetrics
from ingest.rows import LIGHTING, METERS
from ingest.writer import Batch
from smartcity.alerts import engine
from smartcity.alerts.rules import Reading

log = structlog.get_logger("ingest.alerts")

_SPECS = {spec.table: spec for spec in (LIGHTING, METERS)}


class AlertHook:
    """Owns one database connection for alert evaluation; `close` releases it."""

    def __init__(
        self,
        conninfo: str,
        metrics: IngestMetrics,
        *,
        enabled: bool = True,
        max_new_per_min: int = 0,
    ) -> None:
        self._conninfo = conninfo
        self._max_new_per_min = max_new_per_min
        self._metrics = metrics
        self._enabled = enabled
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def after_commit(self, batch: Batch) -> None:
        if not self._enabled:
            return
        rows: dict[str, list[Reading]] = {}
        for table, spec in _SPECS.items():
            names = spec.names  # stage-only columns (the meter `_msg`) are past the end
            rows[table] = [dict(zip(names, r, strict=False)) for r in batch.rows.get(table, ())]
        if not any(rows.values()):
            return
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self._conninfo, autocommit=True)
            outcome = engine.evaluate(self._conn, rows, max_new_per_min=self._max_new_per_min)
            if outcome.suppressed:
                log.warning("new alerts held back by the rate limit", count=outcome.suppressed)
        except Exception:
            self._metrics.alert_errors.inc()
            log.exception("alert evaluation failed; the readings are committed, ingest goes on")
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
