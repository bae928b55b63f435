"""A database filled the way the dashboards expect to find it: a lamp fleet with a history
(every 15 minutes over the last `history_hours`, so a night is in it) then reporting every
minute up to now, some lamps gone silent, some faulty; a meter fleet reporting every 15
minutes over the same history; a few rejected messages; and one `smartcity maintain` pass, so
the rollups the energy panels read are filled."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import orjson

from smartcity import topics
from smartcity.cities import get_city
from smartcity.errors import PayloadError

if TYPE_CHECKING:
    from ingest.writer import Batch

ROOT = "city"
MAX_PAYLOAD_BYTES = 65536


@dataclass(frozen=True)
class Fleet:
    lamps: int = 120
    minutes: int = 40
    silent: int = 8  # the first `silent` lamps stopped reporting 30 minutes ago
    faulty: int = 5  # the next `faulty` lamps report lamp_failure for the last 10 minutes
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
                payload["lamp_failure"] = True
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
