"""Traffic the soak adds beside the simulators: operators and residents on the API, and a lag
probe on the broker.

**API load** is open-loop: requests are *scheduled* at a steady rate whatever the answers do,
and each latency is measured from the scheduled moment, so a stalled API (a paused database)
shows as the long waits users see rather than as fewer requests (no coordinated omission).
The mix, by weight:

    operators (viewer key)   lighting summary, device list, device detail, active alerts
    residents (public/token) lighting summary, their own meter's consumption (meter token),

Stop arrivals (residents' bus times) are not in the mix yet: that route and the tracker that
fills it come with the transit issue; add them to `ApiLoad._pick` when they land.

**Lag probe**: meter readings stamped with the time of publishing (`ts` = now), a few dozen a
second, through the same broker and ingest as the simulators' stream. `ingested_at − ts` of the
probe rows is the publish→commit lag at each moment (the simulators' own stamps are the
simulated schedule, a little behind the wall clock after their start-up).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

from smartcity import topics
from smartcity.apikeys import create_key, create_meter_token
from smartcity.bench.mqttload import AckedPublisher, meter_payload
from smartcity.security import Role

REQUEST_TIMEOUT_S = 30.0
MAX_CONCURRENT = 64
REFRESH_EVERY_S = 15.0  # how often the load picks up devices that appeared since
RESIDENT_METERS = 50
PROBE_METERS = 100
PROBE_CITY = "astana"


@dataclass(frozen=True, slots=True)
class Request:
    t_s: float  # scheduled, seconds since the soak's start
    route: str
    latency_s: float
    status: int  # 0: no answer (timeout, connection refused)


@dataclass
class Targets:
    """What the load asks about: device ids and meter tokens found in the database."""

    lamps: list[tuple[str, str]] = field(default_factory=list)  # (city, lamp id)
    meter_tokens: dict[str, str] = field(default_factory=dict)
    cities: list[str] = field(default_factory=list)


def _refresh(conninfo: str, targets: Targets, cities: list[str]) -> None:
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        conn.execute("SET statement_timeout = '5s'")
        lamps = conn.execute(
            "SELECT city, device_id FROM devices WHERE domain = 'lighting' "
            "ORDER BY device_id LIMIT 2000"
        ).fetchall()
        targets.lamps = [(str(c), str(d)) for c, d in lamps]
        if len(targets.meter_tokens) < RESIDENT_METERS:
            meters = conn.execute(
                "SELECT device_id FROM devices WHERE domain = 'metering' "
                "AND device_id NOT LIKE 'soak-%%' ORDER BY device_id LIMIT %s",
                (RESIDENT_METERS,),
            ).fetchall()
            for (meter,) in meters:
                if meter not in targets.meter_tokens:
                    targets.meter_tokens[str(meter)] = create_meter_token(conn, str(meter), "soak")
    targets.cities = cities


class ApiLoad:
    """Operators and residents at `rate_per_s` requests a second, in a thread with its own
    event loop, until `stop()`; `requests` holds every request's outcome."""

    def __init__(
        self,
        base_url: str,
        conninfo: str,
        cities: list[str],
        rate_per_s: float,
        t0: float,
        seed: int = 1,
    ) -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            self._key = create_key(conn, f"soak-operator-{int(time.time())}", Role.VIEWER)
        self._base = base_url
        self._conninfo = conninfo
        self._cities = cities
        self._rate = rate_per_s
        self._t0 = t0
        self._rng = random.Random(seed)
        self.targets = Targets(cities=cities)
        self.requests: list[Request] = []
        self.refresh_errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="soak-api-load", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(REQUEST_TIMEOUT_S + 10)

    def _pick(self) -> tuple[str, str, dict[str, str]]:
        """(route name, path, extra headers) of the next request."""
        rng, t = self._rng, self.targets
        city = rng.choice(self._cities)
        operator = {"Authorization": f"Bearer {self._key}"}
        roll = rng.random()
        if roll < 0.25:
            return "lighting_summary", f"/v1/lighting/summary?city={city}&window_s=300", {}
        if roll < 0.40:
            path = f"/v1/devices?city={city}&domain=lighting&limit=100"
            return "devices", path, operator
        if roll < 0.65 and t.lamps:
            _city, lamp = rng.choice(t.lamps)
            return "device_detail", f"/v1/devices/lighting/{lamp}", operator
        if roll < 0.80:
            return "alerts", "/v1/alerts?state=active&limit=50", operator
        if t.meter_tokens:
            meter = rng.choice(sorted(t.meter_tokens))
            since = (datetime.now(UTC) - timedelta(days=1)).isoformat().replace("+00:00", "Z")
            return (
                "meter_consumption",
                f"/v1/meters/{meter}/consumption?from={since}",
                {"Authorization": f"Bearer {t.meter_tokens[meter]}"},
            )
        return "lighting_summary", f"/v1/lighting/summary?city={city}&window_s=300", {}

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        import httpx2  # the dev extra, as `smartcity bench api` (make install)

        limits = httpx2.Limits(max_connections=MAX_CONCURRENT)
        async with (
            httpx2.AsyncClient(base_url=self._base, limits=limits) as client,
            asyncio.TaskGroup() as tg,
        ):
            tg.create_task(self._refresher(), name="soak-load-refresh")
            started = time.monotonic()
            n = 0
            while not self._stop.is_set():
                due = started + n / self._rate
                wait_s = due - time.monotonic()
                if wait_s > 0:
                    await asyncio.sleep(min(wait_s, 0.25))
                    continue
                route, path, headers = self._pick()
                tg.create_task(self._one(client, due, route, path, headers), name="soak-request")
                n += 1

    async def _one(
        self,
        client: object,
        due: float,
        route: str,
        path: str,
        headers: dict[str, str],
    ) -> None:
        import httpx2

        assert isinstance(client, httpx2.AsyncClient)
        try:
            resp = await client.get(path, headers=headers, timeout=REQUEST_TIMEOUT_S)
            status = resp.status_code
        except httpx2.HTTPError:
            status = 0
        self.requests.append(
            Request(round(due - self._t0, 3), route, time.monotonic() - due, status)
        )

    async def _refresher(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.to_thread(_refresh, self._conninfo, self.targets, self._cities)
            except psycopg.Error:
                self.refresh_errors += 1  # the database is paused: try again later
            for _ in range(int(REFRESH_EVERY_S * 4)):
                if self._stop.is_set():
                    return
                await asyncio.sleep(0.25)


class LagProbe:
    """Readings stamped at publish time, `rate_per_s` a second, in a thread until `stop()`."""

    def __init__(self, host: str, port: int, root: str, rate_per_s: float) -> None:
        self._host, self._port, self._root = host, port, root
        self._rate = rate_per_s
        self._stop = threading.Event()
        self.acked: list[Hashable] = []
        self.sent = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="soak-lag-probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(120)

    def _run(self) -> None:
        try:
            with AckedPublisher(self._host, self._port, f"soak-probe-{self._root}") as pub:
                started = time.monotonic()
                i = 0
                while not self._stop.is_set():
                    meter = f"soak-probe-{i % PROBE_METERS:03d}"
                    ts_ms = int(time.time() * 1000)
                    pub.publish(
                        topics.meter_reading(self._root, PROBE_CITY, meter),
                        meter_payload(meter, ts_ms, float(i)),
                        key=("meter_readings", meter, ts_ms),
                    )
                    i += 1
                    self.sent = i
                    self._stop.wait(max(0.0, started + i / self._rate - time.monotonic()))
                pub.flush(timeout_s=90)
                self.acked = pub.acknowledged_keys()
        except BaseException as exc:
            self.error = exc
