"""`smartcity dashboards check`: the committed dashboards are well-formed, and their SQL works.

Structure (no database needed):
* each JSON file round-trips through the SDK's `Dashboard` model unchanged;
* panel ids are unique and panels do not overlap on the grid;
* the files equal what `dashboards build` generates.

SQL (against a database with data, e.g. the one the simulators filled):
* each variable's query returns options; each panel's query, with Grafana's macros and the
  variables expanded over the dashboard's default time range, runs and returns a row that is
  not all NULL;
* EXPLAIN shows no sequential scan of a raw table (or of one of its partitions or chunks).
  The plan is taken with `enable_seqscan = off`: on a small test database the planner rightly
  prefers scanning a few pages, so what we check is that an index path exists for the query
  (PostgreSQL still plans a sequential scan, disabled or not, when none does).

Prometheus queries (no Prometheus runs here, so PromQL is not executed): every `smartcity_…`
series a query names is one the ingest's or the API's metrics registry exposes, so a renamed
metric cannot leave a panel silently empty.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql as pgsql

from dashboards.build import JSON_DIR, sdk_runtime, stale_files
from dashboards.macros import MacroError, TimeRange, expand, quote

# Tables that grow with time — the raw time series, the dead-letter store, the observed stop
# arrivals (~1 M rows a day in a city of 800 buses) and the alert history: never scanned whole
# by a dashboard.
RAW_TABLES = frozenset(
    {
        "lighting_readings",
        "meter_readings",
        "vehicle_positions",
        "dead_letters",
        "stop_arrivals",
        "alerts",
    }
)
# A query this slow on the test database is a problem in itself.
STATEMENT_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class Problem:
    dashboard: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.dashboard}: {self.where}: {self.message}"


def load(directory: Path = JSON_DIR) -> dict[str, dict[str, Any]]:
    return {
        p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))
    }


def panels(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in data.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def check_structure(name: str, data: dict[str, Any]) -> list[Problem]:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    sdk_runtime()
    problems: list[Problem] = []
    again = json.loads(json.dumps(Dashboard.from_json(data), cls=JSONEncoder))
    if again != data:
        problems.append(Problem(name, "model", "does not round-trip through the SDK's Dashboard"))
    seen_ids: dict[int, str] = {}
    boxes: list[tuple[str, int, int, int, int]] = []
    for panel in panels(data):
        title = str(panel.get("title", "?"))
        pid = panel.get("id")
        if not isinstance(pid, int):
            problems.append(Problem(name, title, "panel has no numeric id"))
        elif pid in seen_ids:
            problems.append(Problem(name, title, f"id {pid} is also used by {seen_ids[pid]!r}"))
        else:
            seen_ids[pid] = title
        if panel.get("type") != "row" and not panel.get("targets"):
            problems.append(Problem(name, title, "panel has no query"))
        pos = panel.get("gridPos") or {}
        x, y, w, h = (int(pos.get(k, 0)) for k in ("x", "y", "w", "h"))
        if w <= 0 or h <= 0 or x < 0 or x + w > 24:
            problems.append(Problem(name, title, f"gridPos {pos} is outside the 24-column grid"))
        for other, ox, oy, ow, oh in boxes:
            if x < ox + ow and ox < x + w and y < oy + oh and oy < y + h:
                problems.append(Problem(name, title, f"overlaps {other!r} on the grid"))
        boxes.append((title, x, y, w, h))
    return problems


def check_committed(directory: Path = JSON_DIR) -> list[Problem]:
    return [
        Problem(n, "file", "differs from what 'smartcity dashboards build' generates; run it")
        for n in stale_files(directory)
    ]


Conn = psycopg.Connection[tuple[Any, ...]]


def _variables(
    conn: Conn, data: dict[str, Any], time_range: TimeRange, timescaledb: bool
) -> tuple[dict[str, str], list[Problem]]:
    """Each variable's value as Grafana would interpolate it, taken from its own query."""
    name = str(data.get("title"))
    values: dict[str, str] = {}
    problems: list[Problem] = []
    for var in data.get("templating", {}).get("list", []):
        var_name = str(var["name"])
        query = var.get("query")
        if var.get("type") != "query" or not isinstance(query, str):
            problems.append(Problem(name, f"${var_name}", "only SQL query variables are checked"))
            continue
        try:
            sql = expand(query, time_range, values, timescaledb=timescaledb)
            rows = conn.execute(pgsql.SQL(sql)).fetchall()
            options = [str(r[0]) for r in rows if r[0] is not None]
        except (MacroError, psycopg.Error) as exc:
            conn.rollback()
            problems.append(Problem(name, f"${var_name}", f"query failed: {exc}"))
            continue
        if not options:
            problems.append(Problem(name, f"${var_name}", "query returned no options"))
            continue
        if var.get("multi") or var.get("includeAll"):
            # 'All' (and a multi selection) is interpolated as a quoted, comma-separated list.
            values[var_name] = ",".join(quote(o) for o in options)
        else:
            values[var_name] = options[0]
    return values, problems


def _seq_scans(plan: Any) -> Iterator[tuple[str | None, str]]:
    """(schema, relation) of each sequential scan; a plain EXPLAIN names no schema."""
    if isinstance(plan, dict):
        if plan.get("Node Type") == "Seq Scan":
            schema = plan.get("Schema")
            yield (None if schema is None else str(schema)), str(plan["Relation Name"])
        for value in plan.values():
            yield from _seq_scans(value)
    elif isinstance(plan, list):
        for item in plan:
            yield from _seq_scans(item)


def _raw_table_of(conn: Conn, schema: str | None, relation: str) -> str | None:
    """The raw table `relation` is, or is a partition (plain) or chunk (TimescaleDB) of.

    Without a schema the relation is looked up by name in every schema: TimescaleDB's chunks
    live in `_timescaledb_internal`, not on the search path (a chunk of the columnstore is a
    child of an internal table, not of the raw one, so its scan is not reported)."""
    if relation in RAW_TABLES:
        return relation
    row = conn.execute(
        "SELECT p.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relname = %s AND (%s::text IS NULL OR n.nspname = %s)",
        (relation, schema, schema),
    ).fetchone()
    parent = str(row[0]) if row else None
    return parent if parent in RAW_TABLES else None


def check_queries(
    conninfo: str, dashboards: dict[str, dict[str, Any]], *, now: datetime | None = None
) -> list[Problem]:
    from smartcity.db import storage
    from smartcity.db.connect import connect

    problems: list[Problem] = []
    with connect(conninfo) as conn:
        conn.read_only = True
        conn.execute(
            "SELECT set_config('statement_timeout', %s, false)", (str(STATEMENT_TIMEOUT_MS),)
        )
        conn.commit()
        timescaledb = storage.read_mode(conn) is storage.StorageMode.TIMESCALEDB
        conn.rollback()
        for data in dashboards.values():
            name = str(data.get("title"))
            time = data.get("time", {})
            time_range = TimeRange.relative(time.get("from", "now-6h"), time.get("to", "now"), now)
            variables, var_problems = _variables(conn, data, time_range, timescaledb)
            problems += var_problems
            for panel in panels(data):
                for target in filter(_is_sql, panel.get("targets", [])):
                    title = f"{panel.get('title')} [{target.get('refId')}]"
                    problems += _check_target(
                        conn, name, title, target, time_range, variables, timescaledb
                    )
    return problems


_PROM_SERIES = re.compile(r"\bsmartcity_[a-z0-9_]+\b")
# The series names a metric family of each type exposes (prometheus_client's text format).
_SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def exposed_series() -> frozenset[str]:
    """Every series name the ingest and the API expose on /metrics."""
    # Imported here: only this check needs the processes' metric definitions.
    from api.metrics import ApiMetrics
    from ingest.metrics import IngestMetrics

    names: set[str] = set()
    for registry in (IngestMetrics().registry, ApiMetrics().registry):
        for family in registry.collect():
            names.update(family.name + suffix for suffix in _SERIES_SUFFIXES[family.type])
    return frozenset(names)


def check_prometheus(dashboards: dict[str, dict[str, Any]]) -> list[Problem]:
    """Each Prometheus target has an expression naming only series our processes expose."""
    from dashboards.sql import PROMETHEUS_TYPE

    exposed = exposed_series()
    problems: list[Problem] = []
    for data in dashboards.values():
        name = str(data.get("title"))
        for panel in panels(data):
            for target in panel.get("targets", []):
                if (target.get("datasource") or {}).get("type") != PROMETHEUS_TYPE:
                    continue
                title = f"{panel.get('title')} [{target.get('refId')}]"
                expr = str(target.get("expr") or "")
                series = _PROM_SERIES.findall(expr)
                if not series:
                    problems.append(Problem(name, title, "PromQL names no smartcity_ series"))
                for unknown in sorted(set(series) - exposed):
                    message = f"series {unknown} is not exposed by the ingest or the API"
                    problems.append(Problem(name, title, message))
    return problems


def _is_sql(target: dict[str, Any]) -> bool:
    from dashboards.sql import PROMETHEUS_TYPE

    return (target.get("datasource") or {}).get("type") != PROMETHEUS_TYPE


def _check_target(
    conn: Conn,
    name: str,
    title: str,
    target: dict[str, Any],
    time_range: TimeRange,
    variables: dict[str, str],
    timescaledb: bool,
) -> list[Problem]:
    raw = target.get("rawSql")
    if not isinstance(raw, str) or not raw.strip():
        return [Problem(name, title, "target has no rawSql")]
    try:
        sql = expand(raw, time_range, variables, timescaledb=timescaledb)
    except MacroError as exc:
        return [Problem(name, title, str(exc))]
    problems: list[Problem] = []
    try:
        # The dashboard's own SQL, run as Grafana would run it: text, not composed values.
        query = pgsql.SQL(sql)
        rows = conn.execute(query).fetchall()
        if not rows:
            problems.append(Problem(name, title, "returned no rows over the default range"))
        elif all(v is None for v in rows[0]):
            problems.append(Problem(name, title, "returned only NULL over the default range"))
        conn.execute("SET LOCAL enable_seqscan = off")
        explained = conn.execute(pgsql.SQL("EXPLAIN (FORMAT JSON) ") + query).fetchone()
        plan = explained[0] if explained else []
        for schema, relation in _seq_scans(plan):
            table = _raw_table_of(conn, schema, relation)
            if table is not None:
                problems.append(
                    Problem(name, title, f"sequential scan of raw table {table} ({relation})")
                )
    except psycopg.Error as exc:
        problems.append(Problem(name, title, f"query failed: {str(exc).strip()}"))
    finally:
        conn.rollback()
    return problems


def check_all(
    conninfo: str | None, directory: Path = JSON_DIR, *, now: datetime | None = None
) -> list[Problem]:
    """Every check; the SQL ones only when `conninfo` is given."""
    dashboards = load(directory)
    problems = check_committed(directory)
    for name, data in dashboards.items():
        problems += check_structure(name, data)
    problems += check_prometheus(dashboards)
    if conninfo is not None:
        problems += check_queries(conninfo, dashboards, now=now or datetime.now(UTC))
    return problems
