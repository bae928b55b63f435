"""A database filled the way the dashboards expect to find it: a lamp fleet reporting every
minute up to now, some lamps gone silent, some faulty, and a few rejected messages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson

from smartcity import topics
from smartcity.cities import get_city
from smartcity.errors import PayloadError

ROOT = "city"
MAX_PAYLOAD_BYTES = 65536


@dataclass(frozen=True)
class Fleet:
    lamps: int = 120
    minutes: int = 40
    silent: int = 8  # the first `silent` lamps stopped reporting 30 minutes ago
    faulty: int = 5  # the next `faulty` lamps report lamp_failure for the last 10 minutes
    seed: int = 3


def fill(conninfo: str, now: datetime, fleet: Fleet = Fleet()) -> int:
    """Write the fleet's readings (through the ingest's writer) and some dead letters; return
    the number of readings."""
    # Imported here: only the tests that fill a database need the ingest and the simulators.
    from ingest.decode import decode
    from ingest.writer import Batch, BatchWriter, DeadLetter
    from simulators.lighting import LampFleet

    city = get_city("astana")
    lamps = LampFleet(city, fleet.lamps, fleet.seed)
    batch = Batch.empty()
    readings = 0
    for minutes_ago in range(fleet.minutes, -1, -1):
        ts = now - timedelta(minutes=minutes_ago)
        for i, lamp in enumerate(lamps.lamps):
            if i < fleet.silent and minutes_ago < 30:
                continue
            payload = lamps.reading(i, ts)
            if fleet.silent <= i < fleet.silent + fleet.faulty and minutes_ago < 10:
                payload["lamp_failure"] = True
            topic = topics.lamp_telemetry(ROOT, city.slug, lamp.lamp_id)
            decoded = decode(
                topics.parse_inbound(ROOT, topic),
                orjson.dumps(payload),
                max_payload_bytes=MAX_PAYLOAD_BYTES,
            )
            for table, rows in decoded.rows.items():
                batch.rows.setdefault(table, []).extend(rows)
            batch.sightings.extend(decoded.sightings)
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
    return readings
