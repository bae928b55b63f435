"""Versioned schema migrations, applied in order by `smartcity db migrate`.

Each migration is a module `mNNNN_name.py` with `VERSION`, `DESCRIPTION` and
`apply(conn, mode)`. Once a migration has landed on main it is never edited: change the
schema with a new one. Tables that hold time series are created through
`smartcity.db.storage`, which knows the storage mode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from smartcity.db.migrations import (
    m0001_core,
    m0002_ingest,
    m0010_rollups,
    m0011_transit_rollups,
    m0020_alerts,
    m0021_alert_rate,
    m0022_alert_webhooks,
    m0023_alerts_transit,
    m0024_alerts_group_indexes,
    m0030_gtfs,
    m0031_transit_live,
    m0032_transit_tracking,
    m0033_transit_segments,
    m0034_gtfs_translate_fast,
    m0035_stop_arrivals_detected,
    m0040_api,
    m0051_dashboard_indexes,
)
from smartcity.db.storage import StorageMode

ApplyFn = Callable[[psycopg.Connection[tuple[object, ...]], StorageMode], None]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    apply: ApplyFn


# Sorted by version, whatever order the lines below are in (each part of the project adds its
# own; versions are reserved per part, see docs/development.md).
MIGRATIONS: tuple[Migration, ...] = tuple(
    sorted(
        (
            Migration(m0001_core.VERSION, m0001_core.DESCRIPTION, m0001_core.apply),
            Migration(m0002_ingest.VERSION, m0002_ingest.DESCRIPTION, m0002_ingest.apply),
            Migration(m0020_alerts.VERSION, m0020_alerts.DESCRIPTION, m0020_alerts.apply),
            Migration(
                m0021_alert_rate.VERSION, m0021_alert_rate.DESCRIPTION, m0021_alert_rate.apply
            ),
            Migration(
                m0022_alert_webhooks.VERSION,
                m0022_alert_webhooks.DESCRIPTION,
                m0022_alert_webhooks.apply,
            ),
            Migration(
                m0023_alerts_transit.VERSION,
                m0023_alerts_transit.DESCRIPTION,
                m0023_alerts_transit.apply,
            ),
            Migration(
                m0024_alerts_group_indexes.VERSION,
                m0024_alerts_group_indexes.DESCRIPTION,
                m0024_alerts_group_indexes.apply,
            ),
            Migration(m0030_gtfs.VERSION, m0030_gtfs.DESCRIPTION, m0030_gtfs.apply),
            Migration(
                m0031_transit_live.VERSION,
                m0031_transit_live.DESCRIPTION,
                m0031_transit_live.apply,
            ),
            Migration(
                m0032_transit_tracking.VERSION,
                m0032_transit_tracking.DESCRIPTION,
                m0032_transit_tracking.apply,
            ),
            Migration(
                m0033_transit_segments.VERSION,
                m0033_transit_segments.DESCRIPTION,
                m0033_transit_segments.apply,
            ),
            Migration(
                m0034_gtfs_translate_fast.VERSION,
                m0034_gtfs_translate_fast.DESCRIPTION,
                m0034_gtfs_translate_fast.apply,
            ),
            Migration(
                m0035_stop_arrivals_detected.VERSION,
                m0035_stop_arrivals_detected.DESCRIPTION,
                m0035_stop_arrivals_detected.apply,
            ),
            Migration(m0040_api.VERSION, m0040_api.DESCRIPTION, m0040_api.apply),
            Migration(m0010_rollups.VERSION, m0010_rollups.DESCRIPTION, m0010_rollups.apply),
            Migration(
                m0011_transit_rollups.VERSION,
                m0011_transit_rollups.DESCRIPTION,
                m0011_transit_rollups.apply,
            ),
            Migration(
                m0051_dashboard_indexes.VERSION,
                m0051_dashboard_indexes.DESCRIPTION,
                m0051_dashboard_indexes.apply,
            ),
        ),
        key=lambda m: m.version,
    )
)
