"""A database filled the way the dashboards expect to find it: a lamp fleet with a history
(every 15 minutes over the last `history_hours`, so a night is in it) then reporting every
minute up to now, some lamps gone silent, some faulty; a meter fleet reporting every 15
minutes over the same history; a few rejected messages; and one `smartcity maintain` pass, so
the rollups the energy panels read are filled."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from smartcity import topics
from smartcity.cities import get_city
from smartcity.errors import PayloadError

if TYPE_CHECKING:
    from ingest.writer import Batch
    from simulators.gtfs import Network

ROOT = "city"
MAX_PAYLOAD_BYTES = 65536


@dataclass(frozen=True)
class Fleet:
    lamps: int = 120
    minutes: int = 40
    silent: int = 8  # the first `silent` lamps stopped reporting 30 minutes ago
    faulty: int = 5  # the next `faulty` lamps lose their supply for the last 10 minutes
    seed: int = 3
    # Before the minute readings: one reading per lamp every HISTORY_STEP over this many hours
    # (30 h always holds a whole night and parts of two local days in Astana, UTC+5).
    history_hours: int = 30
    meters: int = 60

    @property
    def history_readings(self) -> int:
        """Readings per lamp in the history."""
        return self.history_hours * 60 // HISTORY_STEP_MIN


HISTORY_STEP_MIN = 15
METER_INTERVAL_S = 900.0


def _add(batch: Batch, topic: str, payload: bytes, received_at: datetime) -> None:
    """Decode one message as the ingest does and add it to `batch`."""
    from ingest.decode import decode
    from ingest.writer import Origin

    decoded = decode(
        topics.parse_inbound(ROOT, topic), payload, max_payload_bytes=MAX_PAYLOAD_BYTES
    )
    batch.add(decoded, Origin(received_at.timestamp(), topic, payload))


def fill(conninfo: str, now: datetime, fleet: Fleet = Fleet()) -> int:
    """Write the fleets' readings (through the ingest's writer) and some dead letters, then run
    one maintenance pass; return the number of lamp readings."""
    # Imported here: only the tests that fill a database need the ingest and the simulators.
    from ingest.decode import decode
    from ingest.writer import Batch, BatchWriter, DeadLetter
    from simulators.lighting import LampFleet
    from simulators.metering import MeterFleet
    from smartcity.rollups.maintain import run_once
    from smartcity.settings import Settings

    city = get_city("astana")
    lamps = LampFleet(city, fleet.lamps, fleet.seed)
    batch = Batch.empty()
    readings = 0
    live_start = now - timedelta(minutes=fleet.minutes)
    for step in range(fleet.history_readings, 0, -1):
        ts = live_start - timedelta(minutes=step * HISTORY_STEP_MIN)
        for i, lamp in enumerate(lamps.lamps):
            topic = topics.lamp_telemetry(ROOT, city.slug, lamp.lamp_id)
            _add(batch, topic, orjson.dumps(lamps.reading(i, ts)), ts)
            readings += 1
    meters = MeterFleet(city, fleet.meters, fleet.seed, interval_s=METER_INTERVAL_S)
    start = now - timedelta(hours=fleet.history_hours)
    for offset_s, topic, message in meters.messages(start, ROOT):
        sent = start + timedelta(seconds=offset_s)
        if sent > now:
            break
        _add(batch, topic, message, sent)
    for minutes_ago in range(fleet.minutes, -1, -1):
        ts = now - timedelta(minutes=minutes_ago)
        for i, lamp in enumerate(lamps.lamps):
            if i < fleet.silent and minutes_ago < 30:
                continue
            payload = lamps.reading(i, ts)
            if fleet.silent <= i < fleet.silent + fleet.faulty and minutes_ago < 10:
                # Supply lost: the controller reports 0 V and its lamp-failure flag. The
                # supply-loss rule fires at any hour (lamp failure only while the lamp should
                # be lit), so the alert panels see the same alerts whenever the test runs.
                payload.update(lamp_failure=True, voltage_v=0.0, current_a=0.0, power_w=0.0)
            _add(
                batch,
                topics.lamp_telemetry(ROOT, city.slug, lamp.lamp_id),
                orjson.dumps(payload),
                ts,
            )
            readings += 1
    for raw in (b"{not json", b'{"ts": "yesterday"}', b"[]"):
        topic = topics.lamp_telemetry(ROOT, city.slug, "ast-lamp-999999")
        try:
            decode(topics.parse_inbound(ROOT, topic), raw, max_payload_bytes=MAX_PAYLOAD_BYTES)
        except PayloadError as exc:
            batch.dead_letters.append(DeadLetter(now, topic, raw, len(raw), exc.reason, str(exc)))
        else:
            raise AssertionError(f"{raw!r} was expected to be rejected")
    with BatchWriter(conninfo) as writer:
        writer.write(batch)
    # Everything just written is folded in: no safety lag (nothing else writes here).
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=conninfo,
        rollup_safety_lag_s=0,
    )
    run_once(settings, now=now)
    return readings


# --- transit -------------------------------------------------------------------------------------

# The simulator's service day runs 03:00–03:00 local and the generated network from 06:00 to
# about 24:00; the test network moves every trip this much earlier and adds a copy of each
# LATE_COPY_S later, so buses run at whatever hour the test does.
EARLIER_S = 3 * 3600
LATE_COPY_S = 17 * 3600
LAST_START_S = 27 * 3600  # a copy starting later would run after the service day's end


@dataclass(frozen=True)
class Buses:
    routes: int = 2
    minutes: int = 20  # positions over the last `minutes`
    hours: float = 4.0  # trips running in the last `hours` (their arrivals: the default range)
    interval_s: float = 30.0  # GTFS-Realtime feeds commonly update every 30 s
    seed: int = 5


def around_the_clock(net: Network) -> Network:
    """`net` with every trip EARLIER_S earlier, plus a copy of each LATE_COPY_S after that
    (block ids suffixed, so a copy is another bus's day)."""
    out = replace(net, trips={})
    for trip in net.trips.values():
        early = replace(
            trip,
            arrival_s=[t - EARLIER_S for t in trip.arrival_s],
            departure_s=[t - EARLIER_S for t in trip.departure_s],
        )
        out.trips[early.trip_id] = early
        if early.departure_s[0] + LATE_COPY_S < LAST_START_S:
            late = replace(
                early,
                trip_id=f"{trip.trip_id}-n",
                block_id=f"{trip.block_id}-n",
                arrival_s=[t + LATE_COPY_S for t in early.arrival_s],
                departure_s=[t + LATE_COPY_S for t in early.departure_s],
            )
            out.trips[late.trip_id] = late
    return out


def recent_trips(net: Network, now: datetime, hours: float) -> Network:
    """`net` with only the trips that ran within the last `hours` before `now` (the simulator
    then drives just those; the feed imported is this network): those of the service day
    running at `now` and, just after its 03:00 start, the late ones of the day before."""
    from simulators.transit import SERVICE_DAY_OFFSET_S

    local = now.astimezone(get_city(net.city).tz) - timedelta(seconds=SERVICE_DAY_OFFSET_S)
    now_s = local.hour * 3600 + local.minute * 60 + local.second + SERVICE_DAY_OFFSET_S
    frames = [  # (services running that service day, `now` in its seconds)
        ({s for s, days in net.services.items() if local.weekday() in days}, now_s),
        (
            {s for s, days in net.services.items() if (local.weekday() - 1) % 7 in days},
            now_s + 86400,
        ),
    ]
    return replace(
        net,
        trips={
            trip_id: trip
            for trip_id, trip in net.trips.items()
            if any(
                trip.service_id in services
                and trip.departure_s[0] <= at_s
                and trip.arrival_s[-1] >= at_s - hours * 3600
                for services, at_s in frames
            )
        },
    )


def fill_transit(conninfo: str, now: datetime, workdir: Path, buses: Buses = Buses()) -> int:
    """Import the city's GTFS feed (a generated network, `around_the_clock`), drive one bus per
    block through the ingest's writer and the bus tracker (every prediction sampled for ETA
    accuracy) for the last `buses.minutes`, write the simulator's ground-truth stop arrivals
    into `stop_arrivals` as the tracker would record them, and run one maintenance pass;
    return the number of arrivals written."""
    from ingest.writer import Batch, BatchWriter
    from simulators.gtfs import generate, write_zip
    from simulators.transit import BusFleet
    from smartcity.db.connect import connect
    from smartcity.rollups.maintain import run_once
    from smartcity.settings import Settings
    from smartcity.transit.gtfs_import import import_feed
    from smartcity.transit.tracking_store import ARRIVALS_UPSERT, Position, Tracker

    city = get_city("astana")
    net = recent_trips(
        around_the_clock(generate(city, seed=buses.seed, routes=buses.routes)), now, buses.hours
    )
    feed = workdir / f"{city.slug}.zip"
    write_zip(net, feed)
    import_feed(conninfo, feed, feed_id=city.slug)

    truth: list[dict[str, object]] = []
    blocks = len({t.block_id for t in net.trips.values()})
    fleet = BusFleet(city, net, blocks, buses.seed, ground_truth=truth.append)
    start = now - timedelta(minutes=buses.minutes)
    batch = Batch.empty()
    fixes: list[tuple[datetime, Position]] = []
    for offset_s, topic, message in fleet.messages(start, ROOT, buses.interval_s):
        sent = start + timedelta(seconds=offset_s)
        if sent > now:
            break
        _add(batch, topic, message, sent)
        b = orjson.loads(message)
        fix = Position(b["vehicle_id"], city.slug, b["ts"] / 1000, b["trip_id"], b["start_date"],
                       b["lat"], b["lon"], b["speed_mps"])  # fmt: skip
        fixes.append((sent, fix))
    with BatchWriter(conninfo) as writer:
        writer.write(batch)
    # The tracker, one batch per reporting interval, as the ingest hook would run it.
    batches: dict[int, list[Position]] = {}
    for sent, fix in fixes:
        batches.setdefault(int((sent - start).total_seconds() // buses.interval_s), []).append(fix)
    tracker = Tracker(eta_sample_pct=100.0)
    with connect(conninfo, autocommit=True) as conn:
        for k in sorted(batches):
            made = min(start + timedelta(seconds=(k + 1) * buses.interval_s), now)
            tracker.process(conn, batches[k], now=made.timestamp())

    rows = []
    for t in truth:
        departed = datetime.fromisoformat(str(t["actual_departure"]))
        rows.append(
            (
                city.slug,
                t["trip_id"],
                datetime.strptime(str(t["start_date"]), "%Y%m%d").date(),
                t["stop_sequence"],
                t["stop_id"],
                t["route_id"],
                t["vehicle_id"],
                city.slug,
                datetime.fromisoformat(str(t["actual_arrival"])),
                departed if departed <= now else None,  # still at the stop
                datetime.fromisoformat(str(t["scheduled_arrival"])),
            )
        )
    with connect(conninfo) as conn, conn.cursor() as cur:
        # Over what the tracker estimated for the same visits: the ground truth.
        cur.executemany(ARRIVALS_UPSERT, rows)
        conn.commit()
        # As autovacuum would: the planner then joins the feed's tables by their keys.
        conn.execute("ANALYZE stop_arrivals, vehicle_positions, gtfs_trips, gtfs_stop_times")
    run_once(
        Settings(_env_file=None, database_url=conninfo, rollup_safety_lag_s=0),  # type: ignore[call-arg]
        now=now,
    )
    return len(rows)


# --- alerts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertHistory:
    """Closed alerts raised over the last day with known response times, written with explicit
    times (the engine and the API stamp now(), so a history has to be written directly)."""

    count: int = 24
    acknowledge_after_min: int = 7  # every other alert is acknowledged this long after raising
    clear_after_min: int = 30


def fill_alerts(conninfo: str, now: datetime, history: AlertHistory = AlertHistory()) -> int:
    """Run the alert rules over the last hour of lamp readings (open alerts for the faulty
    lamps, as the ingest's hook raises them), then add `history`; return the open alerts."""
    from psycopg.rows import dict_row

    from smartcity.alerts.engine import evaluate
    from smartcity.db.connect import connect

    with connect(conninfo) as conn:
        with conn.cursor(row_factory=dict_row) as cur:
            readings = cur.execute(
                "SELECT * FROM lighting_readings WHERE ts > %s ORDER BY ts",
                (now - timedelta(hours=1),),
            ).fetchall()
        outcome = evaluate(conn, {"lighting_readings": readings})
        severities = ("critical", "major", "minor", "warning")
        for i in range(history.count):
            raised = now - timedelta(hours=20) + timedelta(minutes=45 * i)
            acked = raised + timedelta(minutes=history.acknowledge_after_min) if i % 2 else None
            conn.execute(
                "INSERT INTO alerts (rule, domain, device_id, city, severity, state, message, "
                "first_occurrence, last_occurrence, raised_at, acknowledged_at, acknowledged_by, "
                "cleared_at, cleared_by, clear_reason) VALUES (%s, 'metering', %s, 'astana', %s, "
                "'cleared', 'history', %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    "meter_tamper" if i % 3 else "reverse_energy",
                    f"ast-meter-h{i:03d}",
                    severities[i % 4],
                    raised,
                    raised,
                    raised,
                    acked,
                    "operator" if acked else None,
                    raised + timedelta(minutes=history.clear_after_min),
                    "operator" if acked else "auto",
                    "fixed" if acked else "condition ended",
                ),
            )
        conn.commit()
    return len(outcome.raised)
