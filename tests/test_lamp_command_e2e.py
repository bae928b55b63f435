"""A lamp command end to end: lighting simulator → broker → ingest → database, and an operator's
command through the API → broker → the simulated lamp, whose next telemetry (ingested like any
other) reports the new dim level within two reporting intervals."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from simulators.live import RunPlan, RunResult, run
from simulators.scenario import ScenarioOptions
from smartcity.security import Role
from smartcity.settings import Settings
from tests.apidata import auth, make_key, ready_client
from tests.helpers import running_ingest, wait_until

# Yesterday 23:00 in Astana (UTC+5): dark all year, the lamps' schedule says 100 %, so 30 % can
# only come from the command; in the past, because the ingest refuses readings from the future.
START = (datetime.now(UTC) - timedelta(days=1)).replace(hour=18, minute=0, second=0, microsecond=0)
INTERVAL_S = 60.0
# 20 simulated seconds per real one: a reporting interval is 3 real seconds, long enough that
# the ingest's batching (well under a second) does not blur the measurement.
SPEED = 20.0
LAMP = "ast-lamp-000002"
DIM_PCT = 30.0


def _readings(settings: Settings, lamp: str) -> list[tuple[datetime, float]]:
    with psycopg.connect(settings.database_conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT ts, dim_pct FROM lighting_readings WHERE lamp_id = %s ORDER BY ts", (lamp,)
        ).fetchall()
    return [(ts, float(dim)) for ts, dim in rows]


def _newest_ts(settings: Settings) -> datetime | None:
    with psycopg.connect(settings.database_conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT max(ts) FROM lighting_readings").fetchone()
    return None if row is None else row[0]


@pytest.fixture
def simulator(settings: Settings) -> Iterator[list[RunResult]]:
    """The lighting simulator publishing to the broker (lamps obey their cmd topics)."""
    plan = RunPlan(
        ScenarioOptions(lamps=5, lamp_interval_s=INTERVAL_S, seed=4),
        start=START,
        speed=SPEED,
        duration_s=4 * 3600,
        client_id=f"sim-{settings.mqtt_topic_root}",
    )
    stop = threading.Event()
    results: list[RunResult] = []
    thread = threading.Thread(
        target=lambda: results.append(run(plan, settings, stop)), name="test-simulator"
    )
    thread.start()
    try:
        yield results
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "the simulator did not stop"


def test_dim_command_shows_in_the_lamps_telemetry_within_two_intervals(
    settings: Settings, simulator: list[RunResult]
) -> None:
    interval = timedelta(seconds=INTERVAL_S)
    with running_ingest(settings), ready_client(settings) as client:
        # The lamp must have reported (and so be registered) before anyone can command it.
        wait_until(
            lambda: len(_readings(settings, LAMP)) >= 2,
            timeout_s=30,
            what="the simulated lamp's telemetry in the database",
        )
        assert {dim for _, dim in _readings(settings, LAMP)} == {100.0}
        key = make_key(settings, Role.OPERATOR, "e2e-operator")
        # The simulation has reached at least this instant when the command leaves the API.
        before = _newest_ts(settings)
        assert before is not None
        resp = client.post(
            f"/v1/lighting/lamps/{LAMP}/command", headers=auth(key), json={"dim_pct": DIM_PCT}
        )
        assert resp.status_code == 202, resp.text
        wait_until(
            lambda: any(dim == DIM_PCT for _, dim in _readings(settings, LAMP)),
            timeout_s=60,
            what="the lamp to report the commanded dim level",
        )
    readings = _readings(settings, LAMP)
    first = next(ts for ts, dim in readings if dim == DIM_PCT)
    assert first <= before + 2 * interval, (before, first)
    # Nothing before the command was dimmed, and from then on the lamp keeps the level.
    assert all(dim == 100.0 for ts, dim in readings if ts < first)
    assert all(dim == DIM_PCT for ts, dim in readings if ts >= first)
    # The other lamps kept their schedule.
    other = _readings(settings, "ast-lamp-000001")
    assert other
    assert all(dim == 100.0 for _, dim in other)
