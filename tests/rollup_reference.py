"""Test data for the rollups (simulator lamps plus gaps, resets, faults, late and duplicate
readings; meters with the same troubles) and the same figures computed in numpy from the raw
rows, independently of the SQL."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg

from ingest.rows import LIGHTING
from ingest.writer import Batch, BatchWriter
from simulators.lighting import LampFleet
from smartcity.cities import get_city
from smartcity.db import storage
from smartcity.rollups.lighting import DRIVER_BASE_FRACTION

CITY = get_city("astana")
TZ = ZoneInfo(CITY.tz_name)
# 18:00 UTC = 23:00 local: 36 h covers a local midnight (19:00 UTC) and a UTC midnight.
START = datetime(2026, 3, 10, 18, 0, tzinfo=UTC)
STEP = timedelta(minutes=10)
STEPS = 216
LOOKBACK = timedelta(hours=168)
FLOOR_W = 1.0

Row = tuple[Any, ...]  # test data: mixed column types


@dataclass
class LampData:
    rows: list[Row]  # everything that ends up stored (deduplicated by the writer)
    early: list[Row]  # written first
    late: list[Row]  # written after a maintain pass (hours late)


def lamp_data(count: int = 12, seed: int = 7) -> LampData:
    fleet = LampFleet(CITY, count, seed)
    rng = np.random.default_rng(seed)
    rows: list[Row] = []
    for step in range(STEPS):
        ts = START + step * STEP
        for i in range(count):
            p = fleet.reading(i, ts)
            rows.append(
                (
                    ts,
                    p["lamp_id"],
                    CITY.slug,
                    p["district"],
                    p["cabinet_id"],
                    p["lamp_on"],
                    p["dim_pct"],
                    p["power_w"],
                    p["voltage_v"],
                    p["current_a"],
                    p["power_factor"],
                    p["energy_wh"],
                    p["operating_hours"],
                    p["lamp_failure"],
                )
            )
    out: list[Row] = []
    for r in rows:
        ts, lamp = r[0], str(r[1])
        assert isinstance(ts, datetime)
        k = int((ts - START) / STEP)
        idx = int(lamp[-6:])
        if idx == 1 and 30 <= k < 70:  # a gap of almost 7 hours
            continue
        if rng.random() < 0.05:  # scattered missing readings
            continue
        row = list(r)
        if idx == 2 and k >= 100:  # register reset: counters restart near zero
            row[11] = float(row[11]) - float(rows[100 * count + 2][11]) + 5.0
            row[12] = float(row[12]) - float(rows[100 * count + 2][12]) + 0.01
        if idx == 3 and 40 <= k < 60:  # reports its own failure
            row[13] = True
        if idx == 4 and 10 <= k < 20 and row[5]:  # on, but drawing nothing: a dead driver
            row[7] = 0.3
        out.append(tuple(row))
    late = [r for r in out if int(str(r[1])[-6:]) == 5 and 80 <= int((r[0] - START) / STEP) < 90]
    early = [r for r in out if r not in late]
    dups = early[::17]  # written twice: the writer must keep one
    return LampData(rows=out, early=early + dups, late=late)


def write_lamps(conninfo: str, rows: list[Row]) -> None:
    with BatchWriter(conninfo) as writer:
        for i in range(0, len(rows), 500):
            batch = Batch.empty()
            batch.rows[LIGHTING.table] = rows[i : i + 500]
            writer.write(batch)


def _deltas(ts: np.ndarray, reg: np.ndarray) -> np.ndarray:
    out = np.zeros(len(reg))
    for j in range(1, len(reg)):
        if ts[j] - ts[j - 1] > LOOKBACK:
            continue
        out[j] = reg[j] - reg[j - 1] if reg[j] >= reg[j - 1] else reg[j]
    return out


def hour_of(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)


def local_day(hour: datetime) -> date:
    return hour.astimezone(TZ).date()


def lighting_reference(rows: list[Row]) -> dict[tuple[Any, ...], dict[str, float]]:
    """{(tier, level, key, bucket-or-day): figures} computed from the raw rows in numpy."""
    by_lamp: dict[str, list[Row]] = defaultdict(list)
    seen: set[tuple[object, object]] = set()
    for r in rows:
        if (r[0], r[1]) in seen:  # a duplicate: the (device, ts) key keeps the first
            continue
        seen.add((r[0], r[1]))
        by_lamp[str(r[1])].append(r)
    lamp_hour: dict[tuple[str, datetime], dict[str, float]] = {}
    meta: dict[str, tuple[str, str]] = {}
    for lamp, rs in by_lamp.items():
        rs.sort(key=lambda r: r[0])
        ts = np.array([r[0] for r in rs])
        de = _deltas(ts, np.array([float(r[11]) for r in rs]))
        dh = _deltas(ts, np.array([float(r[12]) for r in rs]))
        on = np.array([bool(r[5]) for r in rs])
        dim = np.array([np.float32(r[6]) for r in rs], dtype=np.float64)
        power = np.array([np.float32(r[7]) for r in rs], dtype=np.float64)
        fail = np.array([bool(r[13]) for r in rs])
        faulty = fail | (on & (dim > 0) & (power < FLOOR_W))
        frac = np.where(
            on & (dim > 0), DRIVER_BASE_FRACTION + (1 - DRIVER_BASE_FRACTION) * dim / 100, 1.0
        )
        full = de / frac
        meta[lamp] = (str(rs[-1][3]), str(rs[-1][4]))
        hours = np.array([hour_of(t) for t in ts])
        for h in sorted(set(hours)):
            m = hours == h
            lamp_hour[(lamp, h)] = {
                "readings": float(m.sum()),
                "lamps_reporting": 1.0,
                "lamps_on": float(on[m].any()),
                "lamps_faulty": float(faulty[m].any()),
                "lamp_hours_reporting": 1.0,
                "lamp_hours_faulty": float(faulty[m].any()),
                "energy_wh": float(de[m].sum()),
                "full_power_energy_wh": float(full[m].sum()),
                "burn_h": float(dh[m].sum()),
                "dim_pct_sum": float(dim[m & on].sum()),
                "on_readings": float((m & on).sum()),
            }
    lamp_day: dict[tuple[str, date], dict[str, float]] = {}
    for (lamp, h), f in lamp_hour.items():
        d = lamp_day.setdefault((lamp, local_day(h)), {k: 0.0 for k in f})
        for k, v in f.items():
            if k in ("lamps_on", "lamps_faulty"):
                d[k] = max(d[k], v)
            elif k == "lamps_reporting":
                d[k] = 1.0
            else:
                d[k] += v
    out: dict[tuple[Any, ...], dict[str, float]] = {}
    for tier, table in (("hourly", lamp_hour), ("daily", lamp_day)):
        for (lamp, t), f in table.items():
            district, cabinet = meta[lamp]
            out[(tier, "lamp", lamp, t)] = dict(f)
            for level, key in (("cabinet", cabinet), ("district", district), ("city", CITY.slug)):
                agg = out.setdefault((tier, level, key, t), {k: 0.0 for k in f})
                for k, v in f.items():
                    agg[k] += v
    return out


@dataclass
class MeterData:
    rows: list[Row]


METER_COLUMNS = (
    "ts",
    "meter_id",
    "city",
    "district",
    "kind",
    "energy_import_kwh",
    "power_w",
    "volume_m3",
    "flow_lph",
)


def meter_data(seed: int = 3) -> MeterData:
    rng = np.random.default_rng(seed)
    rows: list[Row] = []
    for m in range(10):
        kind = "electricity" if m < 6 else "water"
        district = CITY.districts[m % 3]
        reg = float(rng.uniform(100, 1000))
        for k in range(0, STEPS * 10 // 15):
            ts = START + k * timedelta(minutes=15)
            if m == 1 and 20 <= k < 40:  # gap
                continue
            if rng.random() < 0.05:
                continue
            rate = float(rng.uniform(0.1, 2.0))
            reg += rate * 0.25 if kind == "electricity" else rate * 0.01
            value: float | None = reg
            if m == 2 and k == 60:  # meter replaced: register restarts
                reg = 0.3
                value = reg
            if m == 7 and k == 50:  # a reading without its register
                value = None
            rows.append(
                (
                    ts,
                    f"ast-meter-{m:04d}",
                    CITY.slug,
                    district,
                    kind,
                    value if kind == "electricity" else None,
                    rate * 1000 if kind == "electricity" else None,
                    value if kind == "water" else None,
                    rate * 1000 / 24 if kind == "water" else None,
                )
            )
    return MeterData(rows)


def write_meters(conninfo: str, rows: list[Row]) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        mode = storage.read_mode(conn)
        storage.ensure_partitions(
            conn,
            mode,
            "meter_readings",
            {storage.day_of(r[0]) for r in rows},
        )
        with conn.transaction(), conn.cursor() as cur:
            cols = ", ".join(METER_COLUMNS)
            with cur.copy(f"COPY meter_readings ({cols}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)


def metering_reference(
    rows: list[Row],
) -> dict[tuple[Any, ...], dict[str, float]]:
    by_meter: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_meter[str(r[1])].append(r)
    meter_hour: dict[tuple[str, datetime], dict[str, float]] = {}
    meta: dict[str, tuple[str, str]] = {}
    for meter, rs in by_meter.items():
        rs.sort(key=lambda r: r[0])
        kind = str(rs[0][4])
        meta[meter] = (kind, str(rs[0][3]))
        col = 5 if kind == "electricity" else 7
        with_reg = [r for r in rs if r[col] is not None]
        ts = np.array([r[0] for r in with_reg])
        d = _deltas(ts, np.array([float(r[col]) for r in with_reg]))
        dh = np.array([hour_of(t) for t in ts])
        allh = np.array([hour_of(r[0]) for r in rs])
        inst = np.array([float(r[6] if kind == "electricity" else r[8]) for r in rs])
        for h in sorted(set(allh)):
            m = allh == h
            cons = float(d[dh == h].sum())
            meter_hour[(meter, h)] = {
                "readings": float(m.sum()),
                "meters_reporting": 1.0,
                "consumption": cons,
                "peak": float(np.float32(inst[m].max())),
            }
    out: dict[tuple[Any, ...], dict[str, float]] = {}
    for (meter, h), f in meter_hour.items():
        kind, district = meta[meter]
        out[("hourly", "meter", meter, kind, h)] = dict(f)
        day = out.setdefault(
            ("daily", "meter", meter, kind, local_day(h)),
            {"readings": 0.0, "meters_reporting": 1.0, "consumption": 0.0, "peak": 0.0},
        )
        day["readings"] += f["readings"]
        day["consumption"] += f["consumption"]
        day["peak"] = max(day["peak"], f["peak"])
        for level, key in (("district", district), ("city", CITY.slug)):
            agg = out.setdefault(
                ("hourly", level, key, kind, h),
                {"readings": 0.0, "meters_reporting": 0.0, "consumption": 0.0},
            )
            agg["readings"] += f["readings"]
            agg["meters_reporting"] += 1
            agg["consumption"] += f["consumption"]
    for (tier, level, key, kind, h), f in list(out.items()):
        if tier == "hourly" and level != "meter":
            # area peak demand: the hour's consumption as a mean rate (W or L/h)
            f["peak"] = f["consumption"] * 1000.0
            day = out.setdefault(
                ("daily", level, key, kind, local_day(h)),
                {"readings": 0.0, "meters_reporting": 0.0, "consumption": 0.0, "peak": 0.0},
            )
            day["readings"] += f["readings"]
            day["consumption"] += f["consumption"]
            day["peak"] = max(day["peak"], f["peak"])
    meters_day: dict[tuple[str, str, str, date], set[str]] = defaultdict(set)
    for tier, level, key, kind, t in out:
        if tier == "daily" and level == "meter":
            district = meta[key][1]
            meters_day[(kind, "district", district, t)].add(key)
            meters_day[(kind, "city", CITY.slug, t)].add(key)
    for (kind, level, key, t), ms in meters_day.items():
        out[("daily", level, key, kind, t)]["meters_reporting"] = float(len(ms))
    return out


def energy_in_range(rows: list[Row], start: datetime, end: datetime) -> dict[str, float]:
    """Wh per district of the readings with ts in [start, end), register deltas as above."""
    by_lamp: dict[str, list[Row]] = defaultdict(list)
    for r in {(r[0], r[1]): r for r in reversed(rows)}.values():
        by_lamp[str(r[1])].append(r)
    out: dict[str, float] = defaultdict(float)
    for rs in by_lamp.values():
        rs.sort(key=lambda r: r[0])
        ts = np.array([r[0] for r in rs])
        de = _deltas(ts, np.array([float(r[11]) for r in rs]))
        for r, d in zip(rs, de, strict=True):
            if start <= r[0] < end:
                out[str(r[3])] += float(d)
    return dict(out)
