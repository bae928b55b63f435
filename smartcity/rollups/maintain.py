"""`smartcity maintain`: fold newly ingested rows into the rollups; partitions; retention.

The watermark: for each raw table, `rollup_state.watermark` is the `ingested_at` up to which
rows have been folded in. A run takes the rows with watermark < ingested_at ≤ upper, finds the
hourly buckets they touch — their own, and the bucket of each device's next reading when that
reading is already stored (a late reading changes its successor's register delta) — rebuilds
those hours, then the city-local days that contain them, and moves the watermark to `upper`,
all in one transaction.

The safety lag: `ingested_at` defaults to now(), the *start* of the writer's transaction, and a
transaction that started before `upper` may commit after our snapshot — its rows would carry
an ingested_at below the new watermark yet be invisible now, and be skipped for good. So
upper = now() − `rollup_safety_lag_s`, which must exceed the longest ingest transaction (a
batch commit takes well under a second). The rollups therefore lag the raw data by at most
`maintain_interval_s` + `rollup_safety_lag_s` (docs/storage.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import structlog
from psycopg import sql

from smartcity.cities import CITIES
from smartcity.db import storage
from smartcity.db.connect import connect
from smartcity.errors import SmartCityError
from smartcity.rollups import lighting, metering, transit
from smartcity.settings import Settings

HOUR = timedelta(hours=1)
# Rebuilding buckets sorts each device's readings by time; the server default (4 MB) spills
# those sorts to disk for a city-hour of readings.
REFRESH_WORK_MEM = "256MB"
# One maintainer at a time per database (two would rebuild the same buckets and race on the
# watermark).
_MAINTAIN_LOCK_KEY = 0x5C17_0010

Conn = psycopg.Connection[tuple[object, ...]]
HourlyFn = Callable[[Conn, datetime, datetime, timedelta], None]
DailyFn = Callable[[Conn, str, list[str], date, date, datetime, datetime], None]


@dataclass(frozen=True, slots=True)
class Source:
    table: str
    device_column: str
    hourly: HourlyFn
    daily: DailyFn
    # The query for the dirty hours when the table is not a device's readings (parameters wm,
    # up, lookback), and its own lookback (default: `rollup_lookback_h`).
    dirty: sql.SQL | sql.Composed | None = None
    lookback: timedelta | None = None


SOURCES = (
    Source("lighting_readings", "lamp_id", lighting.refresh_hourly, lighting.refresh_daily),
    Source("meter_readings", "meter_id", metering.refresh_hourly, metering.refresh_daily),
)


def transit_source(settings: Settings) -> Source:
    """The stop arrivals, folded into the transit rollups with the settings' on-time window."""
    cfg = transit.TransitRollupConfig.of(settings)

    def hourly(conn: Conn, start: datetime, end: datetime, lookback: timedelta) -> None:
        del lookback  # the transit lookback is in `cfg`
        transit.refresh_hourly(conn, start, end, cfg)

    # detected_at plays the part of ingested_at: the tracker stamps now() on every upsert.
    return Source(
        "stop_arrivals", "", hourly, transit.refresh_daily, transit.DIRTY_SQL, cfg.lookback
    )


def sources(settings: Settings) -> tuple[Source, ...]:
    return (*SOURCES, transit_source(settings))


@dataclass
class MaintainReport:
    """What one run did."""

    hours_refreshed: dict[str, int] = field(default_factory=dict)
    days_refreshed: dict[str, int] = field(default_factory=dict)
    watermark: datetime | None = None
    removed: dict[str, int] = field(default_factory=dict)


def zones() -> dict[str, list[str]]:
    """City slugs grouped by time zone."""
    out: dict[str, list[str]] = {}
    for city in CITIES.values():
        out.setdefault(city.tz_name, []).append(city.slug)
    return out


def runs(points: Iterable[datetime], step: timedelta) -> list[tuple[datetime, datetime]]:
    """Sorted points on a `step` grid merged into [start, end) runs of consecutive steps."""
    out: list[tuple[datetime, datetime]] = []
    for p in sorted(set(points)):
        if out and out[-1][1] == p:
            out[-1] = (out[-1][0], p + step)
        else:
            out.append((p, p + step))
    return out


def local_day_span(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants where local `day` starts and the next one starts."""
    start = datetime.combine(day, datetime.min.time(), tz)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def refresh_range(
    conn: Conn, source: Source, hours: list[datetime], lookback: timedelta
) -> tuple[int, int]:
    """Rebuild the given UTC hour buckets and the local days that hold them; (hours, days)."""
    hour_runs = runs(hours, HOUR)
    for start, end in hour_runs:
        source.hourly(conn, start, end, lookback)
    days = 0
    for tz_name, cities in zones().items():
        tz = ZoneInfo(tz_name)
        local_days = {h.astimezone(tz).date() for h in hours}
        for first, last_excl in runs(
            (datetime.combine(d, datetime.min.time(), UTC) for d in local_days),
            timedelta(days=1),
        ):
            d0, d1 = first.date(), last_excl.date() - timedelta(days=1)
            a, _ = local_day_span(d0, tz)
            _, b = local_day_span(d1, tz)
            source.daily(conn, tz_name, cities, d0, d1, a, b)
        days += len(local_days)
    return sum(int((e - s) / HOUR) for s, e in hour_runs), days


_DIRTY_SQL = """
WITH new AS (
    SELECT {dev} AS dev, date_trunc('hour', ts, 'UTC') AS bucket, max(ts) AS last_ts
    FROM {table} WHERE ingested_at > %(wm)s AND ingested_at <= %(up)s
    GROUP BY 1, 2
)
SELECT bucket FROM new
UNION
SELECT date_trunc('hour', n.ts, 'UTC') FROM new CROSS JOIN LATERAL (
    SELECT r.ts FROM {table} r
    WHERE r.{dev} = new.dev AND r.ts > new.last_ts AND r.ts <= new.last_ts + %(lookback)s
    ORDER BY r.ts LIMIT 1
) n
"""


def fold_new_rows(conn: Conn, source: Source, settings: Settings) -> tuple[int, int, datetime]:
    """One transaction: dirty buckets from the watermark, rebuild them, move the watermark."""
    lookback = source.lookback or timedelta(hours=settings.rollup_lookback_h)
    dirty: sql.SQL | sql.Composed = source.dirty or sql.SQL(_DIRTY_SQL).format(
        dev=sql.Identifier(source.device_column), table=sql.Identifier(source.table)
    )
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MAINTAIN_LOCK_KEY,))
        conn.execute("SELECT set_config('work_mem', %s, true)", (REFRESH_WORK_MEM,))
        row = conn.execute(
            "SELECT now() - %s::interval", (timedelta(seconds=settings.rollup_safety_lag_s),)
        ).fetchone()
        assert row is not None
        upper = row[0]
        assert isinstance(upper, datetime)
        state = conn.execute(
            "SELECT watermark FROM rollup_state WHERE source = %s", (source.table,)
        ).fetchone()
        watermark = state[0] if state else datetime.min.replace(tzinfo=UTC)
        hours = [
            h
            for (h,) in conn.execute(dirty, {"wm": watermark, "up": upper, "lookback": lookback})
            if isinstance(h, datetime)
        ]
        n_hours, n_days = refresh_range(conn, source, hours, lookback)
        conn.execute(
            "INSERT INTO rollup_state (source, watermark, refreshed_at) VALUES (%s, %s, now()) "
            "ON CONFLICT (source) DO UPDATE SET watermark = EXCLUDED.watermark, "
            "refreshed_at = EXCLUDED.refreshed_at",
            (source.table, upper),
        )
    return n_hours, n_days, upper


def retention_of(settings: Settings) -> storage.Retention:
    return storage.Retention(
        raw_days=settings.retention_raw_days,
        hourly_days=settings.retention_hourly_days,
        daily_days=settings.retention_daily_days,
    )


def run_once(
    settings: Settings, *, now: datetime | None = None, install_policies: bool = True
) -> MaintainReport:
    """One maintenance pass. `now` (default: the clock) decides partitions and retention;
    in TimescaleDB mode the policies are (re)installed when `install_policies`."""
    report = MaintainReport()
    moment = now or datetime.now(UTC)
    with connect(settings.database_conninfo, autocommit=True) as conn:
        mode = storage.read_mode(conn)
        if mode is storage.StorageMode.TIMESCALEDB:
            if install_policies:
                with conn.transaction():
                    storage.apply_timescale_policies(
                        conn,
                        mode,
                        retention_of(settings),
                        timedelta(days=settings.compress_after_days),
                    )
                    storage.apply_transit_timescale_policies(conn, mode, retention_of(settings))
        else:
            storage.ensure_partitions_ahead(
                conn, mode, storage.day_of(moment), settings.partitions_ahead_days
            )
        for source in sources(settings):
            hours, days, upper = fold_new_rows(conn, source, settings)
            report.hours_refreshed[source.table] = hours
            report.days_refreshed[source.table] = days
            report.watermark = upper
        report.removed = storage.drop_expired(conn, mode, moment, retention_of(settings))
        report.removed |= storage.drop_expired_transit(conn, mode, moment, retention_of(settings))
    structlog.get_logger(__name__).info(
        "maintain pass",
        hours=report.hours_refreshed,
        days=report.days_refreshed,
        removed=report.removed,
    )
    return report


def run(settings: Settings, stop: threading.Event) -> None:
    """Maintain every `maintain_interval_s` until `stop` is set; a failed pass is logged and
    retried on the next tick (the watermark did not move, so nothing is skipped)."""
    first = True
    while not stop.is_set():
        try:
            run_once(settings, install_policies=first)
            first = False
        except (psycopg.Error, OSError, SmartCityError) as exc:
            structlog.get_logger(__name__).error(
                "maintain pass failed; retrying next interval", error=str(exc)
            )
        stop.wait(settings.maintain_interval_s)
