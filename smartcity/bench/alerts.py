"""`smartcity bench alerts`: the alert rules scored against the simulators' injected faults.

Design (what the numbers mean):

* A fresh database (the configured one's name + `_bench_alerts`, re-created each run).
* **History**: HISTORY_DAYS of the meter fleet without faults, written through the ingest's own
  decoder and writer (no rules run on it): the spike and leak baselines need past days.
* **Scored span**: lamps and meters with fault injection (`simulators.faults`, rates below)
  for DAYS simulated days from local noon (so dusk, the full-level evening, the dimmed night
  and dawn all come before anything that needs them), accelerated: every message goes through
  the ingest's decoder → `BatchWriter` (COPY, commit) → `AlertHook.after_commit` — the same code
  the ingest runs after each commit, minus the broker — one batch per simulated `STEP_S`.
  After each batch, the `offline` sweep runs at the simulated time (live, `smartcity alerts run`
  sweeps every 10 s of wall time).
* **Ground truth** is the fault log. A fault counts for recall only if its signal is observable
  inside the span: a lamp failure only while the lamp is scheduled on, day-burning only by day,
  a dimming failure only while the schedule dims (after local midnight), a leak once its
  two-hour night window (or the meter's day-long leak flag) lies inside it, a stuck register
  after the rule's N readings, silence after the offline factor × interval, a cabinet fault
  once the cabinet (of at least the rule's minimum lamps) has been lit for the rule's reference
  lag plus its minimum references (lamps join at the span's start). Faults the
  simulator shadows (a second fault on a device already faulty) are left out.
* An alert is a **true positive** when a fault of its rule on its device was active between
  one interval before the alert's first occurrence and the rule's hold-off after. **Delay** is
  from the moment the fault became observable to the alert's first occurrence, in the device's
  reporting intervals (lamps 60 s, meters 900 s); the rules' own windows (2 h of night flow,
  N flat readings, 3 intervals of silence) are part of "observable", so the delay is what the
  engine adds. **Duplicates**: alerts beyond the first matched to the same fault.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from psycopg import sql
from rich.console import Console
from rich.table import Table

from smartcity import solar, topics
from smartcity.alerts import cabinet, context, offline, rules
from smartcity.cities import get_city
from smartcity.db.connect import connect, database_name, with_database
from smartcity.db.migrate import migrate
from smartcity.errors import PayloadError
from smartcity.settings import Settings

if TYPE_CHECKING:
    from simulators.scenario import Scenario

BENCH_DB_SUFFIX = "_bench_alerts"  # the configured database's name + this
CITY = "astana"
HISTORY_BATCH_ROWS = 5000  # history is written like `smartcity backfill` writes it
STEP_S = 60.0  # one ingest batch per simulated minute (the lamps' reporting interval)
LAMP_INTERVAL_S = 60.0
METER_INTERVAL_S = 900.0
HISTORY_DAYS = 7
# Expected occurrences per device per simulated day: high, so a small fleet shows every kind.
FAULT_RATES = [
    "lamp_failure=0.06",
    "day_burning=0.06",
    "dimming_failure=0.08",
    "supply_loss=0.06",
    "lighting.silent=0.04",
    "tamper=0.03",
    "leak=0.08",
    "reverse_energy=0.04",
    "consumption_spike=0.06",
    "stuck_register=0.04",
    "metering.silent=0.03",
    "cabinet_imbalance=1.0",  # per cabinet (a few per run), not per lamp
]
RULE_OF_FAULT = {
    ("lighting", "lamp_failure"): "lamp_failure",
    ("lighting", "day_burning"): "day_burning",
    ("lighting", "dimming_failure"): "dimming_failure",
    ("lighting", "supply_loss"): "supply_loss",
    ("lighting", "silent"): "offline",
    ("lighting", "cabinet_imbalance"): "cabinet_imbalance",
    ("metering", "tamper"): "meter_tamper",
    ("metering", "leak"): "water_leak",
    ("metering", "reverse_energy"): "reverse_energy",
    ("metering", "consumption_spike"): "consumption_spike",
    ("metering", "stuck_register"): "zero_consumption",
    ("metering", "silent"): "offline",
}
INTERVAL_S = {"lighting": LAMP_INTERVAL_S, "metering": METER_INTERVAL_S}


@dataclass
class Fault:
    domain: str
    kind: str
    device_id: str
    start: datetime
    end: datetime
    rule: str
    observable: datetime | None = None  # None: never observable inside the span


@dataclass
class Alert:
    alert_id: int
    rule: str
    domain: str
    device_id: str
    first: datetime


def bench_database(settings: Settings) -> str:
    return database_name(settings.database_conninfo) + BENCH_DB_SUFFIX


def _fresh_database(settings: Settings) -> str:
    name = bench_database(settings)
    admin = with_database(settings.database_conninfo, "postgres")
    with connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conninfo = with_database(settings.database_conninfo, name)
    migrate(settings.model_copy(update={"database_url": conninfo}))
    return conninfo


def _span_start(days: float, now: datetime) -> datetime:
    """The latest local noon from which `days` end before `now` (the ingest refuses the future)."""
    tz = get_city(CITY).tz
    local_noon = now.astimezone(tz).replace(hour=12, minute=0, second=0, microsecond=0)
    start = local_noon.astimezone(UTC)
    while start + timedelta(days=days) > now:
        start -= timedelta(days=1)
    return start


def _run(
    conninfo: str,
    settings: Settings,
    stream: Any,
    *,
    scored_from_s: float,
    start: datetime,
    console: Console,
) -> int:
    """Decode and write `stream`: before `scored_from_s` in large batches without rules (the
    history); from then on one batch per STEP_S, each followed by the alert hook and the
    offline sweep at the batch's simulated end. `start` is the stream's t = 0."""
    from ingest.alerts_hook import AlertHook
    from ingest.decode import decode
    from ingest.metrics import IngestMetrics
    from ingest.writer import Batch, BatchWriter, Origin

    root = settings.mqtt_topic_root
    metrics = IngestMetrics()
    hook = AlertHook(conninfo, metrics, max_new_per_min=settings.alerts_max_new_per_rule_per_min)
    step_end = scored_from_s + STEP_S
    batch = Batch.empty()
    messages = 0
    history_open = True
    with BatchWriter(conninfo) as writer, connect(conninfo, autocommit=True) as conn:

        def flush(sim_s: float | None) -> None:
            nonlocal batch
            writer.write(batch)
            if sim_s is not None:
                hook.after_commit(batch)
                offline.sweep(
                    conn, start + timedelta(seconds=sim_s), settings.alerts_offline_factor
                )
            batch = Batch.empty()

        for t_s, topic, payload in stream:
            if t_s < scored_from_s:
                if batch.row_count() >= HISTORY_BATCH_ROWS:
                    flush(None)
            else:
                if history_open:  # the rest of the history, written without rules
                    flush(None)
                    history_open = False
                while t_s >= step_end:
                    flush(step_end)
                    step_end += STEP_S
            try:
                decoded = decode(
                    topics.parse_inbound(root, topic), payload, max_payload_bytes=1 << 20
                )
            except PayloadError:
                continue
            batch.add(decoded, Origin(time.time(), topic, payload))
            messages += t_s >= scored_from_s
        flush(step_end)
    hook.close()
    errors = metrics.registry.get_sample_value("smartcity_ingest_alert_errors_total") or 0
    if errors:
        console.print(f"[red]{errors:g} alert evaluations failed (see the log)")
    return messages


def _observable(
    f: Fault, scenario: Scenario, span_end: datetime, history_from: datetime | None = None
) -> datetime | None:
    """When the fault's signal can first be seen by its rule (see the module docstring).

    `history_from`: the database holds nothing before it (a soak starts empty), so the rules
    that compare with a device's own past see the fault only once that past exists: reverse
    energy a previous reading of the meter, dimming failure enough full-level readings of the
    lamp. None: the history days before the span supply them (this benchmark)."""
    interval = timedelta(seconds=INTERVAL_S[f.domain])
    end = min(f.end, span_end)
    t: datetime | None = None
    if history_from is not None:
        t = _first_with_history(f, scenario, end, history_from, interval)
        return t if t is not None and t < end else None
    return _observable_with_history(f, scenario, end, interval)


def _first_with_history(
    f: Fault, scenario: Scenario, end: datetime, history_from: datetime, interval: timedelta
) -> datetime | None:
    if f.kind == "reverse_energy":
        # Every meter has reported once an interval after the start; a reading after that has
        # a previous one to compare its export register with.
        return max(f.start, history_from + interval)
    if f.kind == "dimming_failure":
        fleet = scenario.lighting
        assert fleet is not None
        # References: the lamp's readings at full level (the rule needs DIMMING_REFERENCE_MIN;
        # one more for the lamp's reporting phase within the interval).
        full = 0
        probe = history_from
        while probe < end:
            dim = fleet.dim_pct_at(probe)
            if dim >= rules.DIMMING_FULL_PCT:
                full += 1
            elif dim > 0 and probe >= f.start and full > context.DIMMING_REFERENCE_MIN:
                return probe
            probe += interval
        return None
    return _observable_with_history(f, scenario, end, interval)


def _observable_with_history(
    f: Fault, scenario: Scenario, end: datetime, interval: timedelta
) -> datetime | None:
    t: datetime | None = None
    if f.domain == "lighting" and f.kind in {"lamp_failure", "day_burning", "dimming_failure"}:
        fleet = scenario.lighting
        assert fleet is not None
        city = fleet.city
        probe = f.start
        while probe < end:
            if f.kind == "lamp_failure":
                ok = fleet.dim_pct_at(probe) > 0
            elif f.kind == "day_burning":
                ok = (
                    solar.elevation_deg(city.lat, city.lon, probe)
                    >= rules.DAY_BURNING_MIN_ELEVATION_DEG
                )
            else:
                ok = 0 < fleet.dim_pct_at(probe) < rules.DIMMING_FULL_PCT
            if ok:
                t = probe
                break
            probe += interval
    elif f.kind == "cabinet_imbalance":
        t = _cabinet_observable(f, scenario, end)
    elif f.kind == "silent":
        t = f.start + interval * offline_factor_used
    elif f.kind == "leak":
        assert scenario.metering is not None
        night = context.night_window_start(
            f.start + timedelta(seconds=rules.LEAK_WINDOW_S), scenario.metering.city.slug
        )
        t = min(night, f.start + timedelta(days=1))  # the meter's leak flag after a day
    elif f.kind == "stuck_register":
        meters = scenario.metering
        assert meters is not None
        water = bool(meters.water[meters.meter_ids.index(f.device_id)])
        n = rules.ZERO_CONSUMPTION_READINGS["water" if water else "electricity"]
        t = f.start + interval * n
    else:
        t = f.start
    return t if t is not None and t < end else None


offline_factor_used = 3.0  # set from the settings at the start of a run


def _cabinet_observable(f: Fault, scenario: Scenario, end: datetime) -> datetime | None:
    """The first minute the cabinet is lit with its lamps' references in place: lit for the
    rule's reference lag plus CABINET_REFERENCE_MIN readings (lamps join at the span's start),
    and with at least CABINET_MIN_LAMPS lamps."""
    fleet = scenario.lighting
    assert fleet is not None
    lamps = sum(lamp.cabinet_id == f.device_id for lamp in fleet.lamps)
    if lamps < cabinet.CABINET_MIN_LAMPS:
        return None
    step = timedelta(seconds=LAMP_INTERVAL_S)
    needed = timedelta(seconds=cabinet.CABINET_REFERENCE_LAG_S) + step * (
        cabinet.CABINET_REFERENCE_MIN + 1
    )
    probe = scenario.start
    lit_since: datetime | None = None
    while probe < end:
        if fleet.dim_pct_at(probe) > 0:
            lit_since = lit_since or probe
            if probe >= f.start and probe - lit_since >= needed:
                return probe  # (a night's readings stay references through the next day)
        probe += step
    return None


def _score(faults: list[Fault], alerts: list[Alert], span_end: datetime) -> dict[str, Any]:
    by_key: dict[tuple[str, str], list[Alert]] = defaultdict(list)
    for a in alerts:
        by_key[(a.device_id, a.rule)].append(a)
    hold_off = {name: r.hold_off_s for name, r in rules.RULES_BY_NAME.items()}
    matched: set[int] = set()
    delays: dict[str, list[float]] = defaultdict(list)
    found: dict[str, list[bool]] = defaultdict(list)
    duplicates: dict[str, int] = defaultdict(int)
    for f in faults:
        interval = timedelta(seconds=INTERVAL_S[f.domain])
        grace = (
            timedelta(seconds=hold_off.get(f.rule, offline_factor_used * INTERVAL_S[f.domain]))
            + interval
        )
        hits = [
            a
            for a in by_key[(f.device_id, f.rule)]
            if f.start - interval <= a.first <= f.end + grace
        ]
        matched.update(a.alert_id for a in hits)
        if f.observable is None:
            continue
        found[f.rule].append(bool(hits))
        if hits:
            first = min(a.first for a in hits)
            delays[f.rule].append(max(0.0, (first - f.observable) / interval))
            duplicates[f.rule] += len(hits) - 1
    false_pos: dict[str, int] = defaultdict(int)
    raised: dict[str, int] = defaultdict(int)
    for a in alerts:
        raised[a.rule] += 1
        if a.alert_id not in matched:
            false_pos[a.rule] += 1

    def summary(rule_names: list[str]) -> dict[str, Any]:
        n_raised = sum(raised[r] for r in rule_names)
        n_fp = sum(false_pos[r] for r in rule_names)
        hits = [h for r in rule_names for h in found[r]]
        d = [x for r in rule_names for x in delays[r]]
        return {
            "precision": round((n_raised - n_fp) / n_raised, 4) if n_raised else None,
            "recall": round(sum(hits) / len(hits), 4) if hits else None,
            "median_delay_intervals": round(float(np.median(d)), 2) if d else None,
            "p95_delay_intervals": round(float(np.percentile(d, 95)), 2) if d else None,
            "duplicates": sum(duplicates[r] for r in rule_names),
            "faults_observable": len(hits),
            "alerts": n_raised,
            "false_positives": n_fp,
        }

    names = sorted({f.rule for f in faults} | set(raised))
    return {**summary(names), "rules": {r: summary([r]) for r in names}}


def command(
    lamps: Annotated[int, typer.Option(min=1, help="Lamps (reporting every minute).")] = 100,
    meters: Annotated[int, typer.Option(min=1, help="Meters (every 15 minutes).")] = 200,
    days: Annotated[float, typer.Option(min=0.05, help="Scored simulated days.")] = 1.0,
    history_days: Annotated[
        int, typer.Option(min=0, help="Days of fault-free meter history first.")
    ] = HISTORY_DAYS,
    seed: Annotated[int, typer.Option(help="Random seed (fleets and faults).")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Alert rules against injected faults: precision, recall, detection delay, duplicates."""
    from simulators.faults import FaultLog
    from simulators.scenario import Scenario, ScenarioOptions
    from simulators.stream import merge

    global offline_factor_used
    settings = Settings()
    offline_factor_used = settings.alerts_offline_factor
    console = Console(stderr=True)
    started = time.perf_counter()
    conninfo = _fresh_database(settings)
    start = _span_start(days, datetime.now(UTC))
    span_end = start + timedelta(days=days)
    history_s = history_days * 86400.0
    log = FaultLog()
    # Meters run from the start of the history (their registers and baselines continue into
    # the scored span); lamps join at the span's start. Faults are injected all along; only
    # those starting inside the span are scored.
    metering = Scenario(
        ScenarioOptions(meters=meters, metering_city=CITY, seed=seed, faults=FAULT_RATES),
        start=start - timedelta(seconds=history_s),
        topic_root=settings.mqtt_topic_root,
        fault_log=log,
    )
    lighting = Scenario(
        ScenarioOptions(
            lamps=lamps,
            lighting_city=CITY,
            lamp_interval_s=LAMP_INTERVAL_S,
            seed=seed,
            faults=FAULT_RATES,
        ),
        start=start,
        topic_root=settings.mqtt_topic_root,
        fault_log=log,
    )
    lamp_stream = ((t + history_s, topic, p) for t, topic, p in lighting.messages(days * 86400.0))
    console.print(
        f"{metering.describe()} from {metering.start:%Y-%m-%d %H:%M}Z ({history_days} days of "
        f"history, not scored); {lighting.describe()}; scored: {days:g} days from "
        f"{start:%Y-%m-%d %H:%M}Z"
    )
    messages = _run(
        conninfo,
        settings,
        merge(metering.messages(history_s + days * 86400.0), lamp_stream),
        scored_from_s=history_s,
        start=metering.start,
        console=console,
    )
    faults = _faults(log, lighting, metering, start, span_end)
    with connect(conninfo) as conn:
        alerts = [
            Alert(int(i), str(r), str(d), str(dev), f)  # type: ignore[call-overload, arg-type]
            for i, r, d, dev, f in conn.execute(
                "SELECT alert_id, rule, domain, device_id, first_occurrence FROM alerts"
            ).fetchall()
        ]
    result = _score(faults, alerts, span_end)
    result.update(
        lamps=lamps,
        meters=meters,
        days=days,
        history_days=history_days,
        messages=messages,
        faults_injected=len(faults),
        faults_unobservable=sum(f.observable is None for f in faults),
        seconds=round(time.perf_counter() - started, 1),
        path="simulators → ingest decode → BatchWriter → AlertHook.after_commit (no broker)",
    )
    if as_json:
        print(json.dumps(result))
        return
    table = Table(
        "rule", "precision", "recall", "median delay", "p95 delay", "dup", "faults", "alerts"
    )
    for name, r in result["rules"].items():
        table.add_row(
            name,
            str(r["precision"]),
            str(r["recall"]),
            str(r["median_delay_intervals"]),
            str(r["p95_delay_intervals"]),
            str(r["duplicates"]),
            str(r["faults_observable"]),
            str(r["alerts"]),
        )
    table.add_row(
        "all",
        str(result["precision"]),
        str(result["recall"]),
        str(result["median_delay_intervals"]),
        str(result["p95_delay_intervals"]),
        str(result["duplicates"]),
        str(result["faults_observable"]),
        str(result["alerts"]),
    )
    Console().print(table)


def _faults(
    log: Any,
    lighting: Scenario,
    metering: Scenario,
    span_start: datetime,
    span_end: datetime,
    history_from: datetime | None = None,
) -> list[Fault]:
    out: list[Fault] = []
    busy: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    # In log order, which is planning order: while two faults of a device overlap, the
    # simulator applies the one planned first (`FaultSchedule.active`).
    for e in log.entries:
        domain, kind = str(e["domain"]), str(e["fault"])
        if (domain, kind) not in RULE_OF_FAULT:
            continue
        start = datetime.fromisoformat(str(e["start"]))
        end = datetime.fromisoformat(str(e["end"]))
        device = str(e["device_id"])
        # A fault overlapping one planned before it is (at least partly) not applied: left out.
        if any(s < end and start < t for s, t in busy[device]):
            continue
        busy[device].append((start, end))
        if start >= span_end or end <= span_start:
            continue
        f = Fault(domain, kind, device, start, end, RULE_OF_FAULT[(domain, kind)])
        if start >= span_start:
            fleet = lighting if domain == "lighting" else metering
            f.observable = _observable(f, fleet, span_end, history_from)
        # else: started in the history and still active: its alerts are right (not false
        # positives), but it is not scored for recall or delay.
        out.append(f)
    return out


# -- the soak's score (`smartcity soak`, smartcity/soak/scores.py) -------------------------------


def score_soak(
    conninfo: str,
    specs: list[Any],
    root: str,
    windows: list[tuple[datetime, datetime]],
) -> dict[str, Any]:
    """Alerts the ingest raised during a soak against the device faults the soak injected
    (`smartcity.soak.truth`), with this benchmark's ground truth and matching (`_faults`,
    `_observable`, `_score`). Where the soak differs, and why:

    * each city is scored with its own sun and night (`_observable` takes them from the
      city's fleets), the span being the simulators' run;
    * a fault counts for recall only if its signal was observable at least one reporting
      interval before the end of the span: the device must have reported it before the run
      stopped (its alerts still count as true positives either way);
    * the soak's database starts empty: reverse energy is observable only once the meter has
      a previous reading in the run, dimming failure only once the lamp has reported at full
      level often enough to have its reference (`_observable`'s `history_from`);
    * alerts on the soak's own devices (`soak-…`: lag probe, storm, readiness meters, whose
      payloads are synthetic) are left out and counted apart, and so are alerts of rules
      whose faults the soak does not inject (by rule, `alerts_of_rules_not_injected`);
    * `windows` are the system faults' windows (kill -9, broker restart, database pause, …
      plus settle time) in event time. An alert delayed by one still matches its fault
      (the match runs to the fault's end plus the rule's hold-off); an alert first raised
      inside one is counted in `alerts_in_fault_windows`, and precision is also given
      without them (`precision_outside_fault_windows`).
    """
    from dataclasses import replace

    from simulators.faults import FaultLog
    from simulators.scenario import Scenario
    from smartcity.soak.procs import scenario_options
    from smartcity.soak.truth import DEVICE_FAULTS, read_faults

    faults: list[Fault] = []
    for spec in specs:
        options = replace(scenario_options(spec.fleet), buses=0)
        if not options.lamps + options.meters:
            continue
        scenario = Scenario(options, start=spec.start, topic_root=root)
        log = FaultLog()
        log.entries = read_faults(spec.faults_path)
        end = spec.start + timedelta(seconds=spec.duration_s)
        for f in _faults(log, scenario, scenario, spec.start, end, history_from=spec.start):
            last_moment = end - timedelta(seconds=INTERVAL_S[f.domain])
            if f.observable is not None and f.observable > last_moment:
                f.observable = None
            faults.append(f)
    span_end = max(s.start + timedelta(seconds=s.duration_s) for s in specs)
    with connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT alert_id, rule, domain, device_id, first_occurrence FROM alerts"
        ).fetchall()
    everything = [
        Alert(int(i), str(r), str(d), str(dev), f)  # type: ignore[call-overload, arg-type]
        for i, r, d, dev, f in rows
    ]
    # Scored: the rules of the injected kinds. Alerts of other rules (no fault of theirs was
    # injected, so none could be matched) are counted by rule, not scored.
    scored_rules = {RULE_OF_FAULT[(d, k)] for d, kinds in DEVICE_FAULTS.items() for k in kinds}
    ours = [a for a in everything if not a.device_id.startswith("soak-")]
    alerts = [a for a in ours if a.rule in scored_rules]
    other: dict[str, int] = defaultdict(int)
    for a in ours:
        if a.rule not in scored_rules:
            other[a.rule] += 1
    outside = [a for a in alerts if not any(w0 <= a.first < w1 for w0, w1 in windows)]
    result = _score(faults, alerts, span_end)
    result.update(
        precision_outside_fault_windows=_score(faults, outside, span_end)["precision"],
        alerts_in_fault_windows=len(alerts) - len(outside),
        alerts_on_soak_devices=len(everything) - len(ours),
        alerts_of_rules_not_injected=dict(sorted(other.items())),
        faults_injected=len(faults),
        faults_unobservable=sum(f.observable is None for f in faults),
    )
    return result
