"""Decoding and validation at the edge: every bad payload gets a stable reason."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from ingest.decode import decode
from smartcity.errors import PayloadError
from smartcity.topics import Domain, Feed, TopicInfo, parse_inbound

LAMP = TopicInfo("astana", Domain.LIGHTING, "ast-lamp-000001", Feed.LAMP_TELEMETRY)
GOOD = {
    "lamp_id": "ast-lamp-000001",
    "ts": "2026-11-23T18:00:00+05:00",
    "lamp_on": True,
    "dim_pct": 100,
    "power_w": 80.5,
    "voltage_v": 230.1,
    "current_a": 0.37,
    "power_factor": 0.95,
    "energy_wh": 1000.0,
    "operating_hours": 10.0,
}


def _reason(payload: bytes, info: TopicInfo | None = LAMP, limit: int = 65536) -> str:
    with pytest.raises(PayloadError) as err:
        decode(info, payload, max_payload_bytes=limit)
    assert err.value.detail  # every rejection explains itself
    return err.value.reason


def test_a_good_reading_becomes_one_row_and_one_sighting() -> None:
    out = decode(LAMP, orjson.dumps(GOOD), max_payload_bytes=65536)
    (row,) = out.rows["lighting_readings"]
    assert row[0] == datetime(2026, 11, 23, 13, 0, tzinfo=UTC)  # normalised to UTC
    assert row[1:3] == ("ast-lamp-000001", "astana")
    assert [s.device_id for s in out.sightings] == ["ast-lamp-000001"]


def test_epoch_milliseconds_are_accepted() -> None:
    ms = int(datetime(2026, 11, 23, 13, 0, tzinfo=UTC).timestamp() * 1000)
    out = decode(LAMP, orjson.dumps({**GOOD, "ts": ms}), max_payload_bytes=65536)
    assert out.rows["lighting_readings"][0][0] == datetime(2026, 11, 23, 13, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b"\xff\xfe\x00garbage", "malformed_json"),
        (b"", "malformed_json"),
        (b"[1, 2, 3]", "not_an_object"),
        (b'"a string"', "not_an_object"),
        (b'{"power_w": NaN}', "malformed_json"),
        (orjson.dumps({**GOOD, "power_w": -1}), "invalid_fields"),
        (orjson.dumps({**GOOD, "power_w": "80"}), "invalid_fields"),
        (orjson.dumps({**GOOD, "dim_pct": 101}), "invalid_fields"),
        (orjson.dumps({k: v for k, v in GOOD.items() if k != "ts"}), "invalid_fields"),
        (orjson.dumps({**GOOD, "ts": "2026-11-23T18:00:00"}), "invalid_fields"),
        (orjson.dumps({**GOOD, "ts": True}), "invalid_fields"),
        (orjson.dumps({**GOOD, "ts": -5}), "invalid_fields"),
        (orjson.dumps({**GOOD, "ts": "yesterday"}), "invalid_fields"),
        (orjson.dumps({**GOOD, "lamp_on": "maybe"}), "invalid_fields"),
        (orjson.dumps({**GOOD, "lamp_id": "ast-lamp-000002"}), "device_mismatch"),
        (orjson.dumps({**GOOD, "lamp_id": "a/b"}), "invalid_fields"),
    ],
)
def test_bad_payloads_are_rejected_with_a_reason(payload: bytes, reason: str) -> None:
    assert _reason(payload) == reason


def test_oversized_payload_is_rejected_before_parsing() -> None:
    assert _reason(b"x" * 100, limit=64) == "payload_too_large"


def test_unknown_topic_is_rejected() -> None:
    assert _reason(orjson.dumps(GOOD), info=None) == "unknown_topic"


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("city/astana/lighting/l1/telemetry", ("astana", "lighting", "l1", "lamp_telemetry")),
        ("city/aktobe/metering/m1/reading", ("aktobe", "metering", "m1", "meter_reading")),
        ("city/aktobe/metering/gateway/g1/senml", ("aktobe", "metering", "g1", "gateway_senml")),
        ("city/shymkent/transit/b1/position", ("shymkent", "transit", "b1", "vehicle_position")),
        ("city/shymkent/transit/b1/status", ("shymkent", "transit", "b1", "device_status")),
        ("city/astana/lighting/l1/cmd", None),
        ("other/astana/lighting/l1/telemetry", None),
        ("city/astana/parking/p1/telemetry", None),
        ("city/astana/lighting/l1/telemetry/extra", None),
        ("city/ast ana/lighting/l1/telemetry", None),
    ],
)
def test_topics_parse_to_their_feed(topic: str, expected: tuple[str, ...] | None) -> None:
    info = parse_inbound("city", topic)
    if expected is None:
        assert info is None
    else:
        assert info is not None
        assert (info.city, info.domain.value, info.device_id, info.feed.value) == expected
