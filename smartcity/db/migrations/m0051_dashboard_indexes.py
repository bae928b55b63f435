"""Indexes the dashboards need: the Alerts dashboard counts alerts raised and cleared in the
dashboard's range per city, which the alert table's own indexes (made for raising and
delivering) do not serve without reading the whole table."""

from __future__ import annotations

import psycopg

from smartcity.db.storage import StorageMode

VERSION = 51
DESCRIPTION = "indexes for the Alerts dashboard: alerts by city and raise / clear time"


def apply(conn: psycopg.Connection[tuple[object, ...]], mode: StorageMode) -> None:
    del mode  # an ordinary table: the same in both storage modes
    conn.execute("CREATE INDEX alerts_city_raised_at ON alerts (city, raised_at)")
    # Only cleared alerts have a cleared_at; the partial index stays as small as they are.
    conn.execute(
        "CREATE INDEX alerts_city_cleared_at ON alerts (city, cleared_at) "
        "WHERE cleared_at IS NOT NULL"
    )
