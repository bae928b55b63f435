"""`smartcity bench api`: latency (p50/p99) and throughput of API routes under concurrent load,
with the ingest storing live readings all the while.

What it does, all on 127.0.0.1:
1. creates a database of its own next to SMARTCITY_DATABASE_URL's (`<name>_bench_api`), migrates
   it and fills it with `--lamps` lamps, each with `--readings` hourly readings (the registry
   and raw table, as the ingest would leave them), and the Shymkent bus network with `--buses`
   tracked buses (`transit_fill.py`);
2. starts the lighting simulator (`--live-lamps` lamps every `--live-interval` s) and
   `smartcity ingest` on that database, and waits until the ingest stores their readings: every
   route below is measured while the ingest writes (the JSON's `live_rows_stored` per load);
3. starts the API in a second process (`smartcity api`) on a free port, with the public rate
   limit lifted (every request comes from one address here) — and, with `--baseline-src DIR`,
   a second API from another source tree (say a `git worktree` of main) on the same database,
   measured interleaved with the first, load by load, so that a before/after comparison sees
   the same machine load;
4. for each route, for each `--concurrency` (1 and 4 by default), N clients send requests back
   to back for `--seconds`, over keep-alive connections (httpx2, the test extra); every non-2xx
   answer is an error. "API CPU" is the API process's own CPU time per request;
5. then the district-energy aggregate in a database of its own (`district_energy`: 30 days ×
   10,000 lamps of history), again with the simulator and the ingest running;
6. stops everything and drops the databases (unless `--keep-db`; the district-energy history is
   then reused by the next run with the same parameters).

Routes: device detail (a random lamp each time), the lighting summary, stop arrivals (a random
stop with live predictions each time, `lang=kk`), district energy. The MQTT broker must be
reachable (the API's readiness needs it, and the simulator publishes to it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import orjson
import psycopg
import typer
from psycopg import sql
from rich.console import Console
from rich.table import Table

from smartcity.bench.transit_fill import fill_transit, freshen_transit
from smartcity.db import storage
from smartcity.db.connect import connect, database_name, with_database
from smartcity.db.migrate import migrate
from smartcity.errors import ServiceUnavailableError
from smartcity.servers import free_port
from smartcity.settings import Settings

DEVICE_ROUTE = "/v1/devices/{domain}/{device_id}"
SUMMARY_ROUTE = "/v1/lighting/summary"
ARRIVALS_ROUTE = "/v1/stops/{stop_id}/arrivals"
ENERGY_ROUTE = "/v1/aggregates/lighting"
# The acceptance measurement: 30 days of 10,000 lamps (issue 8).
ENERGY_LAMPS = 10_000
ENERGY_DAYS = 30
# Two API processes, the ingest and the simulator start at once; on the loaded 2-core machine
# (load average ~20) an API took 30 s to be ready.
READY_TIMEOUT_S = 180.0
# One client (the latency a resident sees on a quiet server) and four (two per core here).
DEFAULT_CONCURRENCY = [1, 4]
WARMUP_S = 1.0


@dataclass
class RouteResult:
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed_s: float = 0.0
    # CPU time the API process spent per request: unlike latency, it hardly depends on what
    # else the (shared) machine is doing.
    server_cpu_ms: float = 0.0
    live_rows: int = 0  # readings the ingest stored while the clients ran
    load_1m: float = 0.0  # the machine's load average when the clients stopped

    def summary(self) -> dict[str, float | int]:
        lat = np.array(self.latencies_s) * 1000 if self.latencies_s else np.array([0.0])
        return {
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "rps": round(len(self.latencies_s) / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "requests": len(self.latencies_s),
            "errors": self.errors,
            "server_cpu_ms_per_request": round(self.server_cpu_ms, 3),
            "live_rows_stored": self.live_rows,
            "load_average_1m": round(self.load_1m, 2),
        }


def _fill(conninfo: str, lamps: int, readings: int, at: datetime) -> None:
    """`lamps` lamps in 5 districts and 40-lamp cabinets, `readings` hourly readings each."""
    with connect(conninfo, autocommit=True) as conn:
        mode = storage.read_mode(conn)
        first = at - timedelta(hours=readings - 1)
        days = {storage.day_of(first + timedelta(hours=h)) for h in range(readings)}
        storage.ensure_partitions(conn, mode, "lighting_readings", days)
        conn.execute(
            """
            INSERT INTO lighting_readings (ts, lamp_id, city, district, cabinet_id, lamp_on,
                dim_pct, power_w, voltage_v, current_a, power_factor, energy_wh, operating_hours)
            SELECT %(first)s + h * interval '1 hour', format('ast-lamp-%%s', lpad(i::text, 6, '0')),
                   'astana', (ARRAY['almaty','baikonur','esil','nura','saryarka'])[i %% 5 + 1],
                   format('ast-cab-%%s', lpad((i / 40)::text, 4, '0')), true, 100, 60 + i %% 90,
                   230, 0.3, 0.95, 1e5 + h * 60, 2000 + h
            FROM generate_series(0, %(lamps)s - 1) i, generate_series(0, %(readings)s - 1) h
            """,
            {"first": first, "lamps": lamps, "readings": readings},
        )
        conn.execute(
            """
            INSERT INTO devices (domain, device_id, city, district, first_seen, last_seen,
                                 last_status, status_ts)
            SELECT 'lighting', lamp_id, 'astana', min(district), min(ts), max(ts), 'online', max(ts)
            FROM lighting_readings GROUP BY lamp_id
            """
        )
        conn.execute("ANALYZE")


def _start_api(
    settings: Settings, conninfo: str, port: int, src: Path | None = None
) -> subprocess.Popen[bytes]:
    """`smartcity api` on `conninfo`; from source tree `src` instead of this one if given."""
    env = {
        **os.environ,
        "SMARTCITY_DATABASE_URL": conninfo,
        "SMARTCITY_API_RATE_LIMIT_PER_S": "1000000000",
        "SMARTCITY_API_RATE_LIMIT_BURST": "1000000000",
        "SMARTCITY_MQTT_TOPIC_ROOT": f"bench{uuid.uuid4().hex[:8]}",
        "SMARTCITY_API_CLIENT_ID": "smartcity-bench-api",
        "SMARTCITY_LOG_LEVEL": "WARNING",
        "SMARTCITY_MQTT_HOST": settings.mqtt_host,
        "SMARTCITY_MQTT_PORT": str(settings.mqtt_port),
    }
    if src is not None:
        env["PYTHONPATH"] = str(src.resolve())
    return subprocess.Popen(
        [sys.executable, "-m", "smartcity", "api", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        # `python -m` puts the working directory first on sys.path, before PYTHONPATH.
        cwd=None if src is None else src.resolve(),
    )


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, man proc).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceUnavailableError("the API process exited while starting; see its log")
        try:
            with urllib.request.urlopen(f"{base}/ready", timeout=1) as resp:  # noqa: S310
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise ServiceUnavailableError(
        f"the API at {base} was not ready within {READY_TIMEOUT_S:g} s "
        "(is the MQTT broker running? /ready needs it)"
    )


async def _load(
    base: str,
    key: str,
    paths: list[str],
    concurrency: int,
    seconds: float,
) -> RouteResult:
    import httpx2  # the test extra: `pip install -e '.[dev]'` (make install)

    result = RouteResult()
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx2.AsyncClient(base_url=base, limits=limits, headers=headers) as client:
        stop_at = time.perf_counter() + seconds

        async def worker(seed: int) -> None:
            rng = random.Random(seed)
            while time.perf_counter() < stop_at:
                path = rng.choice(paths)
                started = time.perf_counter()
                try:
                    resp = await client.get(path, timeout=10)
                    ok = resp.status_code == 200
                except httpx2.HTTPError:
                    ok = False
                if ok:
                    result.latencies_s.append(time.perf_counter() - started)
                else:
                    result.errors += 1

        started = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for i in range(concurrency):
                tg.create_task(worker(i), name=f"bench-client-{i}")
        result.elapsed_s = time.perf_counter() - started
    return result


@dataclass
class ApiUnderTest:
    """One API process: `main` is this source tree, `baseline` the one from `--baseline-src`."""

    label: str
    proc: subprocess.Popen[bytes]
    base: str


def _measure(
    api: ApiUnderTest,
    key: str,
    paths: list[str],
    concurrency: int,
    seconds: float,
    live_rows: Callable[[], int],
) -> RouteResult:
    asyncio.run(_load(api.base, key, paths[:50], 2, WARMUP_S))  # warm up pool and caches
    rows_before = live_rows()
    cpu_before = _cpu_s(api.proc.pid)
    result = asyncio.run(_load(api.base, key, paths, concurrency, seconds))
    served = len(result.latencies_s) + result.errors
    if served:
        result.server_cpu_ms = (_cpu_s(api.proc.pid) - cpu_before) * 1000 / served
    result.live_rows = live_rows() - rows_before
    result.load_1m = os.getloadavg()[0]
    return result


def _sub_env(conninfo: str, root: str, settings: Settings, client_id: str) -> dict[str, str]:
    return {
        **os.environ,
        "SMARTCITY_DATABASE_URL": conninfo,
        "SMARTCITY_MQTT_TOPIC_ROOT": root,
        "SMARTCITY_MQTT_HOST": settings.mqtt_host,
        "SMARTCITY_MQTT_PORT": str(settings.mqtt_port),
        "SMARTCITY_INGEST_CLIENT_ID": client_id,
        "SMARTCITY_LOG_LEVEL": "WARNING",
    }


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def live_ingest(
    settings: Settings, conninfo: str, *, lamps: int, interval_s: float, since: datetime
) -> Iterator[Callable[[], int]]:
    """The lighting simulator publishing `lamps` lamps every `interval_s` s to the broker and
    `smartcity ingest` storing them in `conninfo`'s database, until the block ends. Yields a
    function that counts the lamp readings stored with `ts >= since`; returns once the ingest
    has stored the first of them."""
    tag = uuid.uuid4().hex[:8]
    env = _sub_env(conninfo, f"bench{tag}", settings, f"smartcity-bench-ingest-{tag}")

    def stored() -> int:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM lighting_readings WHERE ts >= %s", (since,)
            ).fetchone()
        return int(row[0]) if row else 0

    ingest = sim = None
    try:
        ingest = subprocess.Popen([sys.executable, "-m", "smartcity", "ingest"], env=env)
        sim = subprocess.Popen(
            [
                sys.executable, "-m", "smartcity", "simulate", "lighting",
                "--lamps", str(lamps), "--interval", str(interval_s), "--seed", "7",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        first = stored()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while stored() == first:  # the ingest is storing the simulator's readings
            if time.monotonic() > deadline or sim.poll() is not None or ingest.poll() is not None:
                raise ServiceUnavailableError("the live simulator + ingest did not start storing")
            time.sleep(0.5)
        yield stored
    finally:
        for proc in (sim, ingest):
            _stop(proc)


@dataclass
class Plan:
    """What every measured route shares: the clients, the live ingest, the APIs."""

    concurrency: list[int]
    seconds: float
    live_lamps: int
    live_interval_s: float
    baseline_src: Path | None


Results = dict[str, dict[str, dict[int, RouteResult]]]  # label → route → clients → result


def _run_routes(
    settings: Settings,
    conninfo: str,
    plan: Plan,
    key: str,
    routes: list[tuple[str, list[str], Callable[[], None] | None]],
    console: Console,
) -> Results:
    """Measure each (route, paths, before-each-load hook) on the API(s), each concurrency in
    turn, interleaving the APIs load by load, while the live ingest writes to the database."""
    apis: list[ApiUnderTest] = []
    results: Results = {}
    since = datetime.now(UTC)  # the history filled before ends earlier
    try:
        with live_ingest(
            settings,
            conninfo,
            lamps=plan.live_lamps,
            interval_s=plan.live_interval_s,
            since=since,
        ) as live_rows:
            sources: list[tuple[str, Path | None]] = [("main", None)]
            if plan.baseline_src is not None:
                sources.append(("baseline", plan.baseline_src))
            for label, src in sources:
                port = free_port()
                base = f"http://127.0.0.1:{port}"
                apis.append(ApiUnderTest(label, _start_api(settings, conninfo, port, src), base))
            for api in apis:
                _wait_ready(api.base, api.proc)
            for route, paths, before in routes:
                for clients in plan.concurrency:
                    for api in apis:
                        console.print(
                            f"loading {route} ({api.label}): {clients} clients for "
                            f"{plan.seconds:g} s, ingest running …"
                        )
                        if before is not None:
                            before()
                        result = _measure(api, key, paths, clients, plan.seconds, live_rows)
                        results.setdefault(api.label, {}).setdefault(route, {})[clients] = result
    finally:
        for api in apis:
            _stop(api.proc)
    return results


def district_energy(
    settings: Settings,
    plan: Plan,
    *,
    lamps: int,
    days: int,
    keep_db: bool,
    console: Console,
) -> tuple[Results, str, dict[str, Any]]:
    """`GET /v1/aggregates/lighting` per district and local day over the last `days` whole
    local days of `lamps` lamps' hourly history, while the lighting simulator publishes to the
    broker and `smartcity ingest` stores the readings in the same database.

    The history is written in SQL (`_fill`) and rolled up by `smartcity maintain`'s own pass:
    the route reads the daily rollups, whose size depends on days × districts only. (The
    simulators' backfill through the ingest writer — `smartcity bench query` — gives the same
    row counts but took over an hour for 7.2 M rows on the loaded 2-core machine.)"""
    from smartcity.apikeys import create_key
    from smartcity.cities import get_city
    from smartcity.rollups.maintain import local_day_span, run_once
    from smartcity.security import Role

    tz = get_city("astana").tz
    today = datetime.now(UTC).astimezone(tz).date()
    start, _ = local_day_span(today - timedelta(days=days), tz)
    end, _ = local_day_span(today, tz)
    db = f"{database_name(settings.database_conninfo)}_bench_energy"
    conninfo = with_database(settings.database_conninfo, db)
    db_settings = settings.model_copy(update={"database_url": conninfo, "rollup_safety_lag_s": 0})
    migrate(db_settings)
    params = f"lamps={lamps} days={days} first={start.isoformat()}"
    with connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (params text PRIMARY KEY)")
        reuse = conn.execute("SELECT 1 FROM bench_meta WHERE params = %s", (params,)).fetchone()
    load_s = None
    if reuse is None:  # a database kept with --keep-db is reused while the parameters hold
        t0 = time.perf_counter()
        console.print(f"filling {db}: {lamps} lamps × {days} days of hourly readings …")
        with connect(conninfo, autocommit=True) as conn:
            conn.execute(
                "TRUNCATE lighting_readings, lighting_hourly, lighting_daily, rollup_state, "
                "devices, bench_meta"
            )
        _fill(conninfo, lamps, days * 24, end - timedelta(hours=1))
        console.print("rolling up (smartcity maintain) …")
        run_once(db_settings)
        with connect(conninfo, autocommit=True) as conn:
            conn.execute("ANALYZE")
            conn.execute("INSERT INTO bench_meta VALUES (%s)", (params,))
        load_s = time.perf_counter() - t0
    path = (
        f"{ENERGY_ROUTE}?city=astana&level=district&bucket=1d"
        f"&from={start.isoformat().replace('+', '%2B')}&to={end.isoformat().replace('+', '%2B')}"
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        key = create_key(conn, f"bench-energy-{uuid.uuid4().hex[:8]}", Role.VIEWER)
    try:
        routes: list[tuple[str, list[str], Callable[[], None] | None]] = [
            (ENERGY_ROUTE, [path], None)
        ]
        results = _run_routes(settings, conninfo, plan, key, routes, console)
    finally:
        if not keep_db:
            _drop(settings.database_conninfo, db)
    history: dict[str, Any] = {"database": db, "lamps": lamps, "days": days, "interval_min": 60}
    history["load_s"] = None if load_s is None else round(load_s, 1)
    return results, path, history


def _drop(base_conninfo: str, db: str) -> None:
    with connect(with_database(base_conninfo, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))


def _report(by_route: dict[str, dict[int, RouteResult]]) -> dict[str, Any]:
    """Per route: the figures of the highest concurrency at the top (the load the targets speak
    of), and every concurrency under `clients`."""
    out: dict[str, Any] = {}
    for route, by_clients in by_route.items():
        top = by_clients[max(by_clients)]
        out[route] = {
            **top.summary(),
            "clients": {str(c): r.summary() for c, r in sorted(by_clients.items())},
        }
    return out


def command(
    lamps: Annotated[int, typer.Option(min=1, help="Lamps with history in the database.")] = 10000,
    readings: Annotated[int, typer.Option(min=1, help="Hourly readings per lamp.")] = 24,
    buses: Annotated[int, typer.Option(min=1, help="Live buses with predictions.")] = 800,
    bus_routes: Annotated[int, typer.Option(min=1, help="Routes of the bus network.")] = 30,
    concurrency: Annotated[
        list[int] | None,
        typer.Option(min=1, help="Concurrent clients; repeat for several (default: 1 and 4)."),
    ] = None,
    seconds: Annotated[float, typer.Option(min=0.5, help="Load time per route.")] = 10.0,
    keep_db: Annotated[bool, typer.Option(help="Keep the benchmark database afterwards.")] = False,
    energy_lamps: Annotated[
        int, typer.Option(min=1, help="Lamps of history for the district-energy route.")
    ] = ENERGY_LAMPS,
    energy_days: Annotated[
        int, typer.Option(min=0, help="Days of history for district energy (0: skip it).")
    ] = ENERGY_DAYS,
    live_lamps: Annotated[
        int, typer.Option(min=1, help="Lamps the simulator publishes while routes are loaded.")
    ] = 1000,
    live_interval: Annotated[
        float, typer.Option(min=1, help="Seconds between a live lamp's readings.")
    ] = 5.0,
    baseline_src: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="Also measure an API from this source tree (e.g. a worktree of main), "
            "interleaved with this one on the same database; reported under `baseline`.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """API latency and throughput under concurrent load, with the ingest running, on 127.0.0.1
    (see docs/benchmarks.md)."""
    from smartcity.apikeys import create_key
    from smartcity.security import Role

    settings = Settings()
    plan = Plan(
        concurrency=sorted(set(concurrency or DEFAULT_CONCURRENCY)),
        seconds=seconds,
        live_lamps=live_lamps,
        live_interval_s=live_interval,
        baseline_src=baseline_src,
    )
    base_conninfo = settings.database_conninfo
    bench_db = f"{database_name(base_conninfo)}_bench_api"
    conninfo = with_database(base_conninfo, bench_db)
    console = Console(stderr=True)
    _drop(base_conninfo, bench_db)
    try:
        migrate(settings.model_copy(update={"database_url": conninfo}))
        at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        console.print(f"filling {bench_db}: {lamps} lamps × {readings} readings …")
        _fill(conninfo, lamps, readings, at)
        # Transit: its own section of the database (the timetable and the live buses).
        console.print(f"filling {bench_db}: the Shymkent timetable and {buses} live buses …")
        arrival_stops = fill_transit(conninfo, buses, datetime.now(UTC), routes=bus_routes)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            key = create_key(conn, "bench", Role.VIEWER)
        rng = random.Random(1)
        device_paths = [
            f"/v1/devices/lighting/ast-lamp-{rng.randrange(lamps):06d}" for _ in range(1000)
        ]
        arrival_paths = [
            f"/v1/stops/{rng.choice(arrival_stops)}/arrivals?lang=kk" for _ in range(1000)
        ]

        def fresh_buses() -> None:  # live predictions, not stale ones, for every load
            freshen_transit(conninfo, datetime.now(UTC))

        results = _run_routes(
            settings,
            conninfo,
            plan,
            key,
            [
                (DEVICE_ROUTE, device_paths, None),
                (SUMMARY_ROUTE, [f"{SUMMARY_ROUTE}?city=astana&window_s=3600"], None),
                (ARRIVALS_ROUTE, arrival_paths, fresh_buses),
            ],
            console,
        )
    finally:
        if not keep_db:
            _drop(base_conninfo, bench_db)
    energy: tuple[str, dict[str, Any]] | None = None
    if energy_days:
        energy_results, energy_path, history = district_energy(
            settings, plan, lamps=energy_lamps, days=energy_days, keep_db=keep_db, console=console
        )
        for label, by_route in energy_results.items():
            results.setdefault(label, {}).update(by_route)
        energy = (energy_path, history)

    main = results["main"]
    report: dict[str, Any] = _report(main)
    report["errors"] = sum(r.errors for by in main.values() for r in by.values())
    if "baseline" in results:
        report["baseline"] = _report(results["baseline"])
        report["baseline"]["errors"] = sum(
            r.errors for by in results["baseline"].values() for r in by.values()
        )
    report["config"] = {
        "lamps": lamps,
        "readings_per_lamp": readings,
        "live_buses": buses,
        "bus_routes": bus_routes,
        "concurrency": plan.concurrency,
        "seconds_per_route": seconds,
        "live_lamps": live_lamps,
        "live_interval_s": live_interval,
        "baseline_src": None if baseline_src is None else str(baseline_src),
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if energy is not None:
        report["config"]["district_energy"] = {"path": energy[0], "history": energy[1]}
    if as_json:
        print(orjson.dumps(report).decode())
        return
    table = Table(
        "route", "API", "clients", "p50 ms", "p99 ms", "req/s", "errors", "API CPU ms/req",
        "rows ingested", "load",
    )  # fmt: skip
    for label, by_route in results.items():
        for route, by_clients in by_route.items():
            for clients, r in sorted(by_clients.items()):
                s = r.summary()
                table.add_row(
                    route,
                    label,
                    str(clients),
                    f"{s['p50_ms']:.2f}",
                    f"{s['p99_ms']:.2f}",
                    f"{s['rps']:.0f}",
                    str(s["errors"]),
                    f"{s['server_cpu_ms_per_request']:.2f}",
                    str(s["live_rows_stored"]),
                    f"{s['load_average_1m']:.1f}",
                )
    Console().print(table)
