"""`smartcity bench query`: rollup queries against the same answers from raw rows.

History: `--lamps` lamps of Astana over `--days` whole local days, one reading each
`--interval-min` minutes (default 30 days × 10,000 lamps × hourly = 7.2 M rows; every 15 min
would be 28.8 M rows, too long a load for this 2-core machine, and each raw query alone
several minutes). It comes from the simulators' backfill (`simulators.backfill.history`, with
lamp faults) through the ingest's decoder and writer, like `smartcity backfill`, and is kept
in its own database (`smartcity_bench_query` on the configured server), reused while the
parameters stay the same.

Measured side by side: the district-energy query (30 days, per district) and a city-KPI
query (energy, dimming saving, availability over 30 days), each through the query layer
(which picks the daily rollups) and forced onto the raw tier; both answers are compared.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import psycopg
import typer
from psycopg import AsyncConnection
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from smartcity import topics
from smartcity.cities import get_city
from smartcity.db import storage
from smartcity.db.connect import connect, with_database
from smartcity.db.migrate import migrate
from smartcity.errors import PayloadError
from smartcity.queries.energy import LightingTotals, lighting_totals
from smartcity.queries.tiers import Segment, Tier
from smartcity.rollups import lighting
from smartcity.rollups.maintain import REFRESH_WORK_MEM, local_day_span, zones
from smartcity.rollups.registers import DEFAULT_LOOKBACK_H
from smartcity.settings import Settings

BENCH_DB = "smartcity_bench_query"
CITY = "astana"
# A fixed month, so every run measures the same nights.
FIRST_DAY = date(2026, 10, 1)
# Lamp faults per lamp per simulated day, so availability and MTTR have something to show.
FAULTS = ("lamp_failure=0.02", "day_burning=0.01")
_TOPIC_ROOT = "city"
_MAX_PAYLOAD_BYTES = 65536
_BATCH_ROWS = 5000
HOUR = timedelta(hours=1)


def _load(conninfo: str, lamps: int, days: int, interval: timedelta, console: Console) -> None:
    """The simulators' backfill (`simulators.backfill.history`) through the ingest's decoder
    and writer — the path `smartcity backfill` takes — then the rollups, day by day."""
    from ingest.decode import decode
    from ingest.writer import Batch, BatchWriter
    from simulators.backfill import history
    from simulators.scenario import ScenarioOptions

    city = get_city(CITY)
    start, _ = local_day_span(FIRST_DAY, city.tz)
    _, end = local_day_span(FIRST_DAY + timedelta(days=days - 1), city.tz)
    with connect(conninfo, autocommit=True) as conn:
        conn.execute("TRUNCATE lighting_readings, lighting_hourly, lighting_daily, rollup_state")
    options = ScenarioOptions(
        lamps=lamps,
        lighting_city=CITY,
        lamp_interval_s=interval.total_seconds(),
        seed=42,
        faults=list(FAULTS),
    )
    stream = history(options, days=days, start=start, topic_root=_TOPIC_ROOT)
    batch = Batch.empty()
    with (
        BatchWriter(conninfo) as writer,
        Progress(console=console, transient=True) as progress,
    ):
        task = progress.add_task("backfill (simulated days)", total=days * 86400.0)
        for t_s, topic, payload in stream:
            try:
                decoded = decode(
                    topics.parse_inbound(_TOPIC_ROOT, topic),
                    payload,
                    max_payload_bytes=_MAX_PAYLOAD_BYTES,
                )
            except PayloadError:
                continue  # status messages and the like: not lamp readings
            for table, rows in decoded.rows.items():
                batch.rows.setdefault(table, []).extend(rows)
            batch.sightings.extend(decoded.sightings)
            if batch.row_count() >= _BATCH_ROWS:
                writer.write(batch)
                batch = Batch.empty()
                progress.update(task, completed=t_s)
        if batch.row_count():
            writer.write(batch)
    with connect(conninfo, autocommit=True) as conn:
        conn.execute("ANALYZE lighting_readings")
        utc_days = sorted(
            {storage.day_of(start + timedelta(hours=h)) for h in range(int((end - start) / HOUR))}
        )
        lookback = timedelta(hours=DEFAULT_LOOKBACK_H)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("rolling up (hourly)", total=len(utc_days))
            for day in utc_days:
                a = datetime.combine(day, datetime.min.time(), UTC)
                with conn.transaction():
                    conn.execute("SELECT set_config('work_mem', %s, true)", (REFRESH_WORK_MEM,))
                    lighting.refresh_hourly(conn, a, a + timedelta(days=1), lookback)
                progress.advance(task)
        last = FIRST_DAY + timedelta(days=days - 1)
        with conn.transaction():
            lighting.refresh_daily(
                conn, city.tz_name, zones()[city.tz_name], FIRST_DAY, last, start, end
            )
            conn.execute(
                "INSERT INTO rollup_state VALUES ('lighting_readings', now(), now()) "
                "ON CONFLICT (source) DO UPDATE SET watermark = now(), refreshed_at = now()"
            )
        conn.execute("ANALYZE lighting_hourly")
        conn.execute("ANALYZE lighting_daily")
        conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (params text PRIMARY KEY)")
        conn.execute("TRUNCATE bench_meta")
        conn.execute("INSERT INTO bench_meta VALUES (%s)", (_params(lamps, days, interval),))


def _params(lamps: int, days: int, interval: timedelta) -> str:
    return f"backfill lamps={lamps} days={days} interval_s={int(interval.total_seconds())}"


def _loaded(conninfo: str, lamps: int, days: int, interval: timedelta) -> bool:
    with connect(conninfo, autocommit=True) as conn:
        try:
            row = conn.execute("SELECT params FROM bench_meta").fetchone()
        except psycopg.errors.UndefinedTable:
            return False
    return row is not None and row[0] == _params(lamps, days, interval)


Query = Callable[[AsyncConnection[tuple[object, ...]]], Awaitable[list[LightingTotals]]]


async def _time(
    conninfo: str, query: Query, runs: int, *, warm_up: bool
) -> tuple[list[float], list[LightingTotals]]:
    async with await AsyncConnection.connect(conninfo) as conn:
        await conn.set_autocommit(True)
        # The same memory for both sides, enough that the raw side's sorts stay in memory.
        await conn.execute("SELECT set_config('work_mem', %s, false)", (REFRESH_WORK_MEM,))
        answer: list[LightingTotals] = []
        if warm_up:  # plans and caches; the raw side is too slow to repeat and gains little
            answer = await query(conn)
        times: list[float] = []
        for _ in range(runs):
            t0 = time.perf_counter()
            answer = await query(conn)
            times.append((time.perf_counter() - t0) * 1000)
    return times, answer


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _same(a: list[LightingTotals], b: list[LightingTotals]) -> bool:
    return [x.key for x in a] == [y.key for y in b] and all(
        abs(x.energy_wh - y.energy_wh) <= 1e-6 * max(1.0, abs(y.energy_wh))
        and abs(x.full_power_energy_wh - y.full_power_energy_wh)
        <= 1e-6 * max(1.0, abs(y.full_power_energy_wh))
        and x.lamp_hours_reporting == y.lamp_hours_reporting
        and x.lamp_hours_faulty == y.lamp_hours_faulty
        for x, y in zip(a, b, strict=True)
    )


def command(
    lamps: Annotated[int, typer.Option(min=1, help="Lamps of history.")] = 10_000,
    days: Annotated[int, typer.Option(min=1, help="Local days of history.")] = 30,
    interval_min: Annotated[
        float, typer.Option(min=1, help="Minutes between a lamp's readings.")
    ] = 60.0,
    runs: Annotated[int, typer.Option(min=1, help="Timed runs of each rollup query.")] = 200,
    raw_runs: Annotated[int, typer.Option(min=1, help="Timed runs of each raw query.")] = 3,
    reload: Annotated[bool, typer.Option(help="Regenerate the history even if present.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """District-energy and city-KPI queries over 30 days: rollups vs raw rows, side by side."""
    settings = Settings()
    console = Console(stderr=as_json)
    conninfo = with_database(settings.database_conninfo, BENCH_DB)
    migrate(settings.model_copy(update={"database_url": conninfo}))
    interval = timedelta(minutes=interval_min)
    load_s = None
    if reload or not _loaded(conninfo, lamps, days, interval):
        t0 = time.perf_counter()
        _load(conninfo, lamps, days, interval, console)
        load_s = time.perf_counter() - t0
    with connect(conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM lighting_readings").fetchone()
        raw_rows = int(row[0]) if row else 0  # type: ignore[call-overload]
    tz = get_city(CITY).tz
    start, _ = local_day_span(FIRST_DAY, tz)
    _, end = local_day_span(FIRST_DAY + timedelta(days=days - 1), tz)
    raw_plan = [Segment(Tier.RAW, start, end)]

    def q(by_district: bool, tiers: list[Segment] | None) -> Query:
        async def run(conn: AsyncConnection[tuple[object, ...]]) -> list[LightingTotals]:
            out, _ = await lighting_totals(
                conn, CITY, start, end, by_district=by_district, tiers=tiers
            )
            return out

        return run

    results: dict[str, Any] = {}
    for name, by_district in (("district_energy", True), ("city_kpi", False)):
        rollup_t, rollup_a = asyncio.run(_time(conninfo, q(by_district, None), runs, warm_up=True))
        raw_t, raw_a = asyncio.run(
            _time(conninfo, q(by_district, raw_plan), raw_runs, warm_up=False)
        )
        results[name] = {
            "rollup_p50_ms": round(statistics.median(rollup_t), 3),
            "rollup_p99_ms": round(_pct(rollup_t, 0.99), 3),
            "raw_p50_ms": round(statistics.median(raw_t), 1),
            "raw_p99_ms": round(_pct(raw_t, 0.99), 1),
            "speedup": round(statistics.median(raw_t) / statistics.median(rollup_t), 1),
            "same_answer": _same(rollup_a, raw_a),
        }
        if not by_district and rollup_a:
            city = rollup_a[0]
            results[name]["kpi"] = {
                "energy_kwh": round(city.energy_kwh, 3),
                "saved_by_dimming_kwh": round(city.saved_by_dimming_kwh, 3),
                "availability_pct": city.availability_pct,
            }
    d = results["district_energy"]
    out: dict[str, Any] = {
        "rollup_p50_ms": d["rollup_p50_ms"],
        "rollup_p99_ms": d["rollup_p99_ms"],
        "raw_p50_ms": d["raw_p50_ms"],
        "raw_p99_ms": d["raw_p99_ms"],
        "speedup": min(r["speedup"] for r in results.values()),
        "queries": results,
        "history": {
            "lamps": lamps,
            "days": days,
            "interval_min": interval_min,
            "raw_rows": raw_rows,
            "load_s": None if load_s is None else round(load_s, 1),
        },
        "runs": {"rollup": runs, "raw": raw_runs},
    }
    if as_json:
        print(json.dumps(out))
        return
    table = Table(title=f"rollup vs raw, {days} days × {lamps:,} lamps ({raw_rows:,} raw rows)")
    for col in ("query", "rollup p50 ms", "rollup p99 ms", "raw p50 ms", "raw p99 ms", "speedup"):
        table.add_column(col, justify="right" if col != "query" else "left")
    for name, r in results.items():
        table.add_row(
            name,
            f"{r['rollup_p50_ms']:.2f}",
            f"{r['rollup_p99_ms']:.2f}",
            f"{r['raw_p50_ms']:.0f}",
            f"{r['raw_p99_ms']:.0f}",
            f"{r['speedup']:.0f}×" + ("" if r["same_answer"] else " (answers differ!)"),
        )
    console.print(table)
