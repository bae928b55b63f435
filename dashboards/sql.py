"""SQL queries for Grafana's PostgreSQL datasource, as a grafana-foundation-sdk dataquery.

The SDK ships dataquery types for many datasources but not for PostgreSQL, so this is ours:
it serialises to the JSON Grafana's `grafana-postgresql-datasource` plugin stores (a raw SQL
query in code mode), and `register()` teaches the SDK's runtime to read it back, so a
dashboard round-trips through the SDK's model without losing its queries.
"""

from __future__ import annotations

import typing
from enum import StrEnum

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef

PLUGIN_TYPE = "grafana-postgresql-datasource"
# The uid the provisioned datasource gets (dashboards/provisioning/datasources/smartcity.yaml);
# `dashboards push --datasource-uid` rewrites it for a Grafana whose datasource differs.
DATASOURCE_UID = "smartcity-pg"


# The provisioned Prometheus datasource (dashboards/provisioning/datasources/prometheus.yaml),
# which scrapes the ingest's and the API's /metrics.
PROMETHEUS_TYPE = "prometheus"
PROMETHEUS_UID = "smartcity-prometheus"


def datasource(uid: str = DATASOURCE_UID) -> DataSourceRef:
    return DataSourceRef(type_val=PLUGIN_TYPE, uid=uid)


def prometheus_datasource(uid: str = PROMETHEUS_UID) -> DataSourceRef:
    return DataSourceRef(type_val=PROMETHEUS_TYPE, uid=uid)


class Format(StrEnum):
    TABLE = "table"
    TIME_SERIES = "time_series"


class SqlQuery(cogvariants.Dataquery):
    """One raw SQL target of a panel."""

    def __init__(
        self,
        raw_sql: str = "",
        ref_id: str = "A",
        fmt: Format = Format.TABLE,
        datasource_ref: DataSourceRef | None = None,
    ) -> None:
        self.raw_sql = raw_sql
        self.ref_id = ref_id
        self.fmt = fmt
        self.datasource_ref = datasource_ref or datasource()

    def to_json(self) -> dict[str, object]:
        return {
            "datasource": self.datasource_ref.to_json(),
            "editorMode": "code",
            "format": self.fmt.value,
            "rawQuery": True,
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, typing.Any]) -> SqlQuery:
        return cls(
            raw_sql=str(data.get("rawSql", "")),
            ref_id=str(data.get("refId", "A")),
            fmt=Format(data.get("format", Format.TABLE.value)),
            datasource_ref=DataSourceRef.from_json(data.get("datasource", {})),
        )


class Sql(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder of a `SqlQuery`, for `panel.with_target(...)`."""

    def __init__(self, raw_sql: str, *, fmt: Format = Format.TABLE, ref_id: str = "A") -> None:
        self._internal = SqlQuery(raw_sql.strip(), ref_id, fmt)

    def build(self) -> SqlQuery:
        return self._internal


def register() -> None:
    """Make the SDK's runtime decode our queries (idempotent)."""
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig(identifier=PLUGIN_TYPE, from_json_hook=SqlQuery.from_json)
    )
