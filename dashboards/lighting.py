"""Energy — street lighting: the state of the lamps now, and where they are.

The "now" panels read the latest state, which needs no rollup: the newest reading of each
lamp within the last `SILENT_AFTER` (an index range scan on (city, ts)), and the device
registry. The energy panels (energy per night and district, savings from dimming, burn hours)
read only the district rows of `lighting_daily` (local days) and `lighting_hourly` (UTC
hours), with the formulas of docs/kpis.md.
"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import (
    Board,
    State,
    bar_panel,
    points_map,
    query_variable,
    stat_panel,
    state_mappings,
    table_panel,
    timeseries_panel,
)
from dashboards.rollups import DAY_START, DAYS_IN_RANGE

UID = "smartcity-energy-lighting"
# A lamp that has not reported for this long counts as silent: three missed reports at a
# 5-minute reporting interval, common for NB-IoT and LoRa lamp controllers (the simulator
# reports every minute by default).
SILENT_AFTER = "15 minutes"

CITY = "SELECT DISTINCT city FROM devices WHERE domain = 'lighting' ORDER BY 1"
DISTRICT = (
    "SELECT DISTINCT district FROM devices WHERE domain = 'lighting' AND city = '$city' "
    "AND district IS NOT NULL ORDER BY 1"
)
# Filter on the selected city and districts, for a table aliased `{alias}`.
_WHERE = "{alias}.city = '$city' AND {alias}.district IN ($district)"

# The newest reading of each lamp that reported within SILENT_AFTER ("latest" by event time).
LATEST = f"""
WITH latest AS (
  SELECT DISTINCT ON (r.lamp_id)
         r.lamp_id, r.district, r.cabinet_id, r.ts, r.lamp_on, r.lamp_failure, r.power_w
  FROM lighting_readings r
  WHERE {_WHERE.format(alias="r")}
    AND r.ts > now() - interval '{SILENT_AFTER}'
  ORDER BY r.lamp_id, r.ts DESC
)
"""

# Lamp states as shown on the map and in the table.
OFF, ON, FAULTY, SILENT = 0, 1, 2, 3
STATES = [
    State(OFF, "off", "blue"),
    State(ON, "on", "green"),
    State(FAULTY, "faulty", "red"),
    State(SILENT, "silent", "orange"),
]
_STATE = (
    f"CASE WHEN l.lamp_id IS NULL THEN {SILENT} WHEN l.lamp_failure THEN {FAULTY} "
    f"WHEN l.lamp_on THEN {ON} ELSE {OFF} END"
)


def lamps_with_state(columns: str, condition: str) -> str:
    """Every known lamp of the selection with its state code, `columns` of `devices d`, the
    rows kept by `condition` (on `d` and the latest reading `l`, NULL when silent)."""
    return (
        LATEST
        + f"SELECT {columns}, {_STATE} AS state "
        + "FROM devices d LEFT JOIN latest l ON l.lamp_id = d.device_id "
        + "WHERE d.domain = 'lighting' AND "
        + _WHERE.format(alias="d")
        + f" AND {condition}"
    )


# District rows of the selection in a lighting rollup table.
_DISTRICT_ROWS = "level = 'district' AND city = '$city' AND key IN ($district)"

ENERGY_PER_LAMP_NIGHT = (
    "SELECT sum(energy_wh) / 1000.0 / nullif(sum(lamps_reporting), 0) AS kwh_per_lamp "
    f"FROM lighting_daily WHERE {_DISTRICT_ROWS} AND {DAYS_IN_RANGE}"
)
ENERGY_PER_NIGHT = (
    f"SELECT {DAY_START}, key AS metric, energy_wh / 1000.0 AS value "
    f"FROM lighting_daily WHERE {_DISTRICT_ROWS} AND {DAYS_IN_RANGE} ORDER BY 1, 2"
)
SAVED_KWH = (
    "SELECT coalesce(sum(full_power_energy_wh - energy_wh), 0) / 1000.0 AS saved_kwh "
    f"FROM lighting_daily WHERE {_DISTRICT_ROWS} AND {DAYS_IN_RANGE}"
)
SAVED_PCT = (
    "SELECT 100.0 * sum(full_power_energy_wh - energy_wh) "
    "/ nullif(sum(full_power_energy_wh), 0) AS saved_pct "
    f"FROM lighting_daily WHERE {_DISTRICT_ROWS} AND {DAYS_IN_RANGE}"
)
BURN_HOURS = (
    "SELECT coalesce(sum(burn_h), 0) AS burn_h "
    f"FROM lighting_daily WHERE {_DISTRICT_ROWS} AND {DAYS_IN_RANGE}"
)
ENERGY_VS_FULL_POWER = (
    "SELECT $__timeGroupAlias(bucket, '1h'), 'energy' AS metric, sum(energy_wh) / 1000.0 "
    f"AS value FROM lighting_hourly WHERE {_DISTRICT_ROWS} AND $__timeFilter(bucket) "
    "GROUP BY 1\nUNION ALL\n"
    "SELECT $__timeGroupAlias(bucket, '1h'), 'at full power' AS metric, "
    "sum(full_power_energy_wh) / 1000.0 AS value "
    f"FROM lighting_hourly WHERE {_DISTRICT_ROWS} AND $__timeFilter(bucket) GROUP BY 1\n"
    "ORDER BY 1, 2"
)
BY_DISTRICT = (
    "SELECT key AS district, sum(energy_wh) / 1000.0 AS energy_kwh, "
    "sum(full_power_energy_wh) / 1000.0 AS full_power_kwh, "
    "sum(full_power_energy_wh - energy_wh) / 1000.0 AS saved_kwh, "
    "100.0 * sum(full_power_energy_wh - energy_wh) / nullif(sum(full_power_energy_wh), 0) "
    "AS saved_pct, "
    "sum(energy_wh) / 1000.0 / nullif(sum(lamps_reporting), 0) AS kwh_per_lamp_night, "
    "sum(burn_h) AS burn_h, "
    "sum(burn_h) / nullif(sum(lamps_reporting), 0) AS burn_h_per_lamp_night, "
    "100.0 * (1 - sum(lamp_hours_faulty)::float8 / nullif(sum(lamp_hours_reporting), 0)) "
    "AS availability_pct "
    f"FROM lighting_daily WHERE {_DISTRICT_ROWS} AND {DAYS_IN_RANGE} GROUP BY key ORDER BY key"
)
ENERGY_BY_DISTRICT = (
    "SELECT key AS district, sum(energy_wh) / 1000.0 AS energy_kwh "
    f"FROM lighting_daily WHERE {_DISTRICT_ROWS} AND {DAYS_IN_RANGE} GROUP BY key ORDER BY key"
)


def build() -> dm.Dashboard:
    board = Board(
        uid=UID,
        title="Energy — street lighting",
        description="Street lamps now (on, faulty, silent, power, a map coloured by state) and "
        "their energy from the rollups: per night and district, saved by dimming, burn hours.",
        tags=["smartcity", "energy", "lighting"],
        # The energy panels compare nights: a week of local days by default.
        default_from="now-7d",
    )
    board.variable(query_variable("city", "City", CITY))
    board.variable(query_variable("district", "District", DISTRICT, multi=True, include_all=True))

    board.row("Now")
    board.add(
        stat_panel(
            "Lamps on",
            LATEST + "SELECT count(*) FILTER (WHERE lamp_on AND NOT lamp_failure) FROM latest",
            description=f"Lamps whose newest reading (within {SILENT_AFTER}) says on.",
        ),
        width=4,
        height=4,
    )
    board.add(
        stat_panel(
            "Lamps faulty",
            LATEST + "SELECT count(*) FILTER (WHERE lamp_failure) FROM latest",
            description="Lamps whose newest reading reports lamp_failure.",
            color="red",
        ),
        width=4,
        height=4,
    )
    board.add(
        stat_panel(
            "Lamps silent",
            "SELECT count(*) FROM devices d WHERE d.domain = 'lighting' AND "
            + _WHERE.format(alias="d")
            + f" AND d.last_seen <= now() - interval '{SILENT_AFTER}'",
            description=f"Known lamps with no reading in the last {SILENT_AFTER}.",
            color="orange",
        ),
        width=4,
        height=4,
    )
    board.add(
        stat_panel(
            "Lamps reporting",
            LATEST + "SELECT count(*) FROM latest",
            description=f"Lamps with a reading in the last {SILENT_AFTER}.",
            color="blue",
        ),
        width=4,
        height=4,
    )
    board.add(
        stat_panel(
            "Power now",
            LATEST + "SELECT coalesce(sum(power_w), 0) / 1000.0 AS power_kw FROM latest",
            unit="kwatt",
            description="Sum of each reporting lamp's newest power reading.",
            color="yellow",
        ),
        width=8,
        height=4,
    )

    board.row("Where")
    board.add(
        points_map(
            "Lamps by state",
            lamps_with_state(
                "d.device_id AS lamp, d.district, d.lat AS latitude, d.lon AS longitude",
                "d.lat IS NOT NULL AND d.lon IS NOT NULL",
            ),
            state_field="state",
            states=STATES,
            description="Each lamp at its reported position: on, off, faulty or silent.",
        ),
        width=16,
        height=14,
    )
    board.add(
        bar_panel(
            "Power now by district",
            LATEST + "SELECT district, coalesce(sum(power_w), 0) / 1000.0 AS power_kw "
            "FROM latest GROUP BY district ORDER BY district",
            unit="kwatt",
        ),
        width=8,
        height=14,
    )

    board.row("Needs attention")
    board.add(
        table_panel(
            "Faulty and silent lamps",
            lamps_with_state(
                "d.device_id AS lamp, d.district, d.last_seen",
                "(l.lamp_id IS NULL OR l.lamp_failure) ORDER BY d.last_seen LIMIT 500",
            ),
            description="Oldest news first; at most 500 rows.",
        ).mappings(state_mappings(STATES)),
        width=24,
        height=10,
    )
    board.row("Energy (rollups; whole local days of the range)")
    board.add(
        stat_panel(
            "Energy per lamp per night",
            ENERGY_PER_LAMP_NIGHT,
            unit="kwatth",
            description="Σ energy ÷ Σ lamps reporting, over the local days of the range "
            "(docs/kpis.md: a lamp burns once per night, so a local day holds one night).",
            color="yellow",
        ),
        width=6,
        height=4,
    )
    board.add(
        stat_panel(
            "Saved by dimming",
            SAVED_KWH,
            unit="kwatth",
            description="Σ (energy at full power − energy): what the same lamps would have "
            "used over the same burn time at 100 % (docs/kpis.md).",
        ),
        width=6,
        height=4,
    )
    board.add(
        stat_panel(
            "Saved by dimming, %",
            SAVED_PCT,
            unit="percent",
            description="Saved energy ÷ energy at full power.",
        ),
        width=6,
        height=4,
    )
    board.add(
        stat_panel(
            "Burn hours",
            BURN_HOURS,
            unit="h",
            description="Σ operating hours of the selected lamps (lamp-hours on).",
            color="blue",
        ),
        width=6,
        height=4,
    )
    board.add(
        timeseries_panel(
            "Energy per night by district",
            ENERGY_PER_NIGHT,
            unit="kwatth",
            description="kWh per district and local day (the time is the day's local "
            "midnight; a local day holds the end of one night and the start of the next).",
        ),
        width=12,
        height=9,
    )
    board.add(
        timeseries_panel(
            "Energy and energy at full power, per hour",
            ENERGY_VS_FULL_POWER,
            unit="kwatth",
            description="Hourly rollups: the gap between the lines is what dimming saved.",
        ),
        width=12,
        height=9,
    )
    board.add(
        bar_panel("Energy by district", ENERGY_BY_DISTRICT, unit="kwatth"),
        width=8,
        height=10,
    )
    board.add(
        table_panel(
            "Per district",
            BY_DISTRICT,
            description="Energy, saving from dimming, burn hours and lamp availability "
            "(docs/kpis.md) over the local days of the range.",
        ),
        width=16,
        height=10,
    )
    return board.build()
