"""The `cabinet_imbalance` rule, fed through the broker and the ingest, on the real database."""

from __future__ import annotations

from datetime import datetime, timedelta

import orjson
import psycopg

from simulators.lighting import LampFleet
from smartcity import solar
from smartcity.alerts import cabinet
from smartcity.cities import get_city
from smartcity.settings import Settings
from tests.helpers import count_rows, running_ingest, wait_until
from tests.test_alerts import CITY, _alerts, _lamp_topic, _night, _publish


def _reading(lamp_id: str, cab: str, ts: datetime, dim: float, power: float) -> bytes:
    return orjson.dumps(
        {
            "lamp_id": lamp_id,
            "cabinet_id": cab,
            "ts": int(ts.timestamp() * 1000),
            "lamp_on": True,
            "dim_pct": dim,
            "power_w": round(power, 2),
            "voltage_v": 230.0,
            "current_a": round(power / 230.0 / 0.95, 3),
            "power_factor": 0.95,
            "energy_wh": 1000.0,
            "operating_hours": 10.0,
        }
    )


def test_cabinet_imbalance_fires_from_readings_through_the_broker(settings: Settings) -> None:
    """Cabinet A's six lamps all draw 14 % over their dim level (each under the lamp rules'
    25 %): one cabinet alert. Cabinet B has one lamp whose dimmer is broken (+82 %): that is
    the lamp's dimming failure, and B's median stays put."""
    night = _night()
    msgs: list[tuple[str, bytes]] = []
    lamps = {
        f"ast-lamp-cab{c}-{i}": (f"ast-cab-test-{c}", 40.0 + 20.0 * i)
        for c in "ab"
        for i in range(6)
    }
    for lamp_id, (cab, rated) in lamps.items():
        wobble = 1 + 0.01 * (int(lamp_id[-1]) % 3 - 1)  # a lamp's own ±1 %, steady
        # Full level three to two hours before: the references (the rule's lag is 2 h).
        for k in range(13):
            t = night - timedelta(hours=3) + timedelta(minutes=5 * k)
            msgs.append((_lamp_topic(settings, lamp_id), _reading(lamp_id, cab, t, 100.0, rated)))
        # Dimmed to 50 % now, every minute for five minutes.
        for k in range(5):
            t = night - timedelta(minutes=4 - k)
            power = rated * (0.1 + 0.9 * 0.5) * wobble
            if cab.endswith("a"):
                power *= 1.14
            elif lamp_id.endswith("b-0"):
                power = rated  # its dimmer does nothing
            msgs.append((_lamp_topic(settings, lamp_id), _reading(lamp_id, cab, t, 50.0, power)))
    with running_ingest(settings):
        _publish(settings, msgs)
        wait_until(
            lambda: count_rows(settings, "lighting_readings") == len(msgs),
            timeout_s=30,
            what="every reading committed",
        )
        wait_until(
            lambda: len(_alerts(settings)) >= 2, timeout_s=20, what="the alerts of the last batch"
        )
    assert _alerts(settings) == [
        ("ast-cab-test-a", "cabinet_imbalance", "active", 1),
        ("ast-lamp-cabb-0", "dimming_failure", "active", 1),
    ]
    with psycopg.connect(settings.database_conninfo) as conn:
        message = conn.execute("SELECT message FROM alerts WHERE rule = 'cabinet_imbalance'")
        row = message.fetchone()
    assert row is not None
    assert "the 6 lit lamps of cabinet ast-cab-test-a draw 114%" in str(row[0])


def test_cabinet_imbalance_quiet_through_a_whole_night(settings: Settings) -> None:
    """The lighting simulator's lamps (no faults) from before dusk to after dawn, every five
    minutes: full level in the evening, dimmed after midnight, switching at both ends."""
    city = get_city(CITY)
    fleet = LampFleet(city, 40, seed=5)
    day = _night().astimezone(city.tz).date() - timedelta(days=1)
    events = solar.sunrise_sunset(city.lat, city.lon, day, city.tz)
    nxt = solar.sunrise_sunset(city.lat, city.lon, day + timedelta(days=1), city.tz)
    assert events is not None
    assert nxt is not None
    dusk, dawn = events[1] - timedelta(minutes=30), nxt[0] + timedelta(minutes=30)
    msgs: list[tuple[str, bytes]] = []
    t = dusk
    while t <= dawn:
        for i, spec in enumerate(fleet.lamps):
            msgs.append((_lamp_topic(settings, spec.lamp_id), orjson.dumps(fleet.reading(i, t))))
        t += timedelta(minutes=5)
    with running_ingest(settings):
        _publish(settings, msgs)
        wait_until(
            lambda: count_rows(settings, "lighting_readings") == len(msgs),
            timeout_s=60,
            what="every reading committed",
        )
    assert count_rows(settings, "lighting_readings", "lamp_on AND dim_pct < 90") > 0
    assert _alerts(settings) == []
    # Not quiet for want of looking: late in the night every cabinet has its references and
    # the rule gives a verdict (quiet) for each.
    probe = nxt[0] - timedelta(hours=1)
    probe -= timedelta(seconds=(probe - dusk).total_seconds() % 300)  # on the 5-minute grid
    cabinets = sorted({lamp.cabinet_id for lamp in fleet.lamps})
    with psycopg.connect(settings.database_conninfo) as conn:
        found = cabinet.verdicts(
            conn, [{"cabinet_id": c, "city": CITY, "ts": probe} for c in cabinets]
        )
    big = {c for c in cabinets if sum(lp.cabinet_id == c for lp in fleet.lamps) >= 5}
    assert big
    assert set(found) == big
    assert not any(v.firing for _, _, v in found.values())
