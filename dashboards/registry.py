"""Every dashboard we ship: adding one is one module with a `build()` and one line here."""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.models import dashboard as dm

from dashboards import alerts, ingest_health, lighting, metering, transit

# File name (dashboards/json/<name>.json) -> the function that builds the dashboard.
DASHBOARDS: dict[str, Callable[[], dm.Dashboard]] = {
    "energy-lighting": lighting.build,
    "energy-metering": metering.build,
    "transit": transit.build,
    "alerts": alerts.build,
    "ingest-health": ingest_health.build,
}
