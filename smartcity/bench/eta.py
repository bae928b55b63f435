"""`smartcity bench eta`: arrival predictions scored against the simulator's ground truth.

1. A fresh database (`smartcity_bench_eta` on the configured server), the simulator's network
   for Shymkent (`--routes`) imported as feed `shymkent`.
2. History: `--history-days` days of the same buses before the evaluated day. Their ground-truth
   stop visits are written to `stop_arrivals` as the tracker would have (the tracker's own
   error is a few seconds, see tests/test_transit_tracking.py; generating fixes for a week and
   tracking them would take this machine far longer than the day measured), then the learned
   run and dwell times are rebuilt from them (`segment_stats.rebuild`).
3. The evaluated day (a Tuesday, from 05:30 local, `--hours` long) with other random draws:
   every bus's GPS fixes every 10 s, fed to the tracker (`Tracker.process`, the ingest hook's
   code) in batches of `--batch-s` simulated seconds. Every `--sample-s` the current
   predictions (`transit_predictions`) are collected.
4. Each collected prediction is scored against when the bus really arrived: the Transit App
   ETA-accuracy buckets (DESIGN.md) by how far ahead the real arrival was (0–3, 3–6, 6–10,
   10–15 min); within a bucket a prediction is right if the bus came at most so much earlier
   (`early`) or later (`late`) than predicted. The score is the mean of the four bucket
   accuracies. The schedule-only baseline predicts the scheduled time for the same stop visits
   at the same moments.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from psycopg import sql
from rich.console import Console
from rich.table import Table

from smartcity.cities import get_city
from smartcity.db.connect import connect, with_database
from smartcity.db.migrate import migrate
from smartcity.settings import Settings
from smartcity.transit import segment_stats
from smartcity.transit.eta_accuracy import BUCKETS, MAX_HORIZON_S, overall
from smartcity.transit.gtfs_import import import_feed
from smartcity.transit.tracking_store import Position, Tracker

BENCH_DB = "smartcity_bench_eta"
CITY = "shymkent"
# A Tuesday: a working day with both rush hours; the history ends the day before.
EVAL_DAY = date(2026, 11, 24)
# The evaluated stretch starts before the first trips (06:00), as buses pull out.
EVAL_START_LOCAL_H = 5.5
# Ground-truth history only needs the buses' timelines, not dense fixes.
_HISTORY_FIX_INTERVAL_S = 60.0
Visit = tuple[str, str, int]  # trip_id, start_date YYYYMMDD, stop_sequence


@dataclass(slots=True)
class Scores:
    score: float
    buckets: dict[str, float]
    mae_s: float
    mae_buckets: dict[str, float]
    # Mean of real − predicted (s): positive when buses come later than predicted.
    bias_s: float


@dataclass(slots=True)
class EtaResult:
    params: dict[str, Any]
    predictions: int
    # Share of predictions whose error is within their own uncertainty_s (one sigma: ≈ 0.68
    # if the uncertainty is honest and the errors normal).
    within_1sd: float
    ours: Scores
    baseline: Scores
    stop_arrivals: int
    seconds: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "score": self.ours.score,
            **{f"bucket_{k}": v for k, v in self.ours.buckets.items()},
            "mae_s": self.ours.mae_s,
            **{f"mae_{k}_s": v for k, v in self.ours.mae_buckets.items()},
            "bias_s": self.ours.bias_s,
            "baseline_score": self.baseline.score,
            **{f"baseline_bucket_{k}": v for k, v in self.baseline.buckets.items()},
            "baseline_mae_s": self.baseline.mae_s,
            "baseline_bias_s": self.baseline.bias_s,
            **{f"baseline_mae_{k}_s": v for k, v in self.baseline.mae_buckets.items()},
            "mae_reduction": 1.0 - self.ours.mae_s / self.baseline.mae_s
            if self.baseline.mae_s > 0
            else 0.0,
            "predictions": self.predictions,
            "within_1sd": self.within_1sd,
            "stop_arrivals": self.stop_arrivals,
            "params": self.params,
            "seconds": self.seconds,
        }
        return out


def score(samples: list[tuple[float, float]]) -> Scores:
    """`samples`: (seconds until the real arrival, real − predicted arrival in seconds)."""
    buckets: dict[str, float] = {}
    maes: dict[str, float] = {}
    errors: list[float] = []
    for label, lo, hi, early, late in BUCKETS:
        errs = [e for h, e in samples if lo <= h < hi]
        errors += errs
        ok = sum(1 for e in errs if -early <= e <= late)
        buckets[label] = ok / len(errs) if errs else 0.0
        maes[label] = sum(abs(e) for e in errs) / len(errs) if errs else 0.0
    return Scores(
        score=overall(buckets),
        buckets=buckets,
        mae_s=sum(abs(e) for e in errors) / len(errors) if errors else 0.0,
        mae_buckets=maes,
        bias_s=sum(errors) / len(errors) if errors else 0.0,
    )


def _fresh_database(settings: Settings, database: str) -> str:
    conninfo = with_database(settings.database_conninfo, database)
    # Dropped from the server's maintenance database: the configured one may not exist yet.
    with connect(with_database(conninfo, "postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )
    migrate(settings.model_copy(update={"database_url": conninfo}))
    return conninfo


def _truth_row(g: dict[str, object]) -> tuple[object, ...]:
    return (
        CITY,
        str(g["trip_id"]),
        datetime.strptime(str(g["start_date"]), "%Y%m%d").date(),
        int(str(g["stop_sequence"])),
        str(g["stop_id"]),
        str(g["route_id"]),
        str(g["vehicle_id"]),
        CITY,
        datetime.fromisoformat(str(g["actual_arrival"])),
        datetime.fromisoformat(str(g["actual_departure"])),
        datetime.fromisoformat(str(g["scheduled_arrival"])),
    )


def run(
    settings: Settings,
    *,
    routes: int,
    buses: int,
    history_days: int,
    hours: float,
    batch_s: float,
    sample_s: float,
    seed: int,
    faults: dict[str, float] | None = None,
    database: str = BENCH_DB,
    progress: Callable[[str], None] = lambda _: None,
) -> EtaResult:
    """Build `database` afresh (dropping it first), load history, run the day, score it."""
    # The simulators are a process package; the benchmark command may import them.
    from simulators.gtfs import generate, read_zip, write_zip
    from simulators.transit import BusFleet

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    city = get_city(CITY)
    conninfo = _fresh_database(settings, database)
    with tempfile.TemporaryDirectory() as tmp:
        zip_path = Path(tmp) / f"{CITY}.zip"
        write_zip(generate(city, seed=seed, routes=routes), zip_path)
        import_feed(conninfo, zip_path, feed_id=CITY)
        network = read_zip(zip_path)
    seconds["setup"] = time.perf_counter() - t0

    local_start = datetime(EVAL_DAY.year, EVAL_DAY.month, EVAL_DAY.day, tzinfo=city.tz)
    eval_start = (local_start + timedelta(hours=EVAL_START_LOCAL_H)).astimezone(UTC)
    t0 = time.perf_counter()
    history: list[tuple[object, ...]] = []
    if history_days > 0:
        progress(f"history: {history_days} days of {buses} buses")
        hist_start = (local_start - timedelta(days=history_days)).astimezone(UTC)
        hist_fleet = BusFleet(
            city,
            network,
            buses,
            seed=seed + 1,
            ground_truth=lambda g: history.append(_truth_row(g)),
        )
        end_s = (local_start.astimezone(UTC) - hist_start).total_seconds()
        for t_s, _, _ in hist_fleet.messages(hist_start, "city", _HISTORY_FIX_INTERVAL_S):
            if t_s >= end_s:
                break
    with connect(conninfo) as conn:
        with (
            conn.cursor() as cur,
            cur.copy(
                """
            COPY stop_arrivals (feed_id, trip_id, start_date, stop_sequence, stop_id, route_id,
                vehicle_id, city, arrived_at, departed_at, scheduled_arrival) FROM STDIN
            """
            ) as copy,
        ):
            for visit_row in history:
                copy.write_row(visit_row)
        segment_stats.rebuild(
            conn, CITY, str(city.tz), local_start.astimezone(UTC) - timedelta(days=history_days)
        )
        conn.commit()
    seconds["history"] = time.perf_counter() - t0

    progress(f"service day: {hours:g} h of {buses} buses, tracked and predicted")
    t0 = time.perf_counter()
    truth: dict[Visit, float] = {}

    def keep(g: dict[str, object]) -> None:
        key = (str(g["trip_id"]), str(g["start_date"]), int(str(g["stop_sequence"])))
        truth[key] = datetime.fromisoformat(str(g["actual_arrival"])).timestamp()

    fleet = BusFleet(city, network, buses, seed=seed, ground_truth=keep, fault_rates=faults)
    tracker = Tracker()
    # (made at, visit, predicted, scheduled)
    collected: list[tuple[float, Visit, float, float, float]] = []
    base = eval_start.timestamp()
    end_s = hours * 3600.0
    batch: list[Position] = []
    edge = batch_s
    next_sample = sample_s
    with connect(conninfo, autocommit=True) as conn:
        for t_s, _, payload in fleet.messages(eval_start, "city"):
            while t_s >= edge:
                if batch:
                    tracker.process(conn, batch, now=base + edge)
                    batch = []
                if edge >= next_sample:
                    now = base + edge
                    for r in conn.execute(
                        """
                        SELECT trip_id, start_date, stop_sequence, predicted_arrival,
                               scheduled_arrival, uncertainty_s
                        FROM transit_predictions WHERE stop_sequence > 1
                        """
                    ):
                        visit = (str(r[0]), r[1].strftime("%Y%m%d"), int(r[2]))  # type: ignore[attr-defined, call-overload]
                        collected.append(
                            (now, visit, r[3].timestamp(), r[4].timestamp(), float(r[5]))  # type: ignore[attr-defined, arg-type]
                        )
                    next_sample += sample_s
                edge += batch_s
            if t_s >= end_s:
                break
            b = orjson.loads(payload)
            batch.append(
                Position(
                    b["vehicle_id"],
                    CITY,
                    b["ts"] / 1000,
                    b["trip_id"],
                    b["start_date"],
                    b["lat"],
                    b["lon"],
                    b["speed_mps"],
                )
            )
        row = conn.execute(
            "SELECT count(*) FROM stop_arrivals WHERE arrived_at >= %s", (eval_start,)
        ).fetchone()
        observed = int(row[0]) if row else 0  # type: ignore[call-overload]
    seconds["service_day"] = time.perf_counter() - t0

    ours: list[tuple[float, float]] = []
    sched: list[tuple[float, float]] = []
    covered = 0
    for made_at, visit, predicted, scheduled, sd in collected:
        actual = truth.get(visit)
        if actual is None:
            continue  # the day ended before the bus got there
        ahead = actual - made_at
        if 0 <= ahead < MAX_HORIZON_S:
            ours.append((ahead, actual - predicted))
            sched.append((ahead, actual - scheduled))
            covered += abs(actual - predicted) <= sd
    return EtaResult(
        params={
            "routes": routes,
            "buses": buses,
            "history_days": history_days,
            "hours": hours,
            "batch_s": batch_s,
            "sample_s": sample_s,
            "seed": seed,
            "faults": faults or {},
        },
        predictions=len(ours),
        within_1sd=covered / len(ours) if ours else 0.0,
        ours=score(ours),
        baseline=score(sched),
        stop_arrivals=observed,
        seconds=seconds,
    )


def command(
    routes: Annotated[int, typer.Option(min=1, help="Routes in the generated network.")] = 6,
    buses: Annotated[int, typer.Option(min=1, help="Buses in service.")] = 24,
    history_days: Annotated[
        int, typer.Option(min=0, help="Days of history before the evaluated day.")
    ] = 7,
    hours: Annotated[
        float, typer.Option(min=0.1, help="Hours of the evaluated day, from 05:30 local.")
    ] = 8.0,
    batch_s: Annotated[
        float, typer.Option(min=1, help="Simulated seconds of fixes per tracker batch.")
    ] = 30.0,
    sample_s: Annotated[
        float, typer.Option(min=1, help="Simulated seconds between collections of predictions.")
    ] = 60.0,
    seed: Annotated[int, typer.Option(help="Seed of the network and the buses.")] = 7,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            "--fault",
            help="Inject a fault into the evaluated day: KIND=RATE per bus per day, e.g. "
            "gps_dropout=4 off_route_detour=2 (docs/simulators.md lists the kinds).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Bus arrival predictions vs the simulator's ground truth (Transit App ETA buckets),
    with a schedule-only baseline from the same run."""
    from simulators.faults import TRANSIT_FAULTS, parse_rates

    settings = Settings()
    console = Console(stderr=as_json)
    for spec in fault or []:
        if spec.partition("=")[0].removeprefix("transit.") not in TRANSIT_FAULTS:
            raise typer.BadParameter(
                f"{spec!r}: the kinds here are {', '.join(TRANSIT_FAULTS)} (KIND=RATE)",
                param_hint="--fault",
            )
    try:
        faults = parse_rates("transit", fault or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--fault") from None
    result = run(
        settings,
        routes=routes,
        buses=buses,
        history_days=history_days,
        hours=hours,
        batch_s=batch_s,
        sample_s=sample_s,
        seed=seed,
        faults=faults,
        progress=lambda msg: console.log(msg),
    )
    if as_json:
        print(json.dumps(result.as_json()))
        return
    table = Table(title=f"ETA accuracy ({result.predictions} predictions scored)")
    table.add_column("")
    table.add_column("score")
    for label, *_ in BUCKETS:
        table.add_column(f"{label.replace('_', '–')} min")
    table.add_column("MAE s")
    for name, s in (("tracker + learned times", result.ours), ("schedule only", result.baseline)):
        table.add_row(
            name,
            f"{s.score:.3f}",
            *(f"{s.buckets[k]:.3f}" for k, *_ in BUCKETS),
            f"{s.mae_s:.1f}",
        )
    console.print(table)
    console.print(asdict(result.ours)["mae_buckets"])


# -- the soak's score (`smartcity soak`, smartcity/soak/scores.py) -------------------------------


def score_soak(
    conninfo: str,
    specs: list[Any],
    root: str,
    windows: list[tuple[datetime, datetime]],
) -> dict[str, Any]:
    """Predictions the ingest's tracker made during a soak (sampled into `soak_predictions`
    by `smartcity.soak.truth.PredictionSampler`) against the simulators' ground-truth
    arrivals, with this benchmark's pairing (a prediction counts when the real arrival is 0 to
    15 min after it was sampled) and `score` (the Transit App buckets). The soak has no
    history, so the learned times are only what the run itself observed; the schedule-only
    baseline is scored from the same samples. Samples taken inside a system fault's window
    (`windows`, event time) are scored apart as well (`score_outside_fault_windows`)."""
    from smartcity.soak.truth import PREDICTIONS_TABLE, read_arrivals

    del root
    truth: dict[tuple[str, str, str, int], float] = {}
    in_run = 0  # arrivals past a first stop during the run (the rest: the walk's tail)
    for spec in specs:
        if not spec.arrivals_path:
            continue
        start_s = spec.start.timestamp()
        end_s = start_s + spec.duration_s
        for g in read_arrivals(spec.arrivals_path):
            key = (spec.fleet.city, g["trip_id"], g["start_date"], int(g["stop_sequence"]))
            truth[key] = datetime.fromisoformat(g["actual_arrival"]).timestamp()
            # (the simulated buses' earlier trips of the day are reported too, at their start;
            # first stops are never predicted)
            in_run += start_s <= truth[key] < end_s and key[3] > 1
    with connect(conninfo) as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT made_at, feed_id, trip_id, start_date, stop_sequence, predicted_arrival, "
                "scheduled_arrival FROM {}"
            ).format(sql.Identifier(PREDICTIONS_TABLE))
        ).fetchall()
        observed = conn.execute("SELECT count(*) FROM stop_arrivals").fetchone()
    ours: list[tuple[float, float]] = []
    sched: list[tuple[float, float]] = []
    ours_outside: list[tuple[float, float]] = []
    samples: set[float] = set()
    for made, feed, trip, day, seq, predicted, scheduled in rows:
        assert isinstance(made, datetime)
        assert isinstance(predicted, datetime)
        key = (str(feed), str(trip), day.strftime("%Y%m%d"), int(seq))  # type: ignore[attr-defined, call-overload]
        actual = truth.get(key)
        if actual is None:
            continue  # not a simulated trip, or the bus did not get there in the walk
        made_s = made.timestamp()
        samples.add(made_s)
        ahead = actual - made_s
        if 0 <= ahead < MAX_HORIZON_S:
            ours.append((ahead, actual - predicted.timestamp()))
            if isinstance(scheduled, datetime):
                sched.append((ahead, actual - scheduled.timestamp()))
            if not any(w0 <= made < w1 for w0, w1 in windows):
                ours_outside.append((ahead, actual - predicted.timestamp()))
    mine, base = score(ours), score(sched)
    counts = {label: sum(1 for h, _ in ours if lo <= h < hi) for label, lo, hi, _e, _l in BUCKETS}
    # `score` counts a bucket without predictions as 0 (never the case in the benchmark's
    # 8-hour day; in a short soak with few buses in service it can be): say so beside it.
    empty = [label for label, n in counts.items() if n == 0]
    filled = [v for k, v in mine.buckets.items() if k not in empty]
    return {
        "score": round(mine.score, 4),
        "empty_buckets": empty,
        "score_of_filled_buckets": round(sum(filled) / len(filled), 4) if filled else None,
        **{f"bucket_{k}": round(v, 4) for k, v in mine.buckets.items()},
        **{f"predictions_{k}": n for k, n in counts.items()},
        "mae_s": round(mine.mae_s, 1),
        "bias_s": round(mine.bias_s, 1),
        "baseline_score": round(base.score, 4),
        "score_outside_fault_windows": round(score(ours_outside).score, 4),
        "predictions": len(ours),
        "prediction_samples": len(samples),
        "truth_arrivals": len(truth),
        "truth_arrivals_in_run": in_run,
        "stop_arrivals_observed": int(observed[0]) if observed else 0,  # type: ignore[call-overload]
    }
