"""What one soak run does and when: fleet sizes per city, the fault schedule, the windows.

The timeline of a run of duration D (seconds of real time, simulators publishing all along):

    0 ──── 0.1 D ──────── 0.25 D ─────────────────────────── 0.75 D ──────────── D ── drain
    start-up   baseline (API p99 without faults)  five faults, evenly spaced   quiet
    ├──────────── memory warm-up ────────┤                                ├ memory end window ┤

Faults are injected in this order: kill -9 an ingest worker, restart the broker, pause the
database, a burst of malformed messages, a reconnect storm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The full fleet ("e.g. 50k lamps, 100k meters, 800 buses in total"); --scale takes a
# fraction of it, split evenly over the cities.
FULL_LAMPS = 50_000
FULL_METERS = 100_000
FULL_BUSES = 800
CITIES = ("astana", "almaty", "shymkent")

FAULT_KINDS = (
    "kill_ingest_worker",
    "restart_broker",
    "pause_database",
    "malformed_burst",
    "reconnect_storm",
)
BASELINE_START_SHARE = 0.10
FAULTS_START_SHARE = 0.25
FAULTS_END_SHARE = 0.75
# Memory: growth is measured from the end of the warm-up to the last tenth of the run. Python
# processes grow their heaps and PostgreSQL its caches in the first minutes, and per-device
# state (the ingest's topic cache, the registry's rows in the caches) fills until every device
# has reported once: the warm-up lasts a quarter of the run or, if longer, the slowest feed's
# reporting interval (meters, 15 simulated minutes) plus a minute, but at most until 0.8 of the
# run (a tenth to measure from, before the last tenth). What grows after it is what a leak
# looks like.
WARMUP_SHARE = 0.25
WARMUP_AFTER_CYCLE_S = 60.0
END_WINDOW_SHARE = 0.10
# After a fault has ended the system needs a moment to catch up (the ingest drains the backlog
# the fault built up); API latency in that settle time still counts as "in the fault window".
MIN_SETTLE_S = 10.0
SETTLE_SHARE = 0.05


@dataclass(frozen=True)
class CityFleet:
    city: str
    lamps: int
    meters: int
    buses: int
    seed: int


@dataclass(frozen=True)
class SoakPlan:
    duration_s: float
    scale: float = 1.0
    # Simulated seconds per real second. 1 keeps event time = wall time; above 1 the run starts
    # in the past so that event time reaches "now" at the end (the ingest refuses readings
    # from the future).
    speed: float = 1.0
    # What this 2-core machine answers beside the simulators, the ingest and the faults
    # (docs/benchmarks.md, "City-scale soak"): at 20 the API queued for the whole run.
    api_rate_per_s: float = 5.0
    probe_rate_per_s: float = 20.0
    storm_clients: int = 2000
    malformed_messages: int = 1000
    db_pause_s: float = 10.0
    private_servers: bool = True
    # Injected device faults per kind and city, the alert score's ground truth
    # (smartcity.soak.truth.DEVICE_FAULTS: 4 lamp kinds, 3 meter kinds).
    device_faults_per_kind: int = 8
    sample_every_s: float = 5.0
    cities: tuple[str, ...] = CITIES
    fleets: tuple[CityFleet, ...] = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.cities)

        def share(total: int) -> int:
            return round(total * self.scale / n)

        fleets = tuple(
            CityFleet(city, share(FULL_LAMPS), share(FULL_METERS), share(FULL_BUSES), seed=k + 1)
            for k, city in enumerate(self.cities)
        )
        object.__setattr__(self, "fleets", fleets)

    def validate(self) -> None:
        if self.duration_s < 60:
            raise ValueError("--duration must be at least 60 s (start-up, baseline, five faults)")
        if not 0 < self.scale <= 10:
            raise ValueError("--scale is a fraction of the full fleet, in (0, 10]")
        if self.speed <= 0:
            raise ValueError("--speed must be positive")
        if sum(f.lamps + f.meters + f.buses for f in self.fleets) == 0:
            raise ValueError(f"--scale {self.scale:g} leaves no device to simulate")
        if self.api_rate_per_s <= 0 or self.probe_rate_per_s <= 0:
            raise ValueError("request and probe rates must be positive")
        if self.device_faults_per_kind < 0:
            raise ValueError("--device-faults must be zero or more")
        if self.storm_clients < 1 or self.malformed_messages < 1:
            raise ValueError("the storm and the malformed burst need at least one message")

    @property
    def totals(self) -> dict[str, int]:
        return {
            "lamps": sum(f.lamps for f in self.fleets),
            "meters": sum(f.meters for f in self.fleets),
            "buses": sum(f.buses for f in self.fleets),
        }

    def fault_times_s(self) -> dict[str, float]:
        """When each fault starts, in seconds since the start of the run."""
        first, last = FAULTS_START_SHARE * self.duration_s, FAULTS_END_SHARE * self.duration_s
        step = (last - first) / (len(FAULT_KINDS) - 1)
        return {kind: first + i * step for i, kind in enumerate(FAULT_KINDS)}

    @property
    def settle_s(self) -> float:
        return max(MIN_SETTLE_S, SETTLE_SHARE * self.duration_s)

    @property
    def baseline_window_s(self) -> tuple[float, float]:
        return BASELINE_START_SHARE * self.duration_s, FAULTS_START_SHARE * self.duration_s

    @property
    def warmup_s(self) -> float:
        from simulators.scenario import ScenarioOptions

        defaults = ScenarioOptions()
        slowest_s = max(
            defaults.lamp_interval_s, defaults.meter_interval_s, defaults.bus_interval_s
        )
        cycle_s = slowest_s / self.speed + WARMUP_AFTER_CYCLE_S
        latest_s = (1 - 2 * END_WINDOW_SHARE) * self.duration_s
        return max(WARMUP_SHARE * self.duration_s, min(cycle_s, latest_s))

    @property
    def end_window_s(self) -> tuple[float, float]:
        return (1 - END_WINDOW_SHARE) * self.duration_s, self.duration_s
