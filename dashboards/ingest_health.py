"""Ingest health, from the database: what was committed, what was rejected, and how late.

What the database can tell: rows committed per minute by feed (from `ingested_at`, indexed on
every raw table), dead letters by reason, and the event-to-commit lag `ingested_at − ts`.
That lag approximates publish→commit: it also contains the device's own delay and clock
error, because the broker's publish time is not recorded. Messages/s and queue depth live in
the ingest's Prometheus metrics (port 9108) and need a Prometheus datasource, which the
deployment does not run yet.
"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import Board, stat_panel, table_panel, timeseries_panel

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


def build() -> dm.Dashboard:
    board = Board(
        uid=UID,
        title="Ingest health",
        description="Rows committed per feed, rejected messages by reason, event-to-commit lag.",
        tags=["smartcity", "ingest"],
        default_from="now-1h",
        refresh="30s",
    )
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
