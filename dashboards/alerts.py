"""Alerts: what is open now, how many were raised and cleared, and how fast operators respond.

Everything comes from the `alerts` table (smartcity/db/migrations/m0020_alerts.py; lifecycle in
docs/alerts.md). "Open" is active or acknowledged (not cleared): the partial unique index on
open alerts serves those panels. Counts over the dashboard's range use `raised_at` and
`cleared_at`, the service's own clock, through the indexes of migration 51.

Time to acknowledge = `acknowledged_at − raised_at`, time to clear = `cleared_at − raised_at`,
both over the alerts raised in the range (docs/kpis.md "Alerts"). An alert cleared without an
acknowledgement (the condition ended, `cleared_by = 'auto'`) has a time to clear and no time to
acknowledge.
"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import (
    Board,
    bar_panel,
    query_variable,
    stat_panel,
    table_panel,
    timeseries_panel,
)

UID = "smartcity-alerts"

# Every city that has devices: alerts belong to a device's city.
CITY = "SELECT DISTINCT city FROM devices ORDER BY 1"

# Severities from the most to the least urgent (smartcity/alerts/rules.Severity).
SEVERITIES = ("critical", "major", "minor", "warning")
_SEVERITY_ORDER = (
    "(VALUES "
    + ", ".join(f"({i}, '{s}')" for i, s in enumerate(SEVERITIES, start=1))
    + ") AS s(rank, severity)"
)

_OPEN = "city = '$city' AND state <> 'cleared'"
_RAISED_IN_RANGE = "city = '$city' AND $__timeFilter(raised_at)"

OPEN_ALERTS = f"SELECT count(*) AS open FROM alerts WHERE {_OPEN}"
UNACKNOWLEDGED = f"SELECT count(*) AS active FROM alerts WHERE {_OPEN} AND state = 'active'"
OLDEST_UNACKNOWLEDGED = (
    "SELECT coalesce(extract(epoch FROM now() - min(raised_at)), 0) AS age_s "
    f"FROM alerts WHERE {_OPEN} AND state = 'active'"
)
# All four severities, zero included, in order of urgency.
OPEN_BY_SEVERITY = (
    f"SELECT s.severity, count(a.alert_id) AS alerts FROM {_SEVERITY_ORDER} "
    "LEFT JOIN alerts a ON a.severity = s.severity AND a.city = '$city' "
    "AND a.state <> 'cleared' GROUP BY s.rank, s.severity ORDER BY s.rank"
)
OPEN_BY_RULE = (
    f"SELECT rule, count(*) AS alerts FROM alerts WHERE {_OPEN} GROUP BY rule ORDER BY 2 DESC, 1"
)

RAISED_AND_CLEARED = (
    "SELECT $__timeGroupAlias(raised_at, '1h'), 'raised ' || severity AS metric, "
    f"count(*) AS value FROM alerts WHERE {_RAISED_IN_RANGE} GROUP BY 1, 2\n"
    "UNION ALL\n"
    "SELECT $__timeGroupAlias(cleared_at, '1h'), 'cleared' AS metric, count(*) AS value "
    "FROM alerts WHERE city = '$city' AND cleared_at IS NOT NULL "
    "AND $__timeFilter(cleared_at) GROUP BY 1\n"
    "ORDER BY 1, 2"
)

_TTA_S = "extract(epoch FROM acknowledged_at - raised_at)"
_TTC_S = "extract(epoch FROM cleared_at - raised_at)"


def _median(seconds: str) -> str:
    return f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {seconds})"


def _p90(seconds: str) -> str:
    return f"percentile_cont(0.9) WITHIN GROUP (ORDER BY {seconds})"


MEDIAN_TTA = (
    f"SELECT {_median(_TTA_S)} AS median_s FROM alerts "
    f"WHERE {_RAISED_IN_RANGE} AND acknowledged_at IS NOT NULL"
)
MEDIAN_TTC = (
    f"SELECT {_median(_TTC_S)} AS median_s FROM alerts "
    f"WHERE {_RAISED_IN_RANGE} AND cleared_at IS NOT NULL"
)

# Per rule over the alerts raised in the range. percentile_cont ignores NULLs, so each
# percentile is over the alerts that reached that state.
BY_RULE = (
    "SELECT rule, min(severity) AS severity, count(*) AS raised, "
    "count(acknowledged_at) AS acknowledged, count(cleared_at) AS cleared, "
    "count(*) FILTER (WHERE state <> 'cleared') AS open, "
    "count(*) FILTER (WHERE cleared_by = 'auto') AS auto_cleared, "
    f"{_median(_TTA_S)} / 60 AS median_tta_min, {_p90(_TTA_S)} / 60 AS p90_tta_min, "
    f"{_median(_TTC_S)} / 60 AS median_ttc_min, {_p90(_TTC_S)} / 60 AS p90_ttc_min "
    f"FROM alerts WHERE {_RAISED_IN_RANGE} GROUP BY rule ORDER BY raised DESC, rule"
)

# The open alerts, most urgent and oldest first. Bounded: a table of thousands helps no one,
# and the counts above say how many there are.
OPEN_TABLE_LIMIT = 500
OPEN_TABLE = (
    "SELECT a.alert_id, a.severity, a.rule, a.domain, a.device_id, a.state, a.message, "
    "a.first_occurrence, a.last_occurrence, a.occurrence_count, a.raised_at, "
    "a.acknowledged_at, a.acknowledged_by, "
    "extract(epoch FROM now() - a.raised_at) / 60 AS open_min "
    f"FROM alerts a JOIN {_SEVERITY_ORDER} ON s.severity = a.severity "
    "WHERE a.city = '$city' AND a.state <> 'cleared' "
    f"ORDER BY s.rank, a.raised_at LIMIT {OPEN_TABLE_LIMIT}"
)


def build() -> dm.Dashboard:
    board = Board(
        uid=UID,
        title="Alerts",
        description="Open alerts by severity and rule, raised and cleared over time, time to "
        "acknowledge and to clear, and the open alerts themselves.",
        tags=["smartcity", "alerts"],
        default_from="now-24h",
        refresh="1m",
    )
    board.variable(query_variable("city", "City", CITY))

    board.row("Open now")
    board.add(
        stat_panel("Open alerts", OPEN_ALERTS, description="Active or acknowledged.", color="red"),
        width=4,
        height=6,
    )
    board.add(
        stat_panel(
            "Not acknowledged",
            UNACKNOWLEDGED,
            description="Open alerts nobody has acknowledged yet.",
            color="orange",
        ),
        width=4,
        height=6,
    )
    board.add(
        stat_panel(
            "Oldest unacknowledged",
            OLDEST_UNACKNOWLEDGED,
            unit="s",
            description="How long the oldest active alert has waited for an operator.",
            color="orange",
        ),
        width=4,
        height=6,
    )
    board.add(bar_panel("Open by severity", OPEN_BY_SEVERITY), width=6, height=6)
    board.add(bar_panel("Open by rule", OPEN_BY_RULE), width=6, height=6)

    board.row("Over the range")
    board.add(
        timeseries_panel(
            "Raised (by severity) and cleared per hour",
            RAISED_AND_CLEARED,
            description="Alerts raised (raised_at) by severity, and alerts cleared (cleared_at).",
        ),
        width=16,
        height=8,
    )
    board.add(
        stat_panel(
            "Median time to acknowledge",
            MEDIAN_TTA,
            unit="s",
            description="acknowledged_at − raised_at, over acknowledged alerts raised in the "
            "range (docs/kpis.md).",
            color="blue",
        ),
        width=4,
        height=8,
    )
    board.add(
        stat_panel(
            "Median time to clear",
            MEDIAN_TTC,
            unit="s",
            description="cleared_at − raised_at, over cleared alerts raised in the range, "
            "cleared by an operator or because the condition ended (docs/kpis.md).",
            color="blue",
        ),
        width=4,
        height=8,
    )
    board.add(
        table_panel(
            "By rule: raised, acknowledged, cleared; time to acknowledge and to clear",
            BY_RULE,
            description="Alerts raised in the range, per rule; times in minutes (median, p90).",
        ),
        width=24,
        height=8,
    )

    board.row("Open alerts")
    board.add(
        table_panel(
            "Open alerts, most urgent first",
            OPEN_TABLE,
            description=f"Most urgent first, then oldest; at most {OPEN_TABLE_LIMIT} rows.",
        ),
        width=24,
        height=10,
    )
    return board.build()
