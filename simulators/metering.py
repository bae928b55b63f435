"""Electricity and water meters of households and businesses, read every 15 simulated minutes.

Electricity: the mean power of an interval follows a load profile (hour of the local day,
weekday or weekend, household or business), scaled per premises, plus electric heating in
the cold season (proportional to how far the day's mean temperature is below 18 °C) and
noise; the OBIS 1.8.0 import register integrates it, so it never decreases. Water: the mean
flow follows a daily profile; the m³ register integrates it.

Readings carry the interval's end as `ts` (meters close their intervals on the quarter hour)
and are sent a little later, each meter at its own phase. A share of the fleet sits behind data
concentrators (gateways) that send one SenML pack of all their meters' readings per interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import orjson

from simulators.citymodel import build_premises, unguessable_ids
from simulators.faults import FaultLog, FaultSchedule
from simulators.stream import Message
from smartcity import topics
from smartcity.cities import City
from smartcity.models import MeterReading, encode_pack

DEFAULT_INTERVAL_S = 900.0
# Meters send their reading within this share of the interval after it closes.
SEND_WINDOW_SHARE = 0.8
WATER_SHARE = 0.4
DEFAULT_GATEWAY_SHARE = 0.5
# A concentrator serves an apartment block or a street: about a hundred meters (the ingest's
# batch target is packs of 100).
METERS_PER_GATEWAY = 100
NOMINAL_VOLTAGE_V = 230.0
HEATING_BASE_C = 18.0  # heating degree-days are counted below this daily mean temperature
# Mean power (W) of an average household / business without heating; ~250 kWh a month for a
# flat, ~2,200 kWh a month for a small business.
HOUSEHOLD_MEAN_W = 350.0
BUSINESS_MEAN_W = 3000.0
HEATING_W_PER_K = {False: 120.0, True: 400.0}  # (business?) → W per kelvin below the base
# A water meter's leak alarm: flow without a pause for a day (typical of meters with one).
LEAK_FLAG_AFTER_S = 24 * 3600.0
HOUSEHOLD_WATER_LPH = 15.0  # ≈ 360 l a day: 2.5 people
BUSINESS_WATER_LPH = 40.0


def _normalised(*parts: list[float]) -> np.ndarray:
    arr = np.array([v for part in parts for v in part], dtype=float)
    out: np.ndarray = arr / arr.mean()
    return out


# Hourly shapes (local time, hour 0 = 00:00–01:00), each with mean 1.
HOUSEHOLD_WEEKDAY = _normalised(
    [0.5, 0.4, 0.35, 0.35, 0.35, 0.45, 0.8, 1.2, 1.1, 0.8, 0.7, 0.7],
    [0.75, 0.75, 0.7, 0.75, 0.9, 1.2, 1.6, 1.9, 1.8, 1.5, 1.1, 0.7],
)
HOUSEHOLD_WEEKEND = _normalised(
    [0.6, 0.45, 0.4, 0.35, 0.35, 0.35, 0.5, 0.7, 1.0, 1.2, 1.2, 1.2],
    [1.2, 1.1, 1.0, 1.0, 1.0, 1.2, 1.5, 1.8, 1.7, 1.5, 1.2, 0.8],
)
BUSINESS_WEEKDAY = _normalised(
    [0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.4, 0.7, 1.4, 1.8, 1.9, 1.9],
    [1.8, 1.9, 1.9, 1.8, 1.6, 1.2, 0.8, 0.6, 0.45, 0.4, 0.35, 0.3],
)
BUSINESS_WEEKEND = 0.5 * BUSINESS_WEEKDAY + 0.1
WATER_HOUSEHOLD = _normalised(
    [0.1, 0.05, 0.05, 0.05, 0.1, 0.4, 1.6, 2.4, 1.8, 1.0, 0.8, 0.8],
    [0.9, 0.8, 0.7, 0.7, 0.8, 1.1, 1.6, 2.0, 1.9, 1.5, 1.0, 0.4],
)
WATER_BUSINESS = _normalised([0.05] * 8, [1.5] * 10, [0.1] * 6)


def _shape(profile: np.ndarray, hour: float) -> float:
    """The profile at a fractional hour, interpolated between hour midpoints."""
    x = hour - 0.5
    i = math.floor(x)
    frac = x - i
    return float(profile[i % 24] * (1 - frac) + profile[(i + 1) % 24] * frac)


class MeterFleet:
    """The meters of one city and their registers; `messages` is their reading stream."""

    def __init__(
        self,
        city: City,
        count: int,
        seed: int,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        gateway_share: float = DEFAULT_GATEWAY_SHARE,
        fault_rates: dict[str, float] | None = None,
        fault_log: FaultLog | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("a meter fleet needs at least one meter")
        rng = np.random.default_rng([seed, 0x3E7E])
        self.city = city
        self.interval_s = interval_s
        self.seed = seed
        self.premises = build_premises(city, count, rng)
        self.water = rng.random(count) < WATER_SHARE
        prefix = city.slug[:3]
        self.meter_ids = [
            f"{prefix}-{'wm' if w else 'em'}-{suffix.rpartition('-')[2]}"
            for w, suffix in zip(self.water, unguessable_ids(rng, "m", count), strict=True)
        ]
        self.district = [city.districts[int(d)] for d in self.premises.district_idx]
        # Each premises uses more or less than the average (size, people, habits).
        self.scale = rng.lognormal(0.0, 0.4, size=count)
        # Meters in service for years: registers start from plausible values.
        self.import_kwh = np.where(self.water, 0.0, rng.uniform(2e3, 4e4, size=count))
        self.export_kwh = np.zeros(count)
        self.volume_m3 = np.where(self.water, rng.uniform(50, 2000, size=count), 0.0)
        self.phase_s = rng.uniform(0, interval_s * SEND_WINDOW_SHARE, size=count)
        self.noise_rng = np.random.default_rng([seed, 0x4015E])
        self._t_s = 0.0  # simulated seconds of the interval last advanced
        # The first share of meters (in a random order) report through gateways.
        order = rng.permutation(count)
        behind = order[: round(count * gateway_share)]
        self.gateway_of = np.full(count, -1)
        self.gateway_ids = unguessable_ids(rng, f"{prefix}-gw", math.ceil(len(behind) / 100))
        self.gateway_of[behind] = np.arange(len(behind)) // METERS_PER_GATEWAY
        self.gateway_phase_s = rng.uniform(0, interval_s * SEND_WINDOW_SHARE, len(self.gateway_ids))
        self.faults = FaultSchedule(
            "metering",
            self.meter_ids,
            fault_rates or {},
            seed=seed,
            start=datetime.fromtimestamp(0, UTC),  # replaced in `messages`
            log=fault_log,
            eligible={
                "leak": np.flatnonzero(self.water),
                "reverse_energy": np.flatnonzero(~self.water),
                # A short burst of water is a bath, not a fault: spikes are electricity's.
                "consumption_spike": np.flatnonzero(~self.water),
            },
        )

    def __len__(self) -> int:
        return len(self.meter_ids)

    def _advance(self, end: datetime, tz_hour: float, weekend: bool, t_s: float) -> np.ndarray:
        """Integrate every register over the interval ending at `end`; return the mean
        power (W) or flow (l/h) of each meter, faults applied."""
        n = len(self)
        mid_hour = (tz_hour - self.interval_s / 7200) % 24
        business = self.premises.business
        hh = _shape(HOUSEHOLD_WEEKEND if weekend else HOUSEHOLD_WEEKDAY, mid_hour)
        bz = _shape(BUSINESS_WEEKEND if weekend else BUSINESS_WEEKDAY, mid_hour)
        temp = self.city.mean_temp_on(end.timetuple().tm_yday)
        heating_k = max(0.0, HEATING_BASE_C - temp)
        power = np.where(business, BUSINESS_MEAN_W * bz, HOUSEHOLD_MEAN_W * hh) * self.scale
        power += np.where(
            self.premises.electric_heating,
            np.where(business, HEATING_W_PER_K[True], HEATING_W_PER_K[False]) * heating_k,
            0.0,
        )
        flow = (
            np.where(
                business,
                BUSINESS_WATER_LPH * _shape(WATER_BUSINESS, mid_hour) * (0.3 if weekend else 1.0),
                HOUSEHOLD_WATER_LPH * _shape(WATER_HOUSEHOLD, mid_hour),
            )
            * self.scale
        )
        noise = self.noise_rng.lognormal(0.0, 0.25, size=n)
        value = np.where(self.water, flow, power) * noise
        hours = self.interval_s / 3600
        imported = np.where(self.water, 0.0, value * hours / 1000)
        exported = np.zeros(n)
        self.faults.plan_until(t_s)
        for index in self.faults.by_device:
            fault = self.faults.active(index, t_s)
            if fault is None:
                continue
            if fault.kind == "tamper":
                value[index] *= 0.3
                imported[index] *= 0.3
            elif fault.kind == "consumption_spike":
                value[index] *= 5 + 5 * fault.magnitude
                imported[index] *= 5 + 5 * fault.magnitude
            elif fault.kind == "leak":
                value[index] += 5 + 25 * fault.magnitude  # a running toilet to a burst pipe
            elif fault.kind == "reverse_energy":
                exported[index], imported[index] = imported[index], 0.0
            elif fault.kind == "stuck_register":
                value[index], imported[index] = 0.0, 0.0
        self.import_kwh += imported
        self.export_kwh += exported
        self.volume_m3 += np.where(self.water, value * hours / 1000, 0.0)
        self._t_s = t_s
        return value

    def _leak_flag(self, i: int) -> bool:
        """Water meters flag a leak once flow has not stopped for LEAK_FLAG_AFTER_S (as meters
        with a leak alarm do); the simulated household's own use never runs that long."""
        fault = self.faults.active(i, self._t_s)
        return (
            fault is not None
            and fault.kind == "leak"
            and self._t_s - fault.start_s >= LEAK_FLAG_AFTER_S
        )

    def _payload(
        self, i: int, ts_ms: int, value: float, voltage: float, tamper: bool
    ) -> dict[str, object]:
        if self.water[i]:
            return {
                "meter_id": self.meter_ids[i],
                "ts": ts_ms,
                "kind": "water",
                "district": self.district[i],
                "volume_m3": round(float(self.volume_m3[i]), 4),
                "flow_lph": round(value, 2),
                "tamper": tamper,
                "leak": self._leak_flag(i),
            }
        return {
            "meter_id": self.meter_ids[i],
            "ts": ts_ms,
            "kind": "electricity",
            "district": self.district[i],
            "energy_import_kwh": round(float(self.import_kwh[i]), 3),
            "energy_export_kwh": round(float(self.export_kwh[i]), 3),
            "power_w": round(value, 1),
            "voltage_v": round(voltage, 1),
            "tamper": tamper,
        }

    def messages(
        self, start: datetime, topic_root: str, shard: tuple[int, int] = (0, 1)
    ) -> Iterator[Message]:
        """Every reading from `start` on, in publish-time order (an endless stream).

        `shard` (k, n) keeps the direct meters and gateways whose index is k modulo n; the
        registers of the whole fleet advance, so a shard's messages are exactly a subset of the
        whole run's."""
        self.faults._start = start
        interval = self.interval_s
        start_epoch = start.timestamp()
        first_end = math.floor(start_epoch / interval + 1) * interval
        direct = np.flatnonzero(self.gateway_of < 0)
        direct_topics = {
            int(i): topics.meter_reading(topic_root, self.city.slug, self.meter_ids[i])
            for i in direct
        }
        gw_topics = [
            topics.gateway_senml(topic_root, self.city.slug, gw) for gw in self.gateway_ids
        ]
        members = [np.flatnonzero(self.gateway_of == g) for g in range(len(self.gateway_ids))]
        # (phase, -1 - gateway | meter index) in send order within each interval
        k_shard, n_shards = shard
        senders = sorted(
            [(float(self.phase_s[i]), int(i)) for i in direct if i % n_shards == k_shard]
            + [
                (float(p), -1 - g)
                for g, p in enumerate(self.gateway_phase_s)
                if g % n_shards == k_shard
            ]
        )
        k = 0
        while True:
            end_epoch = first_end + k * interval
            end = datetime.fromtimestamp(end_epoch, UTC)
            t_end = end_epoch - start_epoch
            local = end.astimezone(self.city.tz)
            tz_hour = local.hour + local.minute / 60 + local.second / 3600
            values = self._advance(end, tz_hour, local.weekday() >= 5, t_end)
            voltage = self.noise_rng.normal(NOMINAL_VOLTAGE_V, 2.5, size=len(self))
            ts_ms = int(end_epoch * 1000)
            for phase, who in senders:
                if who >= 0:
                    fault = self.faults.active(who, t_end)
                    if fault is not None and fault.kind == "silent":
                        continue
                    tamper = fault is not None and fault.kind == "tamper"
                    body = self._payload(
                        who, ts_ms, float(values[who]), float(voltage[who]), tamper
                    )
                    yield t_end + phase, direct_topics[who], orjson.dumps(body)
                    continue
                gateway = -1 - who
                readings = []
                for i in members[gateway]:
                    fault = self.faults.active(int(i), t_end)
                    if fault is not None and fault.kind == "silent":
                        continue
                    tamper = fault is not None and fault.kind == "tamper"
                    body = self._payload(int(i), ts_ms, float(values[i]), float(voltage[i]), tamper)
                    readings.append(MeterReading.model_validate(body))
                if readings:
                    yield t_end + phase, gw_topics[gateway], orjson.dumps(encode_pack(readings))
            k += 1
