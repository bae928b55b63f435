"""Prometheus metrics of the ingest. Each pipeline gets its own registry (tests run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "smartcity_ingest_messages", "MQTT messages taken from the broker", ["feed"], registry=r
        )
        self.rows = Counter("smartcity_ingest_rows", "Rows committed", ["table"], registry=r)
        self.rejected = Counter(
            "smartcity_ingest_rejected", "Messages sent to dead_letters", ["reason"], registry=r
        )
        self.batch_rows = Histogram(
            "smartcity_ingest_batch_rows",
            "Rows per committed batch",
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 50000),
            registry=r,
        )
        self.flush_seconds = Histogram(
            "smartcity_ingest_flush_seconds", "Time to write and commit one batch", registry=r
        )
        self.receive_to_commit_seconds = Histogram(
            "smartcity_ingest_receive_to_commit_seconds",
            "From a message's arrival at the ingest to its commit",
            registry=r,
        )
        self.publish_to_commit_seconds = Histogram(
            "smartcity_ingest_publish_to_commit_seconds",
            "From a reading's event time (when the device measured and published it) to its "
            "commit; grows when the ingest falls behind or devices send late",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
            registry=r,
        )
        self.queue_depth = Gauge(
            "smartcity_ingest_queue_depth", "Messages received but not yet batched", registry=r
        )
        self.db_errors = Counter(
            "smartcity_ingest_db_errors", "Failed batch writes (retried)", ["kind"], registry=r
        )
        self.transit_errors = Counter(
            "smartcity_ingest_transit_errors",
            "Bus tracking passes that failed after a commit (the positions are kept)",
            registry=r,
        )
        self.alert_errors = Counter(
            "smartcity_ingest_alert_errors",
            "Alert evaluations that failed after a commit (the readings are kept)",
            registry=r,
        )
