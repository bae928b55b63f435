"""Ingest health: messages/s, what was committed and rejected, how late, and what waits.

From the database: rows committed per minute by feed (from `ingested_at`, indexed on every
raw table), dead letters by reason, and the event-to-commit lag `ingested_at − ts`. That lag
approximates publish→commit: it also contains the device's own delay and clock error, because
the broker's publish time is not recorded.

From the ingest's Prometheus metrics (ingest/metrics.py, scraped by the deployment's
Prometheus, dashboards/provisioning/datasources/prometheus.yaml): messages/s taken from the
broker (a SenML gateway pack is one message and many rows, so this differs from rows/s),
the queue of messages received but not yet batched (a process gauge the database never
sees), and the receive→commit and publish→commit latency histograms. The database cannot
give these honestly, so they are not approximated from it.
"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import (
    Board,
    prom_timeseries_panel,
    stat_panel,
    table_panel,
    timeseries_panel,
)
from dashboards.sql import prometheus_datasource

UID = "smartcity-ingest-health"

# Raw tables and the feed each one stores (a feed without data yet simply adds no series).
FEEDS = {
    "lighting": "lighting_readings",
    "metering": "meter_readings",
    "transit": "vehicle_positions",
}


def _per_feed(select: str) -> str:
    """`select` (with {feed} and {table}) once per raw table, as one UNION ALL query."""
    return "\nUNION ALL\n".join(
        select.format(feed=feed, table=table) for feed, table in FEEDS.items()
    )


ROWS_PER_MINUTE = (
    _per_feed(
        "SELECT $__timeGroupAlias(ingested_at, '1m'), '{feed}' AS metric, count(*) AS value "
        "FROM {table} WHERE $__timeFilter(ingested_at) GROUP BY 1"
    )
    + "\nORDER BY 1"
)

ROWS_TOTAL = (
    "SELECT sum(n) AS rows FROM (\n"
    + _per_feed("SELECT count(*) AS n FROM {table} WHERE $__timeFilter(ingested_at)")
    + "\n) AS per_feed"
)

LAG = (
    _per_feed(
        "SELECT $__timeGroupAlias(ingested_at, '1m'), '{feed} p99' AS metric, "
        "percentile_cont(0.99) WITHIN GROUP "
        "(ORDER BY extract(epoch FROM ingested_at - ts)) AS value "
        "FROM {table} WHERE $__timeFilter(ingested_at) GROUP BY 1"
    )
    + "\nORDER BY 1"
)

REJECTED_PER_MINUTE = (
    "SELECT $__timeGroupAlias(received_at, '1m'), reason AS metric, count(*) AS value "
    "FROM dead_letters WHERE $__timeFilter(received_at) GROUP BY 1, 2 ORDER BY 1"
)

REJECTED_BY_REASON = (
    "SELECT reason, count(*) AS messages, max(received_at) AS latest, "
    "(array_agg(topic ORDER BY received_at DESC))[1] AS latest_topic "
    "FROM dead_letters WHERE $__timeFilter(received_at) GROUP BY reason ORDER BY 2 DESC"
)


# PromQL over the ingest's metrics; sums over instances, so N workers read as one ingest.
_RATE = "[$__rate_interval]"
MESSAGES_PER_S = [
    (f"sum by (feed) (rate(smartcity_ingest_messages_total{_RATE}))", "{{feed}}"),
    (f"sum by (reason) (rate(smartcity_ingest_rejected_total{_RATE}))", "rejected: {{reason}}"),
]
QUEUE_DEPTH = [
    ("sum(smartcity_ingest_queue_depth)", "queued"),
    # A labelled counter has no series before its first error: 0 then, not an empty line.
    (f"sum(rate(smartcity_ingest_db_errors_total{_RATE})) or vector(0)", "failed batch writes/s"),
]


def _p99(histogram: str) -> str:
    return f"histogram_quantile(0.99, sum by (le) (rate({histogram}_bucket{_RATE})))"


COMMIT_LATENCY = [
    (_p99("smartcity_ingest_publish_to_commit_seconds"), "publish→commit p99"),
    (_p99("smartcity_ingest_receive_to_commit_seconds"), "receive→commit p99"),
    (_p99("smartcity_ingest_flush_seconds"), "batch write p99"),
]


def build() -> dm.Dashboard:
    board = Board(
        uid=UID,
        title="Ingest health",
        description="Rows committed per feed, rejected messages by reason, event-to-commit lag.",
        tags=["smartcity", "ingest"],
        default_from="now-1h",
        refresh="30s",
    )
    board.row("Ingest process (Prometheus)")
    board.add(
        prom_timeseries_panel(
            "Messages per second, by feed; rejected by reason",
            MESSAGES_PER_S,
            unit="reqps",
            description="MQTT messages taken from the broker per feed, and messages sent to "
            "dead_letters per reason (smartcity_ingest_messages / _rejected).",
        ),
        width=12,
        height=8,
        source=prometheus_datasource(),
    )
    board.add(
        prom_timeseries_panel(
            "Publish→commit latency p99",
            COMMIT_LATENCY,
            unit="s",
            description="publish→commit: from the reading's event time to its commit (the "
            "device's clock and delay included); receive→commit: from arrival at the ingest.",
        ),
        width=6,
        height=8,
        source=prometheus_datasource(),
    )
    board.add(
        prom_timeseries_panel(
            "Queue depth",
            QUEUE_DEPTH,
            description="Messages received but not yet batched (bounded by "
            "SMARTCITY_INGEST_QUEUE_MAX; a full queue holds the broker back), and failed "
            "batch writes (retried).",
        ),
        width=6,
        height=8,
        source=prometheus_datasource(),
    )
    board.row("Committed and rejected (database)")
    board.add(
        stat_panel(
            "Rows committed",
            ROWS_TOTAL,
            description="Readings committed in the selected range, all feeds.",
            color="blue",
        ),
        width=6,
        height=8,
    )
    board.add(
        timeseries_panel(
            "Rows committed per minute, by feed",
            ROWS_PER_MINUTE,
            description="From ingested_at, the commit time of each row.",
        ),
        width=18,
        height=8,
    )
    board.add(
        timeseries_panel(
            "Event-to-commit lag p99 (ingested_at − ts)",
            LAG,
            unit="s",
            description=(
                "Approximates publish→commit latency: it also includes the device's own delay "
                "and clock error, since the broker's publish time is not stored."
            ),
        ),
        width=24,
        height=8,
    )
    board.add(
        timeseries_panel(
            "Rejected messages per minute, by reason",
            REJECTED_PER_MINUTE,
            description="Messages stored in dead_letters instead of the raw tables.",
        ),
        width=14,
        height=8,
    )
    board.add(
        table_panel(
            "Rejected by reason",
            REJECTED_BY_REASON,
            description="Count, latest time and latest topic of each rejection reason.",
        ),
        width=10,
        height=8,
    )
    return board.build()
