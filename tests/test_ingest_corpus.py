"""A corpus of bad inputs: each ends in dead_letters with its own clear reason, while good
traffic published between them lands untouched."""

from __future__ import annotations

import time

import orjson
import psycopg

from smartcity import topics
from smartcity.bench.mqttload import AckedPublisher, meter_payload
from smartcity.settings import Settings
from smartcity.topics import Domain
from tests.helpers import count_rows, running_ingest, wait_until

Case = tuple[str, str, bytes, str]  # name, topic, payload, expected reason


def _corpus(root: str, now_s: int) -> list[Case]:
    meter = "ast-em-000777"
    m_topic = topics.meter_reading(root, "astana", meter)
    g_topic = topics.gateway_senml(root, "astana", "ast-gw-7")
    v_topic = topics.vehicle_position(root, "shymkent", "shy-bus-0007")
    l_topic = topics.lamp_telemetry(root, "astana", "ast-lamp-000007")
    ts_ms = (now_s - 600) * 1000
    good_m = orjson.loads(meter_payload(meter, ts_ms, 5.0))
    lamp = {
        "lamp_id": "ast-lamp-000007",
        "ts": ts_ms,
        "lamp_on": True,
        "dim_pct": 100.0,
        "power_w": 80.5,
        "voltage_v": 230.1,
        "current_a": 0.37,
        "power_factor": 0.95,
        "energy_wh": 1000.0,
        "operating_hours": 10.0,
    }
    bus = {"vehicle_id": "shy-bus-0007", "ts": ts_ms, "lat": 42.3171, "lon": 69.5862}
    rec = {"bn": f"{meter}:", "bt": now_s - 600, "n": "energy_import", "u": "kWh", "v": 5.0}

    def m(**changes: object) -> bytes:
        return orjson.dumps({**good_m, **changes})

    def drop(key: str) -> bytes:
        return orjson.dumps({k: v for k, v in good_m.items() if k != key})

    def pack(*records: dict[str, object]) -> bytes:
        return orjson.dumps(list(records))

    return [
        ("truncated JSON", m_topic, b'{"meter_id": "ast-em-000777", "ts":', "malformed_json"),
        ("not JSON at all", m_topic, b"{not json", "malformed_json"),
        ("non-UTF-8 bytes", m_topic, b"\xff\xfe\x00garbage", "malformed_json"),
        ("non-UTF-8 inside a string", m_topic, b'{"meter_id": "\xff\xfe"}', "malformed_json"),
        ("empty payload", m_topic, b"", "malformed_json"),
        ("NaN", m_topic, b'{"meter_id": "ast-em-000777", "power_w": NaN}', "malformed_json"),
        ("Infinity", m_topic, b'{"energy_import_kwh": Infinity}', "malformed_json"),
        ("number overflowing a double", m_topic, b'{"power_w": 1e999}', "malformed_json"),
        ("nesting 2000 deep", m_topic, b"[" * 2000 + b"]" * 2000, "malformed_json"),
        ("a JSON array", m_topic, b"[1, 2, 3]", "not_an_object"),
        ("JSON null", m_topic, b"null", "not_an_object"),
        ("negative power", m_topic, m(power_w=-5.0), "invalid_fields"),
        ("number as a string", m_topic, m(power_w="1830"), "invalid_fields"),
        ("register as a boolean", m_topic, m(energy_import_kwh=True), "invalid_fields"),
        ("unknown meter kind", m_topic, m(kind="gas"), "invalid_fields"),
        ("missing kind", m_topic, drop("kind"), "invalid_fields"),
        ("electricity without register", m_topic, drop("energy_import_kwh"), "invalid_fields"),
        ("ts without offset", m_topic, m(ts="2026-11-23T18:00:00"), "invalid_fields"),
        ("ts as a word", m_topic, m(ts="yesterday"), "invalid_fields"),
        ("ts as a boolean", m_topic, m(ts=False), "invalid_fields"),
        ("id with a slash", m_topic, m(meter_id="ast/em"), "invalid_fields"),
        ("id of another meter", m_topic, m(meter_id="ast-em-000778"), "device_mismatch"),
        ("a day in the future", m_topic, m(ts=(now_s + 86400) * 1000), "future_timestamp"),
        ("ancient (1970)", m_topic, m(ts=1000), "too_old"),
        ("huge payload", m_topic, b'{"pad": "' + b"x" * 100_000 + b'"}', "payload_too_large"),
        ("SenML pack as an object", g_topic, orjson.dumps(rec), "not_an_object"),
        ("empty SenML pack", g_topic, b"[]", "invalid_senml"),
        ("SenML value as a string", g_topic, pack(rec, {"n": "power", "u": "W", "v": "9"}),
         "invalid_senml"),
        ("SenML unknown quantity", g_topic, pack(rec, {"n": "gas", "u": "m3", "v": 1}),
         "invalid_senml"),
        ("SenML wrong unit", g_topic, pack({**rec, "u": "Wh"}), "invalid_senml"),
        ("SenML relative time", g_topic, pack({**rec, "bt": 5}), "invalid_senml"),
        ("SenML name without quantity", g_topic, pack({**rec, "bn": "", "n": "x"}),
         "invalid_senml"),
        ("SenML negative power", g_topic, pack(rec, {"n": "power", "u": "W", "v": -1}),
         "invalid_senml"),
        ("SenML record not an object", g_topic, pack(rec) [:-1] + b", 7]", "invalid_senml"),
        ("bus in another city", v_topic, orjson.dumps({**bus, "lat": 51.17, "lon": 71.45}),
         "outside_city"),
        ("latitude out of range", v_topic, orjson.dumps({**bus, "lat": 200.0}), "invalid_fields"),
        ("bus id of another bus", v_topic, orjson.dumps({**bus, "vehicle_id": "shy-bus-0008"}),
         "device_mismatch"),
        ("lamp_on as a word", l_topic, orjson.dumps({**lamp, "lamp_on": "maybe"}),
         "invalid_fields"),
        ("unknown status", topics.device_status(root, "astana", Domain.LIGHTING, "l7"),
         b'{"status": "sleeping"}', "invalid_fields"),
        ("unknown city", topics.meter_reading(root, "gotham", meter), m(), "unknown_city"),
        ("unknown domain", f"{root}/astana/parking/p7/status", b'{"status": "online"}',
         "unknown_topic"),
        ("space in a device id", f"{root}/astana/metering/ast em/reading", m(), "unknown_topic"),
    ]  # fmt: skip


def test_every_bad_input_is_dead_lettered_with_its_reason_and_good_traffic_lands(
    settings: Settings,
) -> None:
    root = settings.mqtt_topic_root
    now_s = int(time.time())
    corpus = _corpus(root, now_s)
    assert len(corpus) >= 30
    assert len({(t, p) for _, t, p, _ in corpus}) == len(corpus), "cases must be distinguishable"
    good = 0
    with (
        running_ingest(settings),
        AckedPublisher(settings.mqtt_host, settings.mqtt_port, f"pub-{root}") as pub,
    ):
        for i, (_, topic, payload, _) in enumerate(corpus):
            pub.publish(topic, payload)
            for k in range(3):  # good readings of other meters between the bad ones
                meter = f"ast-em-{i:03d}{k:03d}"
                pub.publish(
                    topics.meter_reading(root, "astana", meter),
                    meter_payload(meter, (now_s - 60) * 1000, 1.0),
                )
                good += 1
        assert pub.flush()
        wait_until(
            lambda: (
                count_rows(settings, "dead_letters") == len(corpus)
                and count_rows(settings, "meter_readings") == good
            ),
            timeout_s=30,
            what=f"{len(corpus)} dead letters and {good} rows",
        )
    with psycopg.connect(settings.database_conninfo) as conn:
        stored = {
            (str(topic), bytes(payload)): (str(reason), str(detail), int(size))
            for topic, payload, reason, detail, size in conn.execute(
                "SELECT topic, payload, reason, detail, payload_bytes FROM dead_letters"
            ).fetchall()
        }
    for name, topic, payload, reason in corpus:
        key = (topic, payload[:4096])  # raw bytes are kept, capped
        assert key in stored, f"{name}: not in dead_letters"
        got_reason, detail, size = stored[key]
        assert got_reason == reason, f"{name}: reason {got_reason!r} ({detail}), want {reason!r}"
        assert len(detail) > 15, f"{name}: detail {detail!r} does not explain"
        assert size == len(payload)
    (_, topic, payload, _) = next(c for c in corpus if c[0] == "SenML value as a string")
    senml_detail = stored[(topic, payload)][1]
    assert "record 1" in senml_detail, senml_detail  # a bad pack names the record
