"""Operator aggregates and public city KPIs against a database filled with the lighting
simulator's lamps (plus gaps, resets, faults, late and duplicate readings) and meters, after a
maintenance pass; every figure is compared with the same figure computed in numpy from the raw
rows (tests/rollup_reference.py), whichever tiers answer."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.routes.aggregates import LightingPage
from smartcity.rollups.maintain import run_once
from smartcity.security import Role
from smartcity.settings import Settings
from tests.apidata import auth, make_key, ready_client, revoke_key
from tests.rollup_reference import (
    CITY,
    START,
    lamp_data,
    lighting_reference,
    meter_data,
    metering_reference,
    write_lamps,
    write_meters,
)

END = START + timedelta(hours=36)
# The rollups are folded in up to here; later readings must come from the raw tier.
WATERMARK = START + timedelta(hours=27, minutes=30)
LIGHTING_FIGURES = ("energy_wh", "full_power_energy_wh", "burn_h", "readings")


@pytest.fixture
def filled(settings: Settings) -> dict[str, Any]:
    lamps = lamp_data()
    meters = meter_data()
    write_lamps(settings.database_conninfo, lamps.rows)
    write_meters(settings.database_conninfo, meters.rows)
    run_once(settings.model_copy(update={"rollup_safety_lag_s": 0}), now=END)
    with psycopg.connect(settings.database_conninfo, autocommit=True) as conn:
        conn.execute("UPDATE rollup_state SET watermark = %s", (WATERMARK,))
    return {
        "lighting": lighting_reference(lamps.rows),
        "metering": metering_reference(meters.rows),
    }


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with ready_client(settings) as c:
        yield c


@pytest.fixture
def viewer(settings: Settings) -> dict[str, str]:
    return auth(make_key(settings, Role.VIEWER, "agg-viewer"))


def _get(client: TestClient, path: str, headers: dict[str, str], **params: str | int) -> Any:
    resp = client.get(path, headers=headers, params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)


def _check_lighting(item: dict[str, Any], want: dict[str, float]) -> None:
    assert _close(item["energy_kwh"], want["energy_wh"] / 1000), item
    assert _close(
        item["saved_by_dimming_kwh"], (want["full_power_energy_wh"] - want["energy_wh"]) / 1000
    ), item
    assert _close(item["burn_h"], want["burn_h"]), item
    assert item["readings"] == want["readings"], item
    if want["on_readings"]:
        assert _close(item["mean_dim_pct"], round(want["dim_pct_sum"] / want["on_readings"], 3))
    assert item["lamp_hours_reporting"] == want["lamp_hours_reporting"], item
    assert item["lamp_hours_faulty"] == want["lamp_hours_faulty"], item


@pytest.mark.parametrize("level", ["lamp", "cabinet", "district", "city"])
def test_daily_lighting_equals_raw_rows_across_tiers(
    filled: dict[str, Any], client: TestClient, viewer: dict[str, str], level: str
) -> None:
    ref = filled["lighting"]
    body = _get(
        client,
        "/v1/aggregates/lighting",
        viewer,
        level=level,
        bucket="1d",
        **{"from": START.isoformat(), "to": END.isoformat()},
    )
    # Whole local days 10–12 March: day 10 and 11 from the daily rollups, day 12 from the
    # hourly rollups up to the watermark and raw rows after it.
    assert body["tiers"] == ["daily", "hourly", "raw"]
    assert body["from"] == "2026-03-10T00:00:00+05:00"
    assert body["to"] == "2026-03-13T00:00:00+05:00"
    want = {(k, t): f for (tier, lv, k, t), f in ref.items() if tier == "daily" and lv == level}
    got = {(i["key"], date.fromisoformat(i["bucket"][:10])): i for i in body["items"]}
    assert set(got) == set(want)
    for k, item in got.items():
        _check_lighting(item, want[k])
    assert body["next_offset"] is None


def test_rollup_pages_are_reused_until_the_watermark_moves(
    settings: Settings, filled: dict[str, Any], client: TestClient, viewer: dict[str, str]
) -> None:
    """Days 10 and 11 come from the daily rollups alone: the page is built once and reused
    while the rollups' watermark stands (the rollups change only when it moves)."""
    params = {"level": "district", "bucket": "1d"}
    params |= {"from": "2026-03-10T00:00:00+05:00", "to": "2026-03-12T00:00:00+05:00"}
    first = client.get("/v1/aggregates/lighting", headers=viewer, params=params)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["tiers"] == ["daily"]
    # Built as plain JSON: exactly the documented model's fields and formats.
    assert LightingPage.model_validate(body).model_dump(mode="json", by_alias=True) == body
    with psycopg.connect(settings.database_conninfo, autocommit=True) as conn:
        conn.execute("UPDATE lighting_daily SET energy_wh = energy_wh + 5000")
        again = client.get("/v1/aggregates/lighting", headers=viewer, params=params)
        assert again.content == first.content  # the watermark stands: the same page
        conn.execute("UPDATE rollup_state SET watermark = watermark + interval '1 second'")
    moved = _get(client, "/v1/aggregates/lighting", viewer, **params)
    before = {(i["key"], i["bucket"]): i["energy_kwh"] for i in body["items"]}
    after = {(i["key"], i["bucket"]): i["energy_kwh"] for i in moved["items"]}
    assert set(after) == set(before)
    for k, kwh in after.items():
        assert _close(kwh, before[k] + 5.0), k


def test_hourly_lighting_mixes_rollups_and_raw_and_pages(
    filled: dict[str, Any], client: TestClient, viewer: dict[str, str]
) -> None:
    ref = filled["lighting"]
    want = {
        (k, t): f for (tier, lv, k, t), f in ref.items() if tier == "hourly" and lv == "district"
    }
    items: list[dict[str, Any]] = []
    offset: int | None = 0
    pages = 0
    while offset is not None:
        body = _get(
            client,
            "/v1/aggregates/lighting",
            viewer,
            level="district",
            bucket="1h",
            tz="UTC",
            limit=40,
            offset=offset,
            **{"from": START.isoformat(), "to": END.isoformat()},
        )
        assert body["tiers"] == ["hourly", "raw"]
        items += body["items"]
        offset = body["next_offset"]
        pages += 1
    assert pages > 1
    got = {(i["key"], datetime.fromisoformat(i["bucket"])): i for i in items}
    assert len(got) == len(items)
    assert set(got) == set(want)
    for k, item in got.items():
        _check_lighting(item, want[k])
    # The order is bucket, then key.
    assert [(i["bucket"], i["key"]) for i in items] == sorted(
        (i["bucket"], i["key"]) for i in items
    )


def test_quarter_hours_add_up_to_the_hours(
    filled: dict[str, Any], client: TestClient, viewer: dict[str, str]
) -> None:
    ref = filled["lighting"]
    start = START + timedelta(hours=2)
    body = _get(
        client,
        "/v1/aggregates/lighting",
        viewer,
        level="city",
        bucket="15m",
        **{"from": start.isoformat(), "to": (start + timedelta(hours=3)).isoformat()},
    )
    assert body["tiers"] == ["raw"]
    assert len(body["items"]) == 12
    assert all(i["lamp_hours_reporting"] is None for i in body["items"])
    for h in range(3):
        hour = start + timedelta(hours=h)
        quarters = body["items"][4 * h : 4 * h + 4]
        want = ref[("hourly", "city", CITY.slug, hour)]
        assert _close(sum(q["energy_kwh"] for q in quarters), want["energy_wh"] / 1000)
        assert sum(q["readings"] for q in quarters) == want["readings"]


def test_lamp_filter_by_district_and_key(
    filled: dict[str, Any], client: TestClient, viewer: dict[str, str]
) -> None:
    ref = filled["lighting"]
    lamp = next(k for (tier, lv, k, _t) in ref if tier == "daily" and lv == "lamp")
    body = _get(
        client,
        "/v1/aggregates/lighting",
        viewer,
        level="lamp",
        key=lamp,
        bucket="1d",
        **{"from": START.isoformat(), "to": END.isoformat()},
    )
    assert {i["key"] for i in body["items"]} == {lamp}
    district = body["items"][0] and next(
        k for (tier, lv, k, _t) in ref if tier == "daily" and lv == "district"
    )
    body = _get(
        client,
        "/v1/aggregates/lighting",
        viewer,
        level="district",
        district=district,
        **{"from": START.isoformat(), "to": END.isoformat()},
    )
    assert {i["key"] for i in body["items"]} == {district}


@pytest.mark.parametrize("kind", ["electricity", "water"])
@pytest.mark.parametrize(("level", "bucket"), [("meter", "1d"), ("district", "1h"), ("city", "1d")])
def test_meter_consumption_equals_raw_rows(
    filled: dict[str, Any],
    client: TestClient,
    viewer: dict[str, str],
    kind: str,
    level: str,
    bucket: str,
) -> None:
    ref = filled["metering"]
    tier = "daily" if bucket == "1d" else "hourly"
    body = _get(
        client,
        f"/v1/aggregates/meters/{kind}",
        viewer,
        level=level,
        bucket=bucket,
        tz="Asia/Almaty",
        limit=10_000,
        **{"from": START.isoformat(), "to": END.isoformat()},
    )
    assert body["unit"] == ("kWh" if kind == "electricity" else "m3")
    assert "raw" in body["tiers"]
    want = {
        (k, t): f
        for (tr, lv, k, kd, t), f in ref.items()
        if tr == tier and lv == level and kd == kind
    }

    def when(i: dict[str, Any]) -> object:
        ts = datetime.fromisoformat(i["bucket"])
        return ts.date() if bucket == "1d" else ts.astimezone(UTC)

    got = {(i["key"], when(i)): i for i in body["items"]}
    assert set(got) == set(want)
    for k, item in got.items():
        assert _close(item["consumption"], want[k]["consumption"]), (k, item)
        assert item["readings"] == want[k]["readings"], (k, item)


def test_csv_download_parses_and_matches_json(
    filled: dict[str, Any], client: TestClient, viewer: dict[str, str]
) -> None:
    params = {"level": "cabinet", "bucket": "1d", "from": START.isoformat(), "to": END.isoformat()}
    js = _get(client, "/v1/aggregates/lighting", viewer, **params)
    for resp in (
        client.get("/v1/aggregates/lighting", headers=viewer, params={**params, "format": "csv"}),
        client.get(
            "/v1/aggregates/lighting", headers={**viewer, "Accept": "text/csv"}, params=params
        ),
    ):
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/csv")
        assert "attachment" in resp.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(resp.text)))
        assert [(r["bucket"], r["key"]) for r in rows] == [
            (i["bucket"], i["key"]) for i in js["items"]
        ]
        assert [float(r["energy_kwh"]) for r in rows] == [i["energy_kwh"] for i in js["items"]]
    resp = client.get(
        "/v1/aggregates/meters/water",
        headers=viewer,
        params={
            "level": "meter",
            "bucket": "1h",
            "limit": 5,
            "format": "csv",
            "from": START.isoformat(),
            "to": END.isoformat(),
        },
    )
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert len(rows) == 5
    assert list(rows[0]) == ["bucket", "key", "readings", "consumption"]
    assert resp.headers["x-next-offset"] == "5"


def test_operator_routes_refuse_without_a_valid_key(settings: Settings, client: TestClient) -> None:
    key = make_key(settings, Role.VIEWER, "soon-revoked")
    for path in ("/v1/aggregates/lighting", "/v1/aggregates/meters/electricity"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=auth("sck_not-a-real-key")).status_code == 401
        assert client.get(path, headers=auth(key)).status_code == 200
    revoke_key(settings, "soon-revoked")
    for path in ("/v1/aggregates/lighting", "/v1/aggregates/meters/water"):
        resp = client.get(path, headers=auth(key))
        assert resp.status_code == 401
        assert resp.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"from": "2026-03-11T00:00:00Z", "to": "2026-03-10T00:00:00Z"}, "before"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-03-10T00:00:00Z", "bucket": "15m"}, "7 days"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2027-03-10T00:00:00Z", "bucket": "1d"}, "400"),
        ({"district": "atlantis"}, "unknown district"),
        ({"district": "esil", "level": "city"}, "level=district"),
        ({"city": "gotham"}, "unknown city"),
        ({"tz": "Mars/Olympus"}, "time zone"),
        ({"tz": "../../etc/passwd"}, "time zone"),
        ({"tz": "posixrules"}, "time zone"),
        ({"from": "9999-12-31T23:59:59Z", "to": "9999-12-31T23:59:59Z"}, "between"),
        ({"from": "0001-01-01T00:00:00+14:00"}, "between"),
        ({"bucket": "5m"}, "errors"),
        ({"limit": 0}, "errors"),
    ],
)
def test_bad_parameters_are_422_problems(
    settings: Settings,
    client: TestClient,
    viewer: dict[str, str],
    params: dict[str, str],
    says: str,
) -> None:
    for path in ("/v1/aggregates/lighting", "/v1/aggregates/meters/water"):
        resp = client.get(path, headers=viewer, params=params)
        assert resp.status_code == 422, resp.text
        assert resp.headers["content-type"] == "application/problem+json"
        assert says in resp.text


def test_public_city_kpis_are_city_level_and_cacheable(
    filled: dict[str, Any], client: TestClient
) -> None:
    ref = filled["lighting"]
    mref = filled["metering"]
    days = [date(2026, 3, 10), date(2026, 3, 11), date(2026, 3, 12)]
    resp = client.get("/v1/cities/astana/kpis", params={"from": "2026-03-10", "to": "2026-03-12"})
    assert resp.status_code == 200, resp.text
    assert "public" in resp.headers["cache-control"]
    body = resp.json()
    city = [
        ref[("daily", "city", CITY.slug, d)] for d in days if ("daily", "city", CITY.slug, d) in ref
    ]
    assert _close(body["lighting"]["energy_kwh"], sum(c["energy_wh"] for c in city) / 1000)
    reporting = sum(c["lamp_hours_reporting"] for c in city)
    faulty = sum(c["lamp_hours_faulty"] for c in city)
    assert _close(body["lighting"]["availability_pct"], round(100 * (1 - faulty / reporting), 4))
    for kind in ("electricity", "water"):
        want = sum(
            f["consumption"]
            for (tr, lv, _k, kd, _t), f in mref.items()
            if tr == "daily" and lv == "city" and kd == kind
        )
        assert _close(body[kind]["consumption"], want), kind
    # Privacy: nothing in the answer names a lamp or a meter.
    assert "ast-meter" not in resp.text
    assert "lamp-0" not in resp.text
    assert client.get("/v1/cities/gotham/kpis").status_code == 404
    for bad in (
        {"from": "2026-03-12", "to": "2026-03-10"},
        {"to": "9999-12-31"},
        {"from": "2020-01-01", "to": "2026-01-01"},
    ):
        resp = client.get("/v1/cities/astana/kpis", params=bad)
        assert resp.status_code == 422, (bad, resp.text)


def test_transit_arrivals_and_on_time_share(
    settings: Settings, client: TestClient, viewer: dict[str, str]
) -> None:
    # Arrivals as the bus tracker records them: two routes over two hours, delays in seconds.
    t0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)  # 07:00 in Shymkent (UTC+5)
    delays = [-120, -30, 0, 45, 200, 299, 301, 600]
    rows = []
    for i, delay in enumerate(delays * 2):
        route = "12" if i % 2 == 0 else "7"
        arrived = t0 + timedelta(minutes=7 * i + 1)
        rows.append((f"trip-{i}", i, f"stop-{i % 3}", route, arrived, delay))
    with psycopg.connect(settings.database_conninfo, autocommit=True) as conn:
        for trip, seq, stop, route, arrived, delay in rows:
            conn.execute(
                "INSERT INTO stop_arrivals (feed_id, trip_id, start_date, stop_sequence, stop_id, "
                "route_id, vehicle_id, city, arrived_at, scheduled_arrival) "
                "VALUES ('shymkent', %s, '2026-11-22', %s, %s, %s, 'bus-1', 'shymkent', %s, %s)",
                (trip, seq, stop, route, arrived, arrived - timedelta(seconds=delay)),
            )
        # Another city's arrival must not count.
        conn.execute(
            "INSERT INTO stop_arrivals (feed_id, trip_id, start_date, stop_sequence, stop_id, "
            "route_id, vehicle_id, city, arrived_at, scheduled_arrival) "
            "VALUES ('astana', 'x', '2026-11-22', 1, 's', '12', 'bus-9', 'astana', %s, %s)",
            (t0, t0),
        )
    span = {"from": t0.isoformat(), "to": (t0 + timedelta(hours=2)).isoformat()}
    body = _get(
        client, "/v1/aggregates/transit/arrivals", viewer, level="route", bucket="1h", **span
    )
    want: dict[tuple[str, datetime], list[int]] = {}
    for _trip, _seq, _stop, route, arrived, delay in rows:
        hour = arrived.replace(minute=0)
        want.setdefault((route, hour), []).append(delay)
    got = {(i["key"], datetime.fromisoformat(i["bucket"])): i for i in body["items"]}
    assert set(got) == set(want)
    for k, ds in want.items():
        item = got[k]
        on_time = sum(-60 <= d <= 300 for d in ds)
        assert item["arrivals"] == len(ds)
        assert item["early"] == sum(d < -60 for d in ds)
        assert item["late"] == sum(d > 300 for d in ds)
        assert item["on_time"] == on_time
        assert _close(item["on_time_pct"], round(100 * on_time / len(ds), 3))
        assert _close(item["mean_delay_s"], round(sum(ds) / len(ds), 3))
    city = _get(
        client, "/v1/aggregates/transit/arrivals", viewer, level="city", bucket="1d", **span
    )
    assert [i["arrivals"] for i in city["items"]] == [len(rows)]
    resp = client.get(
        "/v1/aggregates/transit/arrivals",
        headers=viewer,
        params={**span, "level": "stop", "format": "csv"},
    )
    table = list(csv.DictReader(io.StringIO(resp.text)))
    assert sum(int(r["arrivals"]) for r in table) == len(rows)
    assert client.get("/v1/aggregates/transit/arrivals").status_code == 401
