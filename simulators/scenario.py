"""One simulation run: the fleets of every feed, built from options, merged into one stream.

`Scenario` is what `smartcity simulate …`, `smartcity backfill` and the storage benchmark use:
the same models whatever consumes the messages (a broker, a recording, the ingest writer).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from simulators import gtfs
from simulators.faults import FaultLog, check_fault_specs, parse_rates, with_malformed
from simulators.lighting import LampFleet
from simulators.metering import MeterFleet
from simulators.stream import Message, merge, until
from simulators.transit import BusFleet, GroundTruthSink
from smartcity.cities import get_city


@dataclass
class ScenarioOptions:
    """Everything that decides a run's messages (with the start time and topic root)."""

    lamps: int = 0
    meters: int = 0
    buses: int = 0
    lighting_city: str = "astana"
    metering_city: str = "astana"
    transit_city: str = "shymkent"
    lamp_interval_s: float = 60.0
    meter_interval_s: float = 900.0
    bus_interval_s: float = 10.0
    gateway_share: float = 0.5
    routes: int = gtfs.DEFAULT_ROUTES
    night_service: bool = False  # generated network: buses round the clock (gtfs.generate)
    gtfs_path: Path | None = None  # drive this feed instead of generating one
    seed: int = 1
    faults: list[str] = field(default_factory=list)  # KIND=RATE per device per simulated day
    malformed_rate: float = 0.0  # share of messages replaced by malformed copies
    shard: tuple[int, int] = (0, 1)  # (k, n): this process publishes every n-th device from k

    def validate(self) -> None:
        for name in ("lamp_interval_s", "meter_interval_s", "bus_interval_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if not 0 <= self.gateway_share <= 1:
            raise ValueError("gateway_share must be between 0 and 1")
        if not 0 <= self.malformed_rate <= 1:
            raise ValueError("the malformed rate is a share of messages, between 0 and 1")
        if self.lamps + self.meters + self.buses <= 0:
            raise ValueError("nothing to simulate: give --lamps, --meters or --buses")
        check_fault_specs(self.faults)


class Scenario:
    def __init__(
        self,
        options: ScenarioOptions,
        *,
        start: datetime,
        topic_root: str,
        fault_log: FaultLog | None = None,
        ground_truth: GroundTruthSink | None = None,
    ) -> None:
        options.validate()
        self.options = options
        self.start = start
        self.topic_root = topic_root
        self.fault_log = fault_log
        o = options
        self.lighting = (
            LampFleet(
                get_city(o.lighting_city),
                o.lamps,
                o.seed,
                fault_rates=parse_rates("lighting", o.faults),
                fault_log=fault_log,
            )
            if o.lamps
            else None
        )
        self.metering = (
            MeterFleet(
                get_city(o.metering_city),
                o.meters,
                o.seed,
                interval_s=o.meter_interval_s,
                gateway_share=o.gateway_share,
                fault_rates=parse_rates("metering", o.faults),
                fault_log=fault_log,
            )
            if o.meters
            else None
        )
        self.network: gtfs.Network | None = None
        self.transit: BusFleet | None = None
        if o.buses:
            city = get_city(o.transit_city)
            self.network = (
                gtfs.read_zip(o.gtfs_path)
                if o.gtfs_path
                else gtfs.generate(
                    city, seed=o.seed, routes=o.routes, night_service=o.night_service
                )
            )
            self.transit = BusFleet(
                city,
                self.network,
                o.buses,
                o.seed,
                fault_rates=parse_rates("transit", o.faults),
                fault_log=fault_log,
                ground_truth=ground_truth,
            )

    def messages(self, duration_s: float | None = None) -> Iterator[Message]:
        """The merged, time-ordered stream of every fleet (up to `duration_s` if given)."""
        o = self.options
        sources: list[Iterator[Message]] = []
        if self.lighting is not None:
            sources.append(
                self.lighting.messages(self.start, self.topic_root, o.lamp_interval_s, o.shard)
            )
        if self.metering is not None:
            sources.append(self.metering.messages(self.start, self.topic_root, o.shard))
        if self.transit is not None:
            sources.append(
                self.transit.messages(self.start, self.topic_root, o.bus_interval_s, o.shard)
            )
        stream = until(merge(*sources), duration_s)
        if o.malformed_rate > 0:
            stream = with_malformed(
                stream, o.malformed_rate, seed=o.seed, start=self.start, log=self.fault_log
            )
        return stream

    def describe(self) -> str:
        o = self.options
        parts = []
        if self.lighting is not None:
            parts.append(f"{o.lamps} lamps in {o.lighting_city} every {o.lamp_interval_s:g} s")
        if self.metering is not None:
            parts.append(f"{o.meters} meters in {o.metering_city} every {o.meter_interval_s:g} s")
        if self.transit is not None and self.network is not None:
            parts.append(
                f"{o.buses} buses in {o.transit_city} every {o.bus_interval_s:g} s "
                f"({len(self.network.routes)} routes, {len(self.network.stops)} stops)"
            )
        return "; ".join(parts)

    def messages_per_sim_s(self) -> float:
        """The configured message rate per simulated second (buses counted while in service)."""
        o = self.options
        rate = o.lamps / o.lamp_interval_s if self.lighting else 0.0
        if self.metering is not None:
            direct = int((self.metering.gateway_of < 0).sum())
            rate += (direct + len(self.metering.gateway_ids)) / o.meter_interval_s
        if self.transit is not None:
            rate += o.buses / o.bus_interval_s
        return rate
