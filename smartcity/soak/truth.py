"""Ground truth for the soak's alert and ETA scores, and what the system predicted meanwhile.

* **Device faults.** The simulators' own fault rates plan faults a simulated day at a time;
  a soak of minutes would see almost none, and rates high enough to show some would put
  several faults on one device at once (the alert benchmark leaves such faults out). So the
  soak plans its own: `faults_per_kind` devices per city for each kind in `DEVICE_FAULTS`,
  each device at most one fault, starting at a uniform moment in [5 %, 60 %] of the simulated
  span, lasting as the simulators' kind lasts (`simulators.faults.FAULTS`). The plan is a
  function of the city's seed and the spec only, so the simulator process (at the gate,
  before it publishes) and the key walk after it (`count.write_keys`) apply the same
  faults. Kinds left out: `silent` (the offline rule is swept by `smartcity alerts run`,
  which the soak does not run), `consumption_spike` and `leak` (their rules need days of
  baseline the soak does not have).
* **Arrivals.** The key walk also records every bus's ground-truth stop visits, and walks the
  buses `TRUTH_TAIL_S` past the end, so a prediction made near the end is scored against
  when the bus did arrive (the simulators are deterministic: the run would have produced
  the same visits), not left out (which would keep only the early arrivals).
* **Predictions.** `PredictionSampler` copies `transit_predictions` (what the ingest's tracker
  predicts now) into `soak_predictions` every few seconds, stamped with the *event time* of
  the moment (the simulators' clock: `start + speed × (wall − go)`), which is the time base
  of the ground truth.
"""

from __future__ import annotations

import csv
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import orjson
import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from simulators.scenario import Scenario
    from smartcity.soak.procs import SimSpec

DEVICE_FAULTS: dict[str, tuple[str, ...]] = {
    "lighting": ("lamp_failure", "day_burning", "dimming_failure", "supply_loss"),
    "metering": ("tamper", "reverse_energy", "stuck_register"),
}
FAULT_START_SHARES = (0.05, 0.60)
# The longest ETA bucket's horizon (bench eta: 10–15 min).
TRUTH_TAIL_S = 900.0
PREDICTIONS_TABLE = "soak_predictions"
SAMPLE_EVERY_S = 5.0


def plan_device_faults(scenario: Scenario, spec: SimSpec) -> list[dict[str, object]]:
    """Add the soak's device faults to the scenario's fleets; return them as fault-log
    entries (the simulators' format: domain, fault, device_id, start, end)."""
    from simulators.faults import FAULTS, iso_ms

    rng = random.Random(spec.fleet.seed * 1_000_003 + 17)
    lo, hi = FAULT_START_SHARES
    entries: list[dict[str, object]] = []
    fleets = {"lighting": scenario.lighting, "metering": scenario.metering}
    for domain, kinds in DEVICE_FAULTS.items():
        fleet = fleets[domain]
        if fleet is None or spec.faults_per_kind <= 0:
            continue
        ids: list[str] = (
            [lamp.lamp_id for lamp in fleet.lamps]  # type: ignore[union-attr]
            if domain == "lighting"
            else list(fleet.meter_ids)  # type: ignore[union-attr]
        )
        water = None if domain == "lighting" else fleet.water  # type: ignore[union-attr]
        free = list(range(len(ids)))
        rng.shuffle(free)
        for kind in kinds:
            # Only electricity meters count export energy (the simulators' own eligibility).
            pool = [i for i in free if not (kind == "reverse_energy" and water[i])]  # type: ignore[index]
            for index in pool[: spec.faults_per_kind]:
                free.remove(index)
                shortest, longest = FAULTS[domain][kind]
                start_s = rng.uniform(lo, hi) * spec.duration_s
                end_s = start_s + rng.uniform(shortest, longest)
                fleet.faults.add(index, kind, start_s, end_s, rng.random())
                entries.append(
                    {
                        "domain": domain,
                        "fault": kind,
                        "device_id": ids[index],
                        "start": iso_ms(spec.start + timedelta(seconds=start_s)),
                        "end": iso_ms(spec.start + timedelta(seconds=end_s)),
                    }
                )
    return entries


def write_faults(path: str, entries: list[dict[str, object]]) -> None:
    with open(path, "wb") as out:
        for e in entries:
            out.write(orjson.dumps(e) + b"\n")


def read_faults(path: str) -> list[dict[str, object]]:
    with open(path, "rb") as f:
        return [orjson.loads(line) for line in f if line.strip()]


def read_arrivals(path: str) -> list[dict[str, str]]:
    """The ground-truth stop visits the key walk wrote (simulators.transit's fields)."""
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def create_predictions_table(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                """
                CREATE UNLOGGED TABLE IF NOT EXISTS {} (
                    made_at timestamptz NOT NULL, feed_id text NOT NULL, trip_id text NOT NULL,
                    start_date date NOT NULL, stop_sequence int NOT NULL,
                    predicted_arrival timestamptz NOT NULL, scheduled_arrival timestamptz)
                """
            ).format(sql.Identifier(PREDICTIONS_TABLE))
        )


class PredictionSampler:
    """Copies the current predictions every `every_s` in a thread the owner stops.

    `event_now()` maps the wall clock to the simulators' event time. A sample that fails (the
    database is paused) is counted and skipped: the next one takes its place."""

    def __init__(
        self, conninfo: str, event_now: Callable[[], datetime], every_s: float = SAMPLE_EVERY_S
    ) -> None:
        self._conninfo = conninfo
        self._event_now = event_now
        self._every_s = every_s
        self.samples = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-predictions", daemon=True)

    def __enter__(self) -> PredictionSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        conn: psycopg.Connection[tuple[object, ...]] | None = None
        while not self._stop.wait(self._every_s):
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5)
                    conn.execute("SET statement_timeout = '5s'")
                conn.execute(
                    sql.SQL(
                        """
                        INSERT INTO {}
                        SELECT %s, feed_id, trip_id, start_date, stop_sequence,
                               predicted_arrival, scheduled_arrival
                        FROM transit_predictions WHERE stop_sequence > 1
                        """
                    ).format(sql.Identifier(PREDICTIONS_TABLE)),
                    (self._event_now(),),
                )
                self.samples += 1
            except psycopg.Error:
                self.failed += 1
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()


def wall_to_event(start: datetime, speed: float, go_wall: float) -> Callable[[], datetime]:
    def now() -> datetime:
        return start + timedelta(seconds=speed * (time.time() - go_wall))

    return now
