"""The lighting slice end to end, through the real broker and database."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import orjson
import psycopg

from simulators.clock import SimClock
from simulators.lighting import LampFleet
from simulators.publish import Publisher
from simulators.runner import run_lighting
from smartcity import topics
from smartcity.cities import get_city
from smartcity.settings import Settings
from tests.helpers import count_rows, running_ingest, wait_until

# A winter evening in Astana: some reports before dusk, most after, so both states appear.
START = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)


def _publish_fleet(settings: Settings, lamps: int, reports_each: int, seed: int = 7) -> int:
    """Publish `lamps` × `reports_each` readings as fast as possible; return how many the broker
    acknowledged."""
    fleet = LampFleet(get_city("astana"), lamps, seed)
    interval_s = 60.0
    with Publisher(settings, client_id=f"pub-{settings.mqtt_topic_root}") as pub:
        run_lighting(
            fleet,
            SimClock(START, speed=1e9),  # as fast as the publisher goes
            pub.publish,
            topic_root=settings.mqtt_topic_root,
            interval_s=interval_s,
            duration_s=interval_s * reports_each - 1e-6,
            stop=threading.Event(),
        )
        assert pub.flush(), "the broker did not acknowledge every reading"
        return pub.acknowledged


def test_published_readings_become_exactly_as_many_rows(settings: Settings) -> None:
    with running_ingest(settings):
        published = _publish_fleet(settings, lamps=300, reports_each=5)
        assert published == 1500
        wait_until(
            lambda: count_rows(settings, "lighting_readings") >= published,
            timeout_s=30,
            what=f"{published} rows",
        )
    assert count_rows(settings, "lighting_readings") == published
    with psycopg.connect(settings.database_conninfo) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT lamp_id), count(DISTINCT (lamp_id, ts)) FROM lighting_readings"
        ).fetchone()
        assert row == (300, published)
        devices = conn.execute("SELECT count(*) FROM devices WHERE domain = 'lighting'").fetchone()
        assert devices == (300,)
    assert count_rows(settings, "dead_letters") == 0


def test_the_same_readings_published_twice_stay_one_row_each(settings: Settings) -> None:
    with running_ingest(settings):
        first = _publish_fleet(settings, lamps=50, reports_each=4)
        wait_until(
            lambda: count_rows(settings, "lighting_readings") == first,
            timeout_s=30,
            what="the first copy",
        )
        second = _publish_fleet(settings, lamps=50, reports_each=4)  # same seed: same readings
        assert second == first
    # Stopping the ingest flushed and committed everything it had received.
    assert count_rows(settings, "lighting_readings") == first


def test_malformed_message_goes_to_dead_letters_and_good_ones_still_land(
    settings: Settings,
) -> None:
    root, city = settings.mqtt_topic_root, "astana"
    good = {
        "lamp_id": "ast-lamp-000001",
        # Recent: the ingest rejects readings from the future or the distant past.
        "ts": int(time.time() * 1000) - 60_000,
        "lamp_on": True,
        "dim_pct": 100,
        "power_w": 80.5,
        "voltage_v": 230.1,
        "current_a": 0.37,
        "power_factor": 0.95,
        "energy_wh": 1000.0,
        "operating_hours": 10.0,
    }
    with running_ingest(settings), Publisher(settings, client_id=f"pub-{root}") as pub:
        pub.publish(topics.lamp_telemetry(root, city, "ast-lamp-000001"), b"{not json")
        pub.publish(
            topics.lamp_telemetry(root, city, "ast-lamp-000002"), orjson.dumps(good)
        )  # id mismatch
        pub.publish(
            topics.lamp_telemetry(root, city, "ast-lamp-000001"),
            orjson.dumps({**good, "power_w": -5}),
        )
        pub.publish(topics.lamp_telemetry(root, city, "ast-lamp-000001"), orjson.dumps(good))
        assert pub.flush()
        wait_until(
            lambda: (
                count_rows(settings, "dead_letters") == 3
                and count_rows(settings, "lighting_readings") == 1
            ),
            timeout_s=15,
            what="3 dead letters and 1 row",
        )
    with psycopg.connect(settings.database_conninfo) as conn:
        reasons = sorted(
            str(r) for (r,) in conn.execute("SELECT reason FROM dead_letters").fetchall()
        )
        assert reasons == ["device_mismatch", "invalid_fields", "malformed_json"]
        raw = conn.execute(
            "SELECT payload FROM dead_letters WHERE reason = 'malformed_json'"
        ).fetchone()
        assert raw == (b"{not json",)
