"""Transit test data and the transit rollups computed in Python (numpy) from the raw rows.

The data: stop visits of a generated network's trips around the local midnight of Astana
(19:00 UTC), with delays that drift along each trip, missing departures, skipped stops,
visits recorded twice (first without the departure, as the tracker does) and visits held
back to arrive late; and sampled predictions for some of the visits.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from simulators.gtfs import Network, generate, write_zip
from smartcity.cities import get_city
from smartcity.rollups.transit import HEADWAY_BAND
from smartcity.transit.eta_accuracy import BUCKETS, bucket_of, is_accurate
from smartcity.transit.gtfs_import import import_feed
from smartcity.transit.tracking_store import ARRIVALS_UPSERT
from tests.dashboard_data import around_the_clock

CITY = get_city("astana")
SERVICE_DAY = date(2026, 3, 10)  # a Tuesday
# Trips leaving from 21:00 to 25:30 local (GTFS time): their visits cross local midnight.
FIRST_DEP_S, LAST_DEP_S = 21 * 3600, 25 * 3600 + 1800

Visit = tuple[Any, ...]  # the ARRIVALS_UPSERT parameters
Sample = tuple[Any, ...]  # feed, trip, start_date, seq, horizon, city, route, made_at, predicted


@dataclass
class TransitData:
    early: list[Visit] = field(default_factory=list)  # written first (with repeats)
    late: list[Visit] = field(default_factory=list)  # held back
    early_samples: list[Sample] = field(default_factory=list)
    late_samples: list[Sample] = field(default_factory=list)


def network() -> Network:
    return around_the_clock(generate(CITY, seed=5, routes=2))


def import_network(conninfo: str, workdir: Path) -> Network:
    net = network()
    path = workdir / "astana.zip"
    write_zip(net, path)
    import_feed(conninfo, path, feed_id=CITY.slug)
    return net


def transit_data(net: Network, seed: int = 11) -> TransitData:
    rng = np.random.default_rng(seed)
    origin = datetime.combine(SERVICE_DAY, datetime.min.time(), CITY.tz)
    weekday = {s for s, days in net.services.items() if SERVICE_DAY.weekday() in days}
    out = TransitData()
    for trip in sorted(net.trips.values(), key=lambda t: t.trip_id):
        if trip.service_id not in weekday or not FIRST_DEP_S <= trip.departure_s[0] <= LAST_DEP_S:
            continue
        delay = float(rng.normal(60, 120))
        for k, stop_id in enumerate(trip.stop_ids):
            delay += float(rng.normal(5, 40))
            if 0 < k < len(trip.stop_ids) - 1 and rng.random() < 0.05:
                continue  # the tracker missed this stop
            scheduled = origin + timedelta(seconds=trip.arrival_s[k])
            arrived = scheduled + timedelta(seconds=delay)
            dwell = max(trip.departure_s[k] - trip.arrival_s[k] + float(rng.normal(8, 10)), 0.0)
            departed: datetime | None = arrived + timedelta(seconds=dwell)
            if k == len(trip.stop_ids) - 1 or rng.random() < 0.08:
                departed = None
            row = (CITY.slug, trip.trip_id, SERVICE_DAY, k + 1, stop_id, trip.route_id,
                   f"bus-{trip.block_id}", CITY.slug, arrived, departed, scheduled)  # fmt: skip
            late = rng.random() < 0.06
            target = out.late if late else out.early
            if departed is not None and rng.random() < 0.15:
                target.append((*row[:9], None, row[10]))  # seen standing, then leaving
            target.append(row)
            if rng.random() < 0.05:
                target.append(row)  # the same fixes twice
            if rng.random() < 0.4:
                samples = out.late_samples if late else out.early_samples
                for label, lo, hi, _, _ in BUCKETS:
                    if rng.random() < 0.6:
                        ahead = float(rng.uniform(lo, hi + 60))  # some land in the next bucket
                        made = arrived - timedelta(seconds=ahead)
                        predicted = arrived - timedelta(seconds=float(rng.normal(20, 120)))
                        samples.append((CITY.slug, trip.trip_id, SERVICE_DAY, k + 1, label,
                                        CITY.slug, trip.route_id, made, predicted))  # fmt: skip
    return out


def write(conninfo: str, visits: list[Visit], samples: list[Sample]) -> None:
    """As the tracker writes them: arrivals by its upsert, samples as rows."""
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        for v in visits:  # in order: a repeat must follow its first sighting
            cur.execute(ARRIVALS_UPSERT, v)
        cur.executemany(
            "INSERT INTO transit_eta_samples (feed_id, trip_id, start_date, stop_sequence, "
            "horizon, city, route_id, made_at, predicted_arrival) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            samples,
        )


@dataclass(frozen=True)
class Gtfs:
    direction: dict[str, int]
    shape_m: dict[tuple[str, int], float]
    seq_range: dict[str, tuple[int, int]]


def read_gtfs(conninfo: str) -> Gtfs:
    with psycopg.connect(conninfo) as conn:
        trips = conn.execute("SELECT trip_id, direction_id FROM gtfs_trips").fetchall()
        times = conn.execute(
            "SELECT trip_id, stop_sequence, dist_m FROM gtfs_stop_times"
        ).fetchall()
    seqs: dict[str, list[int]] = defaultdict(list)
    for t, s, _ in times:
        seqs[t].append(s)
    return Gtfs(
        {t: -1 if d is None else d for t, d in trips},
        {(t, s): float(d) for t, s, d in times},
        {t: (min(v), max(v)) for t, v in seqs.items()},
    )


def read_arrivals(conninfo: str) -> list[dict[str, Any]]:
    with psycopg.connect(conninfo) as conn:
        cur = conn.execute(
            "SELECT feed_id, trip_id, start_date, stop_sequence, stop_id, route_id, city, "
            "arrived_at, departed_at, scheduled_arrival FROM stop_arrivals"
        )
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, r, strict=True)) for r in cur]


def read_samples(conninfo: str) -> list[dict[str, Any]]:
    with psycopg.connect(conninfo) as conn:
        cur = conn.execute("SELECT * FROM transit_eta_samples")
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, r, strict=True)) for r in cur]


STOP_FIGURES = (
    "arrivals", "early", "on_time", "late", "delay_sum_s", "headways", "headways_regular",
    "headways_bunched", "headways_gap", "headway_sum_s", "headway_sched_sum_s",
    "headway_dev_sum_s", "headway_dev_sq_sum_s", "dwells", "dwell_sum_s", "dwell_sq_sum_s",
    "runs", "run_sum_s", "run_sq_sum_s", "lost_sum_s",
)  # fmt: skip
ETA_FIGURES = ("samples", "accurate", "err_sum_s", "abs_err_sum_s")


def _s(td: timedelta) -> float:
    return td.total_seconds()


def _hour(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def stop_reference(
    arrivals: list[dict[str, Any]],
    gtfs: Gtfs,
    *,
    lookback_s: float,
    early_s: float,
    late_s: float,
) -> dict[tuple[Any, ...], dict[str, float]]:
    """transit_hourly and transit_daily, keyed (tier, city, feed, route, stop, from_stop, t),
    with `dist_m` and (hourly) `hour_of_week` among the figures."""
    low, high = HEADWAY_BAND
    per: dict[int, dict[str, Any]] = defaultdict(dict)  # index → headway/run/dwell
    # Headways: consecutive arrivals of a route and direction at a stop.
    at_stop: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for i, a in enumerate(arrivals):
        at_stop[(a["feed_id"], a["route_id"], gtfs.direction.get(a["trip_id"], -1),
                 a["stop_id"])].append(i)  # fmt: skip
    for idx in at_stop.values():
        idx.sort(key=lambda i: (arrivals[i]["arrived_at"], arrivals[i]["trip_id"]))
        for p, i in pairwise(idx):
            a, b = arrivals[p], arrivals[i]
            if _s(b["arrived_at"] - a["arrived_at"]) <= lookback_s and (
                b["scheduled_arrival"] > a["scheduled_arrival"]
            ):
                per[i]["hw"] = _s(b["arrived_at"] - a["arrived_at"])
                per[i]["hs"] = _s(b["scheduled_arrival"] - a["scheduled_arrival"])
    # Runs: consecutive observed visits of a trip.
    of_trip: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for i, a in enumerate(arrivals):
        of_trip[(a["feed_id"], a["trip_id"], a["start_date"])].append(i)
    for idx in of_trip.values():
        idx.sort(key=lambda i: arrivals[i]["stop_sequence"])
        for p, i in pairwise(idx):
            a, b = arrivals[p], arrivals[i]
            if _s(b["arrived_at"] - a["arrived_at"]) > lookback_s:
                continue
            per[i]["from"] = a["stop_id"]
            per[i]["seg_m"] = (
                gtfs.shape_m[(b["trip_id"], b["stop_sequence"])]
                - gtfs.shape_m[(a["trip_id"], a["stop_sequence"])]
            )
            if a["departed_at"] is not None and b["arrived_at"] > a["departed_at"]:
                per[i]["run"] = _s(b["arrived_at"] - a["departed_at"])
                per[i]["lost"] = _s(b["arrived_at"] - a["arrived_at"]) - _s(
                    b["scheduled_arrival"] - a["scheduled_arrival"]
                )
    groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for i, a in enumerate(arrivals):
        group = (a["city"], a["feed_id"], a["route_id"], a["stop_id"], per[i].get("from") or "")
        bucket = _hour(a["arrived_at"])
        groups[("hourly", *group, bucket)].append(i)
        groups[("daily", *group, bucket.astimezone(CITY.tz).date())].append(i)
    out: dict[tuple[Any, ...], dict[str, float]] = {}
    for key, idx in groups.items():
        delay = np.array([_s(arrivals[i]["arrived_at"] - arrivals[i]["scheduled_arrival"])
                          for i in idx])  # fmt: skip
        hw = np.array([per[i]["hw"] for i in idx if "hw" in per[i]], dtype=float)
        hs = np.array([per[i]["hs"] for i in idx if "hw" in per[i]], dtype=float)
        run = np.array([per[i]["run"] for i in idx if "run" in per[i]], dtype=float)
        lost = np.array([per[i]["lost"] for i in idx if "run" in per[i]], dtype=float)
        seg = [float(per[i]["seg_m"] or 0) for i in idx if "seg_m" in per[i]]
        dwell = []
        for i in idx:
            a = arrivals[i]
            first, last = gtfs.seq_range[a["trip_id"]]
            dep = a["departed_at"]
            if first < a["stop_sequence"] < last and dep is not None and dep >= a["arrived_at"]:
                dwell.append(_s(dep - a["arrived_at"]))
        dw = np.array(dwell, dtype=float)
        figs = {
            "arrivals": len(idx),
            "early": int(np.sum(delay < -early_s)),
            "on_time": int(np.sum((delay >= -early_s) & (delay <= late_s))),
            "late": int(np.sum(delay > late_s)),
            "delay_sum_s": float(np.sum(delay)),
            "headways": len(hw),
            "headways_regular": int(np.sum((hw >= low * hs) & (hw <= high * hs))),
            "headways_bunched": int(np.sum(hw < low * hs)),
            "headways_gap": int(np.sum(hw > high * hs)),
            "headway_sum_s": float(np.sum(hw)),
            "headway_sched_sum_s": float(np.sum(hs)),
            "headway_dev_sum_s": float(np.sum(hw - hs)),
            "headway_dev_sq_sum_s": float(np.sum((hw - hs) ** 2)),
            "dwells": len(dw),
            "dwell_sum_s": float(np.sum(dw)),
            "dwell_sq_sum_s": float(np.sum(dw**2)),
            "runs": len(run),
            "run_sum_s": float(np.sum(run)),
            "run_sq_sum_s": float(np.sum(run**2)),
            "lost_sum_s": float(np.sum(lost)),
            "dist_m": max((s for s in seg if s > 0), default=float("nan")),
        }
        if key[0] == "hourly":
            local = key[-1].astimezone(CITY.tz)
            figs["hour_of_week"] = local.weekday() * 24 + local.hour
        out[key] = figs
    return out


def eta_reference(
    arrivals: list[dict[str, Any]], samples: list[dict[str, Any]]
) -> dict[tuple[Any, ...], dict[str, float]]:
    """transit_eta_hourly and _daily, keyed (tier, city, feed, route, horizon, t)."""
    visit = {(a["feed_id"], a["trip_id"], a["start_date"], a["stop_sequence"]): a for a in arrivals}
    errs: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for s in samples:
        a = visit.get((s["feed_id"], s["trip_id"], s["start_date"], s["stop_sequence"]))
        if a is None:
            continue
        label = bucket_of(_s(a["arrived_at"] - s["made_at"]))
        if label is None:
            continue
        err = _s(a["arrived_at"] - s["predicted_arrival"])
        group = (a["city"], a["feed_id"], a["route_id"], label)
        bucket = _hour(a["arrived_at"])
        errs[("eta_hourly", *group, bucket)].append(err)
        errs[("eta_daily", *group, bucket.astimezone(CITY.tz).date())].append(err)
    out = {}
    for key, values in errs.items():
        e = np.array(values)
        out[key] = {
            "samples": len(e),
            "accurate": sum(is_accurate(key[4], float(x)) for x in e),
            "err_sum_s": float(np.sum(e)),
            "abs_err_sum_s": float(np.sum(np.abs(e))),
        }
    return out
