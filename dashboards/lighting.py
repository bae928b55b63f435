"""Energy — street lighting: the state of the lamps now, and where they are.

Every panel here reads the latest state, which needs no rollup: the newest reading of each
lamp within the last `SILENT_AFTER` (an index range scan on (city, ts)), and the device
registry. The energy panels (energy per night and district, savings from dimming, burn hours)
read the rollups of the storage issue and are added when those exist.
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
)

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


def build() -> dm.Dashboard:
    board = Board(
        uid=UID,
        title="Energy — street lighting",
        description="Street lamps now: on, faulty, silent, power; a map coloured by state.",
        tags=["smartcity", "energy", "lighting"],
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
    return board.build()
