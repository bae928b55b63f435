"""The ingest pipeline, wired in one place:

    subscribe → decode + validate → batch → COPY → commit → PUBACK
                   └ bad input → dead_letters (same transaction)

`run` owns every resource (MQTT source, database writer) and stops cleanly when its `stop`
event is set (SIGTERM/SIGINT in the CLI): it stops reading, flushes and commits what it holds,
acknowledges it, then disconnects. A crash at any point before commit loses nothing: the
unacknowledged messages are redelivered by the broker.
"""

from __future__ import annotations

import gc
import queue
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import structlog

from ingest.alerts_hook import AlertHook
from ingest.decode import DECODERS, Decoded, Limits, decode
from ingest.metrics import IngestMetrics
from ingest.source import Inbound, MqttSource, inbox_chunks
from ingest.transit_hook import TransitHook
from ingest.writer import Batch, BatchWriter, DeadLetter, Origin
from smartcity.errors import PayloadError, ServiceUnavailableError
from smartcity.settings import Settings
from smartcity.topics import TopicInfo, parse_inbound

log = structlog.get_logger("ingest.pipeline")

# Raw bytes kept per dead letter: enough to see what a device sent, bounded so that a flood of
# huge payloads cannot fill the disk.
DEAD_LETTER_PAYLOAD_CAP_BYTES = 4096
# Database reconnect backoff: capped, with jitter so that many workers do not stampede a
# database that just came back.
_BACKOFF_MIN_S = 0.2
_BACKOFF_MAX_S = 10.0
# Allocations between young-generation GC passes in a worker (CPython's default: 700).
_GC_GEN0_THRESHOLD = 50_000
# Parsed topics remembered (one entry per device and feed seen).
_TOPIC_CACHE_MAX = 200_000


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a worker process (call once, at start).

    The hot path allocates several container objects per message and almost no cycles, so
    CPython's default (a young-generation pass every 700 allocations, full passes over every
    object alive) spends a measurable share of a worker's CPU scanning long-lived objects.
    Everything alive at start-up is frozen out of collection, and passes are rarer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_GEN0_THRESHOLD, 20, 50)


@dataclass(slots=True)
class _Entry:
    msg: Inbound
    decoded: Decoded | None
    dead: DeadLetter | None


def _dead_letter(msg: Inbound, reason: str, detail: str) -> DeadLetter:
    return DeadLetter(
        received_at=datetime.fromtimestamp(msg.received_at, tz=UTC),
        topic=msg.topic,
        payload=msg.payload[:DEAD_LETTER_PAYLOAD_CAP_BYTES],
        payload_bytes=len(msg.payload),
        reason=reason,
        detail=detail.replace("\x00", "\\x00"),
    )


def _assemble(entries: Sequence[_Entry]) -> Batch:
    batch = Batch.empty()
    for e in entries:
        if e.decoded is not None:
            batch.add(e.decoded, Origin(e.msg.received_at, e.msg.topic, e.msg.payload))
        if e.dead is not None:
            batch.dead_letters.append(e.dead)
    return batch


class Pipeline:
    """One ingest worker: one MQTT session, one database connection."""

    def __init__(self, settings: Settings, metrics: IngestMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or IngestMetrics()
        self._inbox: queue.Queue[list[Inbound]] = queue.Queue(
            maxsize=inbox_chunks(settings.ingest_queue_max)
        )
        self._source = MqttSource(settings, self._inbox, list(DECODERS))
        self._writer = BatchWriter(
            settings.database_conninfo,
            register_tolerance=settings.ingest_register_tolerance,
            dead_letter_cap_bytes=DEAD_LETTER_PAYLOAD_CAP_BYTES,
        )
        self._limits = Limits(
            max_payload_bytes=settings.ingest_max_payload_bytes,
            max_future_s=settings.ingest_max_future_s,
            max_age_s=settings.ingest_max_age_days * 86400,
        )
        self._alerts = AlertHook(
            settings.database_conninfo,
            self.metrics,
            enabled=settings.alerts_on_ingest,
            max_new_per_min=settings.alerts_max_new_per_rule_per_min,
        )
        self._transit = TransitHook(
            settings.database_conninfo,
            self.metrics,
            enabled=settings.transit_on_ingest,
            stats_reload_s=settings.transit_stats_reload_s,
            eta_sample_pct=settings.transit_eta_sample_pct,
        )
        self._entries: list[_Entry] = []
        self._taken: dict[str, int] = {}
        self._topics: dict[str, TopicInfo | None] = {}
        self._rows_pending = 0
        self._batch_started = 0.0

    @property
    def ready(self) -> threading.Event:
        """Set when the broker confirmed the subscriptions: messages published now reach us."""
        return self._source.subscribed

    # -- stage: decode ----------------------------------------------------------------------------

    def _topic(self, topic: str) -> TopicInfo | None:
        # Topics repeat (one per device and feed): parse each once. Bounded, so a flood of
        # distinct bad topics cannot grow it without limit.
        try:
            return self._topics[topic]
        except KeyError:
            info = parse_inbound(self.settings.mqtt_topic_root, topic)
            if len(self._topics) >= _TOPIC_CACHE_MAX:
                self._topics.clear()
            self._topics[topic] = info
            return info

    def _take(self, msg: Inbound) -> None:
        info = self._topic(msg.topic)
        feed = info.feed.value if info else "unknown"
        self._taken[feed] = self._taken.get(feed, 0) + 1
        try:
            decoded = decode(info, msg.payload, limits=self._limits, received_at=msg.received_at)
            entry = _Entry(msg, decoded, None)
            for rows in decoded.rows.values():
                self._rows_pending += len(rows)
        except PayloadError as exc:
            entry = _Entry(msg, None, _dead_letter(msg, exc.reason, exc.detail))
        except Exception as exc:  # never crash on input: a decoder bug is a dead letter too
            log.exception("decoder failed", topic=msg.topic)
            entry = _Entry(msg, None, _dead_letter(msg, "decoder_error", repr(exc)[:500]))
        if entry.dead is not None:
            self.metrics.rejected.labels(entry.dead.reason).inc()
        if not self._entries:
            self._batch_started = time.monotonic()
        self._entries.append(entry)

    def _count_taken(self) -> None:
        # `messages_total` is counted per batch rather than per message (cheaper; it lags by
        # at most one batch age).
        for feed, n in self._taken.items():
            self.metrics.messages.labels(feed).inc(n)
        self._taken.clear()

    # -- stage: write + acknowledge ---------------------------------------------------------------

    def _flush(self) -> None:
        self._count_taken()
        entries, self._entries, self._rows_pending = self._entries, [], 0
        if not entries:
            return
        batch = _assemble(entries)
        started = time.monotonic()
        try:
            refused = self._write_with_retry(batch)
        except psycopg.Error as exc:
            # Not a connection problem: the database refused some row. Find it by writing the
            # messages one at a time, dead-letter the refused ones, and keep the rest.
            log.error("batch refused by database; retrying message by message", error=str(exc))
            self.metrics.db_errors.labels("refused").inc()
            refused = self._write_one_by_one(entries)
        committed = time.monotonic()
        self.metrics.flush_seconds.observe(committed - started)
        self.metrics.batch_rows.observe(batch.row_count())
        for table, rows in batch.rows.items():
            n = len(rows) - (len(refused) if table == "meter_readings" else 0)
            self.metrics.rows.labels(table).inc(n)
        for d in refused:
            self.metrics.rejected.labels(d.reason).inc()
        now = time.time()
        lag = self.metrics.publish_to_commit_seconds
        for e in entries:
            self.metrics.receive_to_commit_seconds.observe(now - e.msg.received_at)
            if e.decoded is not None:
                for rows in e.decoded.rows.values():
                    ts = rows[0][0]
                    if isinstance(ts, datetime):
                        lag.observe(now - ts.timestamp())
                    break
        self._alerts.after_commit(batch)  # never raises: see ingest/alerts_hook.py
        self._transit.after_commit(batch)  # never raises: see ingest/transit_hook.py
        self._source.ack([e.msg for e in entries])
        with self._inbox.mutex:  # messages (the queue holds lists of them)
            depth = sum(map(len, self._inbox.queue))
        self.metrics.queue_depth.set(depth)

    def _write_with_retry(self, batch: Batch) -> list[DeadLetter]:
        delay = _BACKOFF_MIN_S
        while True:
            try:
                if not self._writer.connected:
                    self._writer.open()
                return self._writer.write(batch)
            except (psycopg.OperationalError, ServiceUnavailableError) as exc:
                # Connection lost or database down: hold the batch (unacknowledged, so the
                # broker holds the rest), reconnect with backoff, write it again. The write is
                # idempotent, so a commit whose reply was lost is harmless.
                self.metrics.db_errors.labels("unavailable").inc()
                log.warning(
                    "database unavailable; will retry",
                    error=str(exc).strip(),
                    retry_in_s=round(delay, 2),
                )
                self._writer.close()
                time.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, _BACKOFF_MAX_S)

    def _write_one_by_one(self, entries: Sequence[_Entry]) -> list[DeadLetter]:
        refused: list[DeadLetter] = []
        for e in entries:
            try:
                refused += self._write_with_retry(_assemble([e]))
            except psycopg.Error as exc:
                e.decoded = None
                e.dead = _dead_letter(e.msg, "db_rejected", str(exc).strip()[:500])
                self.metrics.rejected.labels("db_rejected").inc()
                self._write_with_retry(_assemble([e]))
        return refused

    # -- the loop ---------------------------------------------------------------------------------

    def _full_or_old(self, now: float) -> bool:
        s = self.settings
        if not self._entries:
            return False
        if self._rows_pending >= s.ingest_batch_rows or len(self._entries) >= s.ingest_batch_rows:
            return True
        return (now - self._batch_started) * 1000 >= s.ingest_batch_age_ms

    def run(self, stop: threading.Event) -> None:
        """Ingest until `stop` is set, then flush, acknowledge and disconnect."""
        s = self.settings
        self._source.start()
        log.info(
            "ingest started", batch_rows=s.ingest_batch_rows, batch_age_ms=s.ingest_batch_age_ms
        )
        idle_flush_s = s.ingest_idle_flush_ms / 1000
        try:
            while not stop.is_set():
                # With a batch open, wait only the idle time: the broker may be holding the rest
                # until we acknowledge, so waiting longer would only add latency.
                timeout = max(idle_flush_s, 0.001) if self._entries else 0.05
                try:
                    chunk = self._inbox.get(timeout=timeout)
                except queue.Empty:
                    if self._entries:
                        self._flush()  # idle: the input paused
                    continue
                for msg in chunk:
                    self._take(msg)
                    if self._full_or_old(time.monotonic()):
                        self._flush()
            # Shutdown: take nothing new, commit and acknowledge what is already here.
            self._source.stop_reading()
            while True:
                try:
                    chunk = self._inbox.get_nowait()
                except queue.Empty:
                    break
                for msg in chunk:
                    self._take(msg)
            self._flush()
            log.info("ingest stopped cleanly")
        finally:
            self._source.close()
            self._writer.close()
            self._alerts.close()
            self._transit.close()
