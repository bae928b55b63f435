"""Grafana's PostgreSQL macros and template variables, expanded the way Grafana does.

`dashboards check` runs each panel's SQL for real, so it must see the query Grafana would
send: `$__timeFilter(col)` becomes `col BETWEEN '<from>' AND '<to>'` (RFC 3339, UTC),
`$__timeGroup(col, '1m')` becomes `time_bucket('60s', col)` on a TimescaleDB datasource
(`timescaledb: true`) or `floor(extract(epoch from col)/60)*60` otherwise, and so on.
A macro or variable this module does not know is an error, never passed through silently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_RELATIVE = re.compile(r"^now(?:-(\d+)([smhdw]))?$")


class MacroError(ValueError):
    """A query uses a macro or variable that cannot be expanded."""


def parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text.strip().strip("'\""))
    if not m:
        raise MacroError(f"interval {text!r} is not like '30s', '1m', '1h' or '1d'")
    return timedelta(seconds=int(m.group(1)) * _UNITS_S[m.group(2)])


def parse_relative(text: str, now: datetime) -> datetime:
    """Grafana's relative times of the simple kind: 'now' and 'now-6h'."""
    m = _RELATIVE.match(text.strip())
    if not m:
        raise MacroError(f"time {text!r} is not 'now' or 'now-<n><s|m|h|d|w>'")
    if m.group(1) is None:
        return now
    return now - timedelta(seconds=int(m.group(1)) * _UNITS_S[m.group(2)])


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    @classmethod
    def relative(cls, start: str, end: str, now: datetime | None = None) -> TimeRange:
        at = now or datetime.now(UTC)
        return cls(parse_relative(start, at), parse_relative(end, at))


def _rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _args(text: str) -> list[str]:
    return [a.strip() for a in text.split(",")] if text.strip() else []


def _time_group(args: list[str], timescaledb: bool) -> str:
    if len(args) < 2:
        raise MacroError("$__timeGroup needs a column and an interval, e.g. (ts, '1m')")
    seconds = int(parse_duration(args[1]).total_seconds())
    if timescaledb:
        return f"time_bucket('{seconds}s',{args[0]})"
    return f"floor(extract(epoch from {args[0]})/{seconds})*{seconds}"


_MACRO = re.compile(r"\$__(\w+)\(([^()]*)\)")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)|\[\[(\w+)\]\]")


def expand(
    sql: str, time_range: TimeRange, variables: Mapping[str, str], *, timescaledb: bool
) -> str:
    """`sql` as Grafana would send it; `variables` maps a name to its interpolated text."""
    start, end = _rfc3339(time_range.start), _rfc3339(time_range.end)

    def macro(m: re.Match[str]) -> str:
        name, args = m.group(1), _args(m.group(2))
        if name == "timeFilter":
            return f"{args[0]} BETWEEN '{start}' AND '{end}'"
        if name == "timeFrom":
            return f"'{start}'"
        if name == "timeTo":
            return f"'{end}'"
        if name == "time":
            return f'{args[0]} AS "time"'
        if name == "timeEpoch":
            return f'extract(epoch from {args[0]}) AS "time"'
        if name == "timeGroup":
            return _time_group(args, timescaledb)
        if name == "timeGroupAlias":
            return _time_group(args, timescaledb) + ' AS "time"'
        raise MacroError(f"macro $__{name} is not supported by dashboards check")

    expanded = _MACRO.sub(macro, sql)
    if "$__" in expanded:
        raise MacroError(f"unknown or malformed macro in: {expanded[expanded.index('$__') :][:40]}")

    def variable(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in variables:
            raise MacroError(f"variable ${name} is not defined on the dashboard")
        return variables[name]

    return _VARIABLE.sub(variable, expanded)


def quote(value: str) -> str:
    """A value as Grafana quotes it for SQL in a multi-value or 'All' selection."""
    return "'" + value.replace("'", "''") + "'"
