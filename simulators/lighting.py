"""Street lamps: on at dusk, off at dawn (from the sun's position), dimmed after midnight.

Each lamp has a rated LED power (30–150 W), a district and a control cabinet (a cabinet feeds
the lamps of one district), and integrates its lifetime energy register and operating hours
between reports. Power follows the dim level (LED drivers draw roughly 10 % + 90 % × dim of
their rated power) with a little noise; voltage hovers around 230 V; current follows from
power, voltage and power factor.

Lamps obey `LampCommand`s (on/off, dim level, optional expiry after which the lamp returns to
its schedule): `commands` is a thread-safe inbox that the MQTT subscriber fills and the fleet
drains before each reading, so a command shows in the lamp's next report. Faults (see
`simulators.faults`) bend a lamp's readings while they are active.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
from pydantic import ValidationError

from simulators.citymodel import placed_near_districts
from simulators.faults import CABINET_FAULTS, FaultLog, FaultSchedule
from simulators.stream import Message
from smartcity import solar, topics
from smartcity.cities import City
from smartcity.models import LampCommand

# Street lights switch on a little after sunset and off a little before sunrise, when the sun
# is a few degrees below the horizon (photocell thresholds sit around civil twilight).
SWITCH_ELEVATION_DEG = -2.0
# Standby draw of the driver and controller while the lamp is off.
STANDBY_W = 0.5
# Dimming profile: full light from dusk to local midnight, then 50 % until dawn.
NIGHT_DIM_PCT = 50.0
DUSK_DIM_PCT = 100.0
NOMINAL_VOLTAGE_V = 230.0
RATED_POWERS_W = np.array([30.0, 40.0, 60.0, 80.0, 100.0, 120.0, 150.0])
LAMPS_PER_CABINET = 40
DEFAULT_INTERVAL_S = 60.0
# A cabinet fault makes its lamps draw this share more, plus up to CABINET_EXTRA_SPAN by the
# fault's magnitude (see `simulators.faults.CABINET_FAULTS`): above the cabinet rule's 10 %,
# far enough below the lamp dimming rule's 25 % that reading noise (2 %) never crosses it.
CABINET_EXTRA = 0.12
CABINET_EXTRA_SPAN = 0.03


@dataclass(frozen=True, slots=True)
class Lamp:
    lamp_id: str
    district: str
    cabinet_id: str
    rated_w: float
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Override:
    """A command in force: what it sets, and until when (None: until the next command)."""

    lamp_on: bool | None
    dim_pct: float | None
    expires_at: datetime | None


class LampFleet:
    """The lamps of one city and their running state; `readings` reports a set of lamps."""

    def __init__(
        self,
        city: City,
        count: int,
        seed: int,
        *,
        fault_rates: dict[str, float] | None = None,
        fault_log: FaultLog | None = None,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.city = city
        self.seed = seed
        self.rng = rng
        districts = np.sort(rng.integers(0, len(city.districts), size=count))
        rated = rng.choice(RATED_POWERS_W, size=count)
        lats, lons = placed_near_districts(city, rng, districts)
        prefix = city.slug[:3]
        # Lamps are numbered district by district, so a cabinet's lamps share a district.
        first_of_district = np.searchsorted(districts, np.arange(len(city.districts)))
        self.lamps = [
            Lamp(
                lamp_id=f"{prefix}-lamp-{i:06d}",
                district=city.districts[int(districts[i])],
                cabinet_id=(
                    f"{prefix}-cab-{int(districts[i])}"
                    f"{(i - int(first_of_district[districts[i]])) // LAMPS_PER_CABINET:03d}"
                ),
                rated_w=float(rated[i]),
                lat=float(lats[i]),
                lon=float(lons[i]),
            )
            for i in range(count)
        ]
        self.index_of = {lamp.lamp_id: i for i, lamp in enumerate(self.lamps)}
        # Lamps in service for a while: registers start from plausible non-zero values.
        self.energy_wh = rng.uniform(1e5, 5e5, size=count)
        self.operating_hours = self.energy_wh / (rated * 0.8)
        self.rated_w = rated
        # Epoch seconds of each lamp's last report (NaN: none yet), to integrate the registers.
        self.last_t = np.full(count, np.nan)
        self._elevation_cache: tuple[int, float] = (-1, 0.0)
        self.overrides: dict[int, Override] = {}
        self.commands: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        self.commands_applied = 0
        self.commands_rejected: list[str] = []
        rates = fault_rates or {}
        self.faults = FaultSchedule(
            "lighting",
            [lamp.lamp_id for lamp in self.lamps],
            {k: r for k, r in rates.items() if k not in CABINET_FAULTS},
            seed=seed,
            start=datetime.fromtimestamp(0, UTC),
            log=fault_log,
        )
        self.cabinet_ids = sorted({lamp.cabinet_id for lamp in self.lamps})
        self.cabinet_index = np.array(
            [self.cabinet_ids.index(lamp.cabinet_id) for lamp in self.lamps], dtype=int
        )
        self.cabinet_faults = FaultSchedule(
            "lighting",
            self.cabinet_ids,
            {k: r for k, r in rates.items() if k in CABINET_FAULTS},
            seed=seed + 0xCAB,
            start=datetime.fromtimestamp(0, UTC),
            log=fault_log,
        )

    def __len__(self) -> int:
        return len(self.lamps)

    def _sun_elevation(self, ts: datetime) -> float:
        # Every lamp is within a few km of the centre: one elevation per second of time is plenty.
        second = int(ts.timestamp())
        if self._elevation_cache[0] != second:
            # Taken at the whole second, so that it does not depend on which reading asks first.
            self._elevation_cache = (
                second,
                solar.elevation_deg(
                    self.city.lat, self.city.lon, datetime.fromtimestamp(second, UTC)
                ),
            )
        return self._elevation_cache[1]

    def dim_pct_at(self, ts: datetime) -> float:
        """The scheduled dim level at `ts` (0 when the lamps are off)."""
        if self._sun_elevation(ts) >= SWITCH_ELEVATION_DEG:
            return 0.0
        local = ts.astimezone(self.city.tz)
        # After local midnight and before noon is the second half of the night.
        return NIGHT_DIM_PCT if local.hour < 12 else DUSK_DIM_PCT

    def apply_command(self, lamp_id: str, payload: bytes) -> None:
        """Validate and apply one command; a bad one is counted and described, never raised."""
        index = self.index_of.get(lamp_id)
        if index is None:
            self.commands_rejected.append(f"{lamp_id}: not a lamp of this fleet")
            return
        try:
            cmd = LampCommand.model_validate_json(payload)
        except ValidationError as exc:
            self.commands_rejected.append(f"{lamp_id}: {exc.errors(include_input=False)[0]}")
            return
        self.overrides[index] = Override(cmd.lamp_on, cmd.dim_pct, cmd.expires_at)
        self.commands_applied += 1

    def drain_commands(self) -> None:
        while not self.commands.empty():
            self.apply_command(*self.commands.get_nowait())

    def _state(self, index: int, ts: datetime) -> tuple[bool, float]:
        """(on, dim %) from the schedule, overridden by a command in force."""
        dim = self.dim_pct_at(ts)
        override = self.overrides.get(index)
        if override is None:
            return dim > 0, dim
        if override.expires_at is not None and ts >= override.expires_at:
            del self.overrides[index]
            return dim > 0, dim
        on = override.lamp_on if override.lamp_on is not None else dim > 0 or bool(override.dim_pct)
        if not on:
            return False, 0.0
        if override.dim_pct is not None:
            return override.dim_pct > 0, override.dim_pct
        return True, dim or DUSK_DIM_PCT

    def reading(
        self,
        index: int,
        ts: datetime,
        noise: tuple[float, float, float] | None = None,
        t_s: float | None = None,
    ) -> dict[str, object]:
        """Advance lamp `index` to `ts` and return its telemetry payload.

        `noise` is (power factor, voltage, standby factor) when the caller drew them in bulk;
        `t_s` (simulated seconds since the run's start) looks up injected faults.
        """
        lamp = self.lamps[index]
        if noise is None:
            noise = (
                float(self.rng.normal(1.0, 0.02)),
                float(self.rng.normal(NOMINAL_VOLTAGE_V, 2.0)),
                float(self.rng.uniform(0.8, 1.2)),
            )
        power_noise, voltage, standby = noise
        on, dim = self._state(index, ts)
        fault = self.faults.active(index, t_s) if t_s is not None and self.faults else None
        kind = fault.kind if fault is not None else None
        if kind == "day_burning" and not on:
            on, dim = True, DUSK_DIM_PCT
        # What the driver really draws: a broken dimmer runs at full power whatever it reports.
        drive_dim = DUSK_DIM_PCT if kind == "dimming_failure" and on else dim
        if kind == "supply_loss":
            power, voltage = 0.0, 0.0
        elif on and kind != "lamp_failure":
            power = lamp.rated_w * (0.1 + 0.9 * drive_dim / 100) * power_noise
            cab = (
                self.cabinet_faults.active(int(self.cabinet_index[index]), t_s)
                if t_s is not None and self.cabinet_faults
                else None
            )
            if cab is not None:
                power *= 1 + CABINET_EXTRA + CABINET_EXTRA_SPAN * cab.magnitude
        else:
            power = STANDBY_W * standby
        pf = 0.95 if on and kind != "lamp_failure" else 0.5
        now_t = ts.timestamp()
        last = float(self.last_t[index])
        if now_t > last:  # False for NaN: the first report integrates nothing
            hours = (now_t - last) / 3600
            self.energy_wh[index] += power * hours
            if on and power > STANDBY_W * 2:
                self.operating_hours[index] += hours
        self.last_t[index] = now_t
        return {
            "lamp_id": lamp.lamp_id,
            "ts": int(ts.timestamp() * 1000),
            "district": lamp.district,
            "cabinet_id": lamp.cabinet_id,
            "lamp_on": on,
            "dim_pct": dim,
            "power_w": round(max(power, 0.0), 2),
            "voltage_v": round(voltage, 1),
            "current_a": round(power / (voltage * pf), 3) if voltage > 0 else 0.0,
            "power_factor": pf,
            "energy_wh": round(float(self.energy_wh[index]), 2),
            "operating_hours": round(float(self.operating_hours[index]), 3),
            "lamp_failure": False,
            "lat": lamp.lat,
            "lon": lamp.lon,
        }

    def messages(
        self,
        start: datetime,
        topic_root: str,
        interval_s: float = DEFAULT_INTERVAL_S,
        shard: tuple[int, int] = (0, 1),
    ) -> Iterator[Message]:
        """Every lamp's report every `interval_s`, each at its own phase (an endless stream).

        `shard` (k, n) keeps the lamps whose index is k modulo n; every random draw is made for
        the whole fleet, so a shard's messages are exactly its lamps' messages in a whole run.
        """
        start = start.astimezone(UTC)
        self.faults._start = start
        self.cabinet_faults._start = start
        n = len(self)
        # Phases are drawn from the fleet's own generator, so a seed fixes the schedule too.
        phase = self.rng.uniform(0, interval_s, size=n)
        order = [i for i in np.argsort(phase, kind="stable") if i % shard[1] == shard[0]]
        lamp_topics = [
            topics.lamp_telemetry(topic_root, self.city.slug, lamp.lamp_id) for lamp in self.lamps
        ]
        start_epoch = start.timestamp()
        # Lamps are computed in chunks of about a twentieth of the interval, vectorised; a
        # command received meanwhile applies from the next chunk.
        chunk = max(1, len(order) // 20)
        k = 0
        while True:
            base = k * interval_s
            self.faults.plan_until(base + interval_s)
            self.cabinet_faults.plan_until(base + interval_s)
            # One bulk draw per interval: the same numbers whatever the pacing of the run.
            power_noise = self.rng.normal(1.0, 0.02, size=n)
            voltage = self.rng.normal(NOMINAL_VOLTAGE_V, 2.0, size=n)
            standby = self.rng.uniform(0.8, 1.2, size=n)
            for c0 in range(0, len(order), chunk):
                self.drain_commands()
                idx = np.array(order[c0 : c0 + chunk])
                t = base + phase[idx]
                bodies = self._chunk(idx, t, start_epoch, power_noise, voltage, standby)
                special = self._special()
                dumps = orjson.dumps
                for i, t_s, body in zip(idx.tolist(), t.tolist(), bodies, strict=True):
                    if i in special:
                        fault = self.faults.active(i, t_s) if self.faults else None
                        if fault is not None and fault.kind == "silent":
                            continue
                        noise = (float(power_noise[i]), float(voltage[i]), float(standby[i]))
                        body = self.reading(i, start + timedelta(seconds=t_s), noise, t_s)
                    yield t_s, lamp_topics[i], dumps(body)
            k += 1

    def _special(self) -> set[int]:
        """Lamps computed one by one: under a command, or with a (lamp or cabinet) fault."""
        special = set(self.overrides) | set(self.faults.by_device)
        if self.cabinet_faults.by_device:
            cabs = np.array(sorted(self.cabinet_faults.by_device))
            special.update(np.flatnonzero(np.isin(self.cabinet_index, cabs)).tolist())
        return special

    def _chunk(
        self,
        idx: np.ndarray,
        t: np.ndarray,
        start_epoch: float,
        power_noise: np.ndarray,
        voltage: np.ndarray,
        standby: np.ndarray,
    ) -> list[dict[str, object]]:
        """Scheduled readings of lamps `idx` at `t` (seconds since the start), vectorised;
        registers advance for every lamp without a command or fault (the caller computes
        those one by one)."""
        epoch = start_epoch + t
        seconds = np.floor(epoch)
        elevation = np.empty(len(idx))
        for sec in np.unique(seconds):
            when = datetime.fromtimestamp(float(sec), UTC)
            elevation[seconds == sec] = self._sun_elevation(when)
        offset_s = self.city.tz.utcoffset(datetime.fromtimestamp(float(epoch[0]), UTC))
        local_hour = ((epoch + (offset_s.total_seconds() if offset_s else 0.0)) // 3600) % 24
        dark = elevation < SWITCH_ELEVATION_DEG
        dim = np.where(dark, np.where(local_hour < 12, NIGHT_DIM_PCT, DUSK_DIM_PCT), 0.0)
        rated = self.rated_w[idx]
        power = np.where(
            dark, rated * (0.1 + 0.9 * dim / 100) * power_noise[idx], STANDBY_W * standby[idx]
        )
        volts = voltage[idx]
        pf = np.where(dark, 0.95, 0.5)
        special = self._special()
        plain = np.array([i not in special for i in idx.tolist()], dtype=bool)
        hours = (epoch - self.last_t[idx]) / 3600
        step = plain & (hours > 0)  # NaN compares False: a first report integrates nothing
        target = idx[step]
        self.energy_wh[target] += power[step] * hours[step]
        burning = step & dark & (power > STANDBY_W * 2)
        self.operating_hours[idx[burning]] += hours[burning]
        self.last_t[idx[plain]] = epoch[plain]
        ts_ms = np.floor(epoch * 1000).astype(np.int64).tolist()
        lamps = self.lamps
        rows = zip(
            idx.tolist(),
            ts_ms,
            dark.tolist(),
            dim.tolist(),
            np.round(power, 2).tolist(),
            np.round(volts, 1).tolist(),
            np.round(power / (volts * pf), 3).tolist(),
            pf.tolist(),
            np.round(self.energy_wh[idx], 2).tolist(),
            np.round(self.operating_hours[idx], 3).tolist(),
            strict=True,
        )
        return [
            {
                "lamp_id": lamps[i].lamp_id,
                "ts": ms,
                "district": lamps[i].district,
                "cabinet_id": lamps[i].cabinet_id,
                "lamp_on": on,
                "dim_pct": d,
                "power_w": p,
                "voltage_v": v,
                "current_a": a,
                "power_factor": f,
                "energy_wh": e,
                "operating_hours": h,
                "lamp_failure": False,
                "lat": lamps[i].lat,
                "lon": lamps[i].lon,
            }
            for i, ms, on, d, p, v, a, f, e, h in rows
        ]
