"""An index for the `cabinet_imbalance` rule (`smartcity/alerts/cabinet.py`).

The rule reads, after each committed lamp batch, the last two minutes of each cabinet in the
batch; without `lighting_readings (cabinet_id, ts)` that is a scan of every lamp of the city in
the window. (The headway rules use `stop_arrivals (city, arrived_at)`, which exists.)
"""

from __future__ import annotations

import psycopg

from smartcity.db.storage import StorageMode

VERSION = 24
DESCRIPTION = "index lighting_readings (cabinet_id, ts)"


def apply(conn: psycopg.Connection[tuple[object, ...]], mode: StorageMode) -> None:
    del mode  # a plain index on the parent: both storage modes propagate it to the chunks
    conn.execute("CREATE INDEX ON lighting_readings (cabinet_id, ts DESC)")
