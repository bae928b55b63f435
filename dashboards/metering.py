"""Energy — metering: electricity and water by district and hour, peak demand, night flow,
meter reporting rate.

Every panel reads `meter_hourly` (UTC hours) or `meter_daily` (local days), never the raw
readings, with the formulas of docs/kpis.md. Consumption is register deltas (kWh, m³); peak
demand at district and city level is the area's hourly consumption as a mean rate, because
meters are not read at the same instants (docs/storage.md).
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
from dashboards.rollups import (
    DAYS_IN_RANGE,
    FIRST_DAY,
    HOURS_OF_DAYS_IN_RANGE,
    LAST_DAY,
    LOCAL_HOUR,
)
from smartcity.queries.kpis import NIGHT_FLOW_END_HOUR, NIGHT_FLOW_FIRST_HOUR

UID = "smartcity-energy-metering"

CITY = "SELECT DISTINCT city FROM devices WHERE domain = 'metering' ORDER BY 1"
DISTRICT = (
    "SELECT DISTINCT district FROM devices WHERE domain = 'metering' AND city = '$city' "
    "AND district IS NOT NULL ORDER BY 1"
)

_DISTRICT_ROWS = "level = 'district' AND city = '$city' AND key IN ($district)"


def _by_district_hour(kind: str, column: str) -> str:
    return (
        f'SELECT bucket AS "time", key AS metric, {column} AS value FROM meter_hourly '
        f"WHERE {_DISTRICT_ROWS} AND kind = '{kind}' AND $__timeFilter(bucket) ORDER BY 1, 2"
    )


def _total_by_district(kind: str, column: str) -> str:
    return (
        f"SELECT key AS district, sum({column}) AS value FROM meter_hourly "
        f"WHERE {_DISTRICT_ROWS} AND kind = '{kind}' AND $__timeFilter(bucket) "
        "GROUP BY key ORDER BY key"
    )


ELECTRICITY_BY_HOUR = _by_district_hour("electricity", "energy_kwh")
WATER_BY_HOUR = _by_district_hour("water", "volume_m3")
ELECTRICITY_TOTAL = _total_by_district("electricity", "energy_kwh")
WATER_TOTAL = _total_by_district("water", "volume_m3")

# District peak demand: the largest hourly mean rate in the range (kW).
PEAK_BY_DISTRICT = (
    "SELECT key AS district, max(peak_power_w) / 1000.0 AS peak_kw FROM meter_hourly "
    f"WHERE {_DISTRICT_ROWS} AND kind = 'electricity' AND $__timeFilter(bucket) "
    "GROUP BY key ORDER BY key"
)
CITY_PEAK = (
    "SELECT max(peak_power_w) / 1000.0 AS peak_kw FROM meter_hourly "
    "WHERE level = 'city' AND city = '$city' AND key = '$city' AND kind = 'electricity' "
    "AND $__timeFilter(bucket)"
)
CITY_DEMAND = (
    "SELECT bucket AS \"time\", 'city' AS metric, peak_power_w / 1000.0 AS value "
    "FROM meter_hourly WHERE level = 'city' AND city = '$city' AND key = '$city' "
    "AND kind = 'electricity' AND $__timeFilter(bucket) ORDER BY 1"
)

# docs/kpis.md "Water night flow", per district over the local days of the range.
_NIGHT = f"{LOCAL_HOUR} >= {NIGHT_FLOW_FIRST_HOUR} AND {LOCAL_HOUR} < {NIGHT_FLOW_END_HOUR}"
NIGHT_FLOW = (
    "SELECT key AS district, "
    f"coalesce(avg(volume_m3) FILTER (WHERE {_NIGHT}), 0) AS night_m3_per_h, "
    "avg(volume_m3) AS mean_m3_per_h, "
    f"coalesce(avg(volume_m3) FILTER (WHERE {_NIGHT}), 0) / nullif(avg(volume_m3), 0) "
    "AS ratio "
    f"FROM meter_hourly WHERE {_DISTRICT_ROWS} AND kind = 'water' "
    f"AND {HOURS_OF_DAYS_IN_RANGE} GROUP BY key ORDER BY key"
)

# docs/kpis.md "Meter reporting rate", per kind over the local days of the range (city-wide:
# the KPI's denominator is the meters seen in the period, a city-level count).
REPORTING_RATE = (
    "SELECT kind, 100.0 * sum(meters_reporting) "
    f"/ ({LAST_DAY} - {FIRST_DAY} + 1) "
    "/ (SELECT count(DISTINCT key) FROM meter_daily m WHERE m.city = d.city "
    f"AND m.kind = d.kind AND m.level = 'meter' AND m.{DAYS_IN_RANGE}) AS reporting_pct "
    f"FROM meter_daily d WHERE city = '$city' AND level = 'city' AND {DAYS_IN_RANGE} "
    "GROUP BY city, kind ORDER BY kind"
)


def build() -> dm.Dashboard:
    board = Board(
        uid=UID,
        title="Energy — metering",
        description="Electricity and water by district and hour, peak demand, night flow "
        "(leak indicator) and meter reporting rate, from the metering rollups.",
        tags=["smartcity", "energy", "metering"],
        default_from="now-7d",
        refresh="5m",
    )
    board.variable(query_variable("city", "City", CITY))
    board.variable(query_variable("district", "District", DISTRICT, multi=True, include_all=True))

    board.row("Consumption")
    board.add(
        timeseries_panel("Electricity by district and hour", ELECTRICITY_BY_HOUR, unit="kwatth"),
        width=12,
        height=9,
    )
    board.add(
        timeseries_panel("Water by district and hour", WATER_BY_HOUR, unit="m3"),
        width=12,
        height=9,
    )
    board.add(
        bar_panel("Electricity by district", ELECTRICITY_TOTAL, unit="kwatth"), width=12, height=8
    )
    board.add(bar_panel("Water by district", WATER_TOTAL, unit="m3"), width=12, height=8)

    board.row("Demand")
    board.add(
        stat_panel(
            "City peak demand",
            CITY_PEAK,
            unit="kwatt",
            description="The city's largest hourly consumption in the range, as a mean rate.",
            color="orange",
        ),
        width=6,
        height=8,
    )
    board.add(
        timeseries_panel(
            "City demand per hour",
            CITY_DEMAND,
            unit="kwatt",
            description="The city's hourly electricity consumption as a mean rate (kW).",
        ),
        width=10,
        height=8,
    )
    board.add(
        bar_panel(
            "Peak demand by district",
            PEAK_BY_DISTRICT,
            unit="kwatt",
            description="Each district's largest hourly mean rate in the range.",
        ),
        width=8,
        height=8,
    )

    board.row("Water losses and meter health (whole local days of the range)")
    board.add(
        table_panel(
            "Night flow (leak indicator)",
            NIGHT_FLOW,
            description=f"Mean hourly water volume in the local {NIGHT_FLOW_FIRST_HOUR:02d}:00–"
            f"{NIGHT_FLOW_END_HOUR:02d}:00 hours and over all hours; a ratio approaching 1 "
            "points to leaks, bursts or unmetered use (docs/kpis.md).",
        ),
        width=14,
        height=8,
    )
    board.add(
        bar_panel(
            "Meter reporting rate",
            REPORTING_RATE,
            unit="percent",
            description="Per kind, city-wide: mean over local days of meters reporting ÷ "
            "meters seen in the range (docs/kpis.md).",
        ),
        width=10,
        height=8,
    )
    return board.build()
