"""Published vs stored, per feed, exactly.

The simulators are deterministic: a seed, a start time and a simulated duration fix every byte
they send, whatever the pacing (simulators/stream.py). So after the run the soak builds each
city's scenario again, walks its messages without publishing, and decodes them with the
ingest's own decoder into the keys of the rows they must become (device, ts). Those keys — and
the ones the lag probe and the reconnect storm got acknowledged — are copied into a table of the
soak's database, and SQL compares them with the raw tables:

    published   distinct keys the broker acknowledged (every simulator message was: the run
                checks sent == acknowledged)
    stored      of those, the keys that are in the table
    lost        published − stored
    duplicates  rows beyond one per key in the table (the primary key forbids them; counted
                anyway, as the ingest benchmark does)
    unexpected  rows whose key nobody published (a malformed message accepted, say)

This is only valid for a simulator run that was not stopped early and got everything
acknowledged; `expected_keys` is handed the run results and refuses otherwise.
"""

from __future__ import annotations

import contextlib
import csv
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from smartcity.soak import SoakError
from smartcity.soak.truth import write_faults

if TYPE_CHECKING:
    from smartcity.soak.procs import SimSpec

# Raw reading tables: (table, device column).
READING_TABLES = {
    "lighting_readings": "lamp_id",
    "meter_readings": "meter_id",
    "vehicle_positions": "vehicle_id",
}
EXPECTED_TABLE = "soak_expected"
# The meter the soak publishes to until the ingest stores something (readiness, not counted).
READY_DEVICE = "soak-ready"


def simulated_keys(
    spec: SimSpec, root: str, truth: Callable[[dict[str, object]], None] | None = None
) -> Iterator[tuple[str, str, datetime]]:
    """(table, device, ts) of every row one city's simulator run must have produced, with the
    soak's device faults applied (smartcity.soak.truth). Messages the ingest's decoder
    refuses become dead letters, not rows. `truth` is shown every ground-truth stop visit of
    the buses, also for `TRUTH_TAIL_S` past the end (no keys from there)."""
    from ingest.decode import decode
    from simulators.scenario import Scenario
    from smartcity.errors import PayloadError
    from smartcity.soak.procs import scenario_options
    from smartcity.soak.truth import TRUTH_TAIL_S, plan_device_faults
    from smartcity.topics import parse_inbound

    scenario = Scenario(
        scenario_options(spec.fleet), start=spec.start, topic_root=root, ground_truth=truth
    )
    faults = plan_device_faults(scenario, spec)
    if spec.faults_path:
        write_faults(spec.faults_path, faults)
    tail = TRUTH_TAIL_S if truth is not None else 0.0
    for t, topic, payload in scenario.messages(spec.duration_s + tail):
        if t >= spec.duration_s:
            continue  # the tail: ground truth only, never published
        try:
            decoded = decode(parse_inbound(root, topic), payload)
        except PayloadError:
            continue
        for table, rows in decoded.rows.items():
            for row in rows:
                ts = row[0]
                assert isinstance(ts, datetime)
                yield table, str(row[1]), ts


def write_keys(spec: SimSpec, root: str) -> None:
    """`simulated_keys` as tab-separated text (COPY's format) in `spec.keys_path`; the device
    faults and the buses' ground truth to `spec.faults_path` and `spec.arrivals_path`."""
    from simulators.transit import GROUND_TRUTH_FIELDS

    with contextlib.ExitStack() as stack:
        truth = None
        if spec.arrivals_path:
            arrivals = stack.enter_context(
                open(spec.arrivals_path, "w", encoding="utf-8", newline="")
            )
            writer = csv.DictWriter(arrivals, GROUND_TRUTH_FIELDS, lineterminator="\n")
            writer.writeheader()
            truth = writer.writerow
        out = stack.enter_context(open(spec.keys_path, "w", encoding="utf-8"))
        for table, device, ts in simulated_keys(spec, root, truth):
            out.write(f"{table}\t{device}\t{ts.isoformat()}\n")


def _acked_rows(keys: Iterable[Hashable]) -> Iterator[tuple[str, str, datetime]]:
    for key in keys:
        assert isinstance(key, tuple)
        table, device, ts_ms = key
        yield str(table), str(device), datetime.fromtimestamp(int(ts_ms) / 1000, tz=UTC)


def load_expected(
    conninfo: str, specs: list[SimSpec], acked_keys: list[Hashable]
) -> dict[str, int]:
    """Fill `soak_expected` with every published key (the simulators' from the files their
    processes wrote with `write_keys`); returns how many per table."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE UNLOGGED TABLE IF NOT EXISTS {} "
                "(tbl text NOT NULL, device text NOT NULL, ts timestamptz NOT NULL)"
            ).format(sql.Identifier(EXPECTED_TABLE))
        )
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(EXPECTED_TABLE)))
        with (
            conn.cursor() as cur,
            cur.copy(
                sql.SQL("COPY {} (tbl, device, ts) FROM STDIN").format(
                    sql.Identifier(EXPECTED_TABLE)
                )
            ) as copy,
        ):
            for spec in specs:
                with open(spec.keys_path, "rb") as keys:
                    while chunk := keys.read(1 << 20):
                        copy.write(chunk)
        with (
            conn.cursor() as cur,
            cur.copy(
                sql.SQL("COPY {} (tbl, device, ts) FROM STDIN").format(
                    sql.Identifier(EXPECTED_TABLE)
                )
            ) as copy,
        ):
            for key in _acked_rows(acked_keys):
                copy.write_row(key)
        # Deduplicate (a SenML pack may carry a meter's reading twice) and index for lookups.
        conn.execute(
            sql.SQL(
                "CREATE UNLOGGED TABLE soak_expected_d AS SELECT DISTINCT tbl, device, ts FROM {};"
                "DROP TABLE {}; ALTER TABLE soak_expected_d RENAME TO {};"
                "CREATE INDEX ON {} (tbl, device, ts); ANALYZE {}"
            ).format(*[sql.Identifier(EXPECTED_TABLE)] * 5)
        )
        rows = conn.execute(
            sql.SQL("SELECT tbl, count(*) FROM {} GROUP BY tbl").format(
                sql.Identifier(EXPECTED_TABLE)
            )
        ).fetchall()
    return {str(t): int(n) for t, n in rows}


@dataclass
class FeedCount:
    published: int
    stored: int
    lost: int
    duplicates: int
    unexpected: int


def _missing(conn: psycopg.Connection[tuple[object, ...]], table: str) -> int:
    query = sql.SQL(
        "SELECT count(*) FROM {e} e WHERE e.tbl = %s AND NOT EXISTS "
        "(SELECT 1 FROM {t} r WHERE r.{d} = e.device AND r.ts = e.ts)"
    ).format(
        e=sql.Identifier(EXPECTED_TABLE),
        t=sql.Identifier(table),
        d=sql.Identifier(READING_TABLES[table]),
    )
    row = conn.execute(query, (table,)).fetchone()
    return int(str(row[0])) if row else 0


def lost_now(conninfo: str) -> int:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return sum(_missing(conn, t) for t in READING_TABLES)


def wait_for_drain(conninfo: str, timeout_s: float, stall_s: float) -> float:
    """Wait until every published key is stored, or nothing more arrives for `stall_s`.

    Returns the seconds it took (the ingest's backlog at the end of the run)."""
    started = time.monotonic()
    best, best_at = lost_now(conninfo), started
    while best > 0:
        now = time.monotonic()
        if now - started > timeout_s or now - best_at > stall_s:
            break
        time.sleep(1.0)
        missing = lost_now(conninfo)
        if missing < best:
            best, best_at = missing, time.monotonic()
    return time.monotonic() - started


def count(conninfo: str) -> dict[str, FeedCount]:
    out: dict[str, FeedCount] = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for table, device in READING_TABLES.items():
            rows = conn.execute(
                sql.SQL(
                    "SELECT count(*), count(DISTINCT ({d}, ts)), "
                    "(SELECT count(*) FROM {e} WHERE tbl = %s) FROM {t} WHERE {d} <> %s"
                ).format(
                    d=sql.Identifier(device),
                    t=sql.Identifier(table),
                    e=sql.Identifier(EXPECTED_TABLE),
                ),
                (table, READY_DEVICE),
            ).fetchone()
            if rows is None:
                raise SoakError(f"cannot count {table}")
            total, distinct, published = (int(str(v)) for v in rows)
            lost = _missing(conn, table)
            stored = published - lost
            out[table] = FeedCount(
                published=published,
                stored=stored,
                lost=lost,
                duplicates=total - distinct,
                unexpected=distinct - stored,
            )
    return out


def lost_over_time(conninfo: str, t0_wall: float, bucket_s: float) -> list[tuple[float, int]]:
    """(bucket start s, readings lost) by the lost readings' event time: which moments lost."""
    parts = sql.SQL(" UNION ALL ").join(
        sql.SQL(
            "SELECT e.ts FROM {e} e WHERE e.tbl = {n} AND NOT EXISTS "
            "(SELECT 1 FROM {t} r WHERE r.{d} = e.device AND r.ts = e.ts)"
        ).format(
            e=sql.Identifier(EXPECTED_TABLE),
            n=sql.Literal(table),
            t=sql.Identifier(table),
            d=sql.Identifier(device),
        )
        for table, device in READING_TABLES.items()
    )
    query = sql.SQL(
        "SELECT floor((extract(epoch FROM ts) - %(t0)s) / %(b)s) * %(b)s, count(*) "
        "FROM ({}) m GROUP BY 1 ORDER BY 1"
    ).format(parts)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(query, {"t0": t0_wall, "b": bucket_s}).fetchall()
    return [(float(b), int(n)) for b, n in rows]


def rejected_by_reason(conninfo: str) -> dict[str, int]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT reason, count(*) FROM dead_letters GROUP BY reason ORDER BY reason"
        ).fetchall()
    return {str(r): int(n) for r, n in rows}


def burst_dead_letters(conninfo: str) -> int:
    """Dead letters of the malformed burst (device ids `soak-bad-…` in the topic)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM dead_letters WHERE topic LIKE %s", ("%/soak-bad-%",)
        ).fetchone()
    return int(str(row[0])) if row else 0


def probe_lag(
    conninfo: str, t0_wall: float, bucket_s: float
) -> tuple[list[tuple[float, float, float]], tuple[float, float]]:
    """The probe's publish→commit lag: (bucket start s, p50 ms, p99 ms) over time, and the
    (p50, p99) of the whole run."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(
            """
            SELECT floor((extract(epoch FROM ts) - %(t0)s) / %(b)s) * %(b)s AS bucket,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_ms),
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY lag_ms)
            FROM (SELECT ts, extract(epoch FROM ingested_at - ts) * 1000 AS lag_ms
                  FROM meter_readings WHERE meter_id LIKE 'soak-probe-%%') p
            GROUP BY 1 ORDER BY 1
            """,
            {"t0": t0_wall, "b": bucket_s},
        ).fetchall()
        total = conn.execute(
            "SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY "
            "extract(epoch FROM ingested_at - ts) * 1000) FROM meter_readings "
            "WHERE meter_id LIKE 'soak-probe-%%'"
        ).fetchone()
    series = [(float(b), float(p50), float(p99)) for b, p50, p99 in rows]
    whole = (float("nan"), float("nan"))
    if total and isinstance(total[0], list):
        whole = (float(total[0][0]), float(total[0][1]))
    return series, whole


def committed_rate(conninfo: str, t0_wall: float, bucket_s: float) -> list[tuple[float, float]]:
    """(bucket start s, rows committed per second) over all raw tables, by `ingested_at`."""
    parts = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT ingested_at FROM {}").format(sql.Identifier(t)) for t in READING_TABLES
    )
    query = sql.SQL(
        "SELECT floor((extract(epoch FROM ingested_at) - %(t0)s) / %(b)s) * %(b)s, count(*) "
        "FROM ({}) r GROUP BY 1 ORDER BY 1"
    ).format(parts)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(query, {"t0": t0_wall, "b": bucket_s}).fetchall()
    return [(float(b), int(n) / bucket_s) for b, n in rows]
