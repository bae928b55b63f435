"""Evaluate committed readings against the per-reading rules and apply the verdicts.

Called after the ingest commits a batch (see `ingest/pipeline.py`, `_after_commit`). Readings
of one device are taken in event-time order and each rule's verdicts collapse into runs: a
firing run raises (or repeats) the alert, a quiet run after an open alert starts or completes
its hold-off. Keys are applied in sorted order in one transaction, so two workers touching the
same alerts wait for each other instead of deadlocking.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
import structlog

from smartcity.alerts import cabinet, context, store
from smartcity.alerts.rules import RULES, RULES_BY_NAME, TABLE_DOMAINS, Reading, Rule, Verdict

log = structlog.get_logger("smartcity.alerts")


@dataclass(slots=True)
class Outcome:
    """What one evaluation changed: alerts raised for the first time, alerts cleared."""

    raised: list[int] = field(default_factory=list)
    repeated: list[int] = field(default_factory=list)
    cleared: list[int] = field(default_factory=list)
    suppressed: int = 0  # new alerts held back by the per-rule rate limit


@dataclass(slots=True)
class Run:
    firing: bool
    first: datetime
    last: datetime
    message: str


def runs_of(rule: Rule, readings: Sequence[Reading]) -> list[Run]:
    runs: list[Run] = []
    for r in readings:
        verdict: Verdict | None = rule.check(r)
        if verdict is None:
            continue
        ts = r["ts"]
        assert isinstance(ts, datetime)
        if runs and runs[-1].firing == verdict.firing:
            runs[-1].last = ts
            runs[-1].message = verdict.message
        else:
            runs.append(Run(verdict.firing, ts, ts, verdict.message))
    return runs


def evaluate(
    conn: psycopg.Connection[tuple[object, ...]],
    rows_by_table: Mapping[str, Sequence[Reading]],
    *,
    max_new_per_min: int = 0,
) -> Outcome:
    """Apply every rule to the readings (dicts by column name) and commit the result.

    `max_new_per_min` (0: none) limits the new alerts of each rule in each city per event-time
    minute; a raise over it is counted in `alert_rate.suppressed` and not made now. The problem
    is not lost: its next firing reading (in a later minute) raises it.
    """
    outcome = Outcome()
    with conn.transaction():
        for table, readings in rows_by_table.items():
            if table not in TABLE_DOMAINS or not readings:
                continue
            domain, id_column = TABLE_DOMAINS[table]
            by_device: dict[str, list[Reading]] = defaultdict(list)
            for r in readings:
                by_device[str(r[id_column])].append(r)
            open_now = store.open_keys(conn, domain, sorted(by_device))
            for device_readings in by_device.values():
                device_readings.sort(key=_ts)
            if table == "meter_readings":
                _add_previous_export(conn, by_device)
                context.add_meter_history(conn, by_device)
            else:
                context.add_lamp_reference(conn, by_device)
            rules = [rule for rule in RULES if rule.domain == domain]
            for device_id in sorted(by_device):
                device_readings = by_device[device_id]
                city = str(device_readings[0]["city"])
                for rule in rules:
                    apply_runs(
                        conn,
                        rule,
                        store.Key(domain, device_id, rule.name),
                        city,
                        runs_of(rule, device_readings),
                        open_now,
                        outcome,
                        max_new_per_min,
                    )
            if table == "lighting_readings":
                _apply_cabinets(conn, readings, outcome, max_new_per_min)
    return outcome


def _apply_cabinets(
    conn: psycopg.Connection[tuple[object, ...]],
    readings: Sequence[Reading],
    outcome: Outcome,
    max_new_per_min: int,
) -> None:
    """The cabinet rule for the cabinets of the batch's lamps (after the lamps' own rules)."""
    found = cabinet.verdicts(conn, readings)
    if not found:
        return
    rule = RULES_BY_NAME[cabinet.RULE]
    open_now = store.open_keys(conn, rule.domain, sorted(found))
    for cab in sorted(found):
        city, ts, verdict = found[cab]
        apply_runs(
            conn,
            rule,
            store.Key(rule.domain, cab, rule.name),
            city,
            [Run(verdict.firing, ts, ts, verdict.message)],
            open_now,
            outcome,
            max_new_per_min,
        )


def _add_previous_export(
    conn: psycopg.Connection[tuple[object, ...]], by_device: dict[str, list[Reading]]
) -> None:
    """Give each electricity reading its meter's previous export register (for reverse energy).

    The previous reading is the one before it in event time: in the batch, or for the batch's
    first reading of a meter, in the table (its rows are committed already).
    """
    firsts: dict[str, datetime] = {}
    for meter_id, readings in by_device.items():
        readings.sort(key=_ts)
        if readings[0].get("energy_export_kwh") is not None:
            firsts[meter_id] = _ts(readings[0])
    previous: dict[str, float] = {}
    if firsts:
        ids = sorted(firsts)
        rows = conn.execute(
            """
            SELECT f.meter_id, p.energy_export_kwh
            FROM unnest(%s::text[], %s::timestamptz[]) AS f (meter_id, ts)
            CROSS JOIN LATERAL (
                SELECT energy_export_kwh FROM meter_readings m
                WHERE m.meter_id = f.meter_id AND m.ts < f.ts
                ORDER BY m.ts DESC LIMIT 1
            ) p
            """,
            (ids, [firsts[i] for i in ids]),
        ).fetchall()
        previous = {str(m): float(e) for m, e in rows if e is not None}  # type: ignore[arg-type]
    for meter_id, readings in by_device.items():
        prev: float | None = previous.get(meter_id)
        enriched: list[Reading] = []
        for r in readings:
            enriched.append({**r, "prev_energy_export_kwh": prev})
            export = r.get("energy_export_kwh")
            prev = float(export) if isinstance(export, int | float) else prev
        readings[:] = enriched


def _ts(r: Reading) -> datetime:
    ts = r["ts"]
    assert isinstance(ts, datetime)
    return ts


def apply_runs(
    conn: psycopg.Connection[tuple[object, ...]],
    rule: Rule,
    key: store.Key,
    city: str,
    runs: list[Run],
    open_now: set[store.Key],
    outcome: Outcome,
    max_new_per_min: int,
) -> None:
    is_open = key in open_now
    for run in runs:
        if run.firing:
            if not is_open and not store.take_rate(
                conn, city, rule.name, run.first, max_new_per_min
            ):
                outcome.suppressed += 1
                continue
            alert_id, new = store.raise_alert(
                conn,
                key,
                city=city,
                severity=rule.severity.value,
                message=run.message,
                first=run.first,
                last=run.last,
            )
            (outcome.raised if new else outcome.repeated).append(alert_id)
            is_open = True
        elif is_open:
            cleared = store.condition_ended(
                conn,
                key,
                first_ok=run.first,
                last_ok=run.last,
                hold_off=timedelta(seconds=rule.hold_off_s),
            )
            if cleared is not None:
                outcome.cleared.append(cleared)
                is_open = False
