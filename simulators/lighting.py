"""Street lamps: on at dusk, off at dawn (from the sun's position), dimmed after midnight.

Each lamp has a rated LED power (30–150 W), a district and a control cabinet, and integrates
its lifetime energy register and operating hours between reports. Power follows the dim level
(LED drivers draw roughly 10 % + 90 % × dim of their rated power) with a little noise; voltage
hovers around 230 V; current follows from power, voltage and power factor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from smartcity import solar
from smartcity.cities import City

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


@dataclass(frozen=True, slots=True)
class Lamp:
    lamp_id: str
    district: str
    cabinet_id: str
    rated_w: float
    lat: float
    lon: float


class LampFleet:
    """The lamps of one city and their running state; `readings` reports a set of lamps."""

    def __init__(self, city: City, count: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.city = city
        self.rng = rng
        districts = rng.integers(0, len(city.districts), size=count)
        rated = rng.choice(RATED_POWERS_W, size=count)
        lats = city.lat + rng.uniform(-0.8, 0.8, size=count) * city.half_lat_deg
        lons = city.lon + rng.uniform(-0.8, 0.8, size=count) * city.half_lon_deg
        prefix = city.slug[:3]
        self.lamps = [
            Lamp(
                lamp_id=f"{prefix}-lamp-{i:06d}",
                district=city.districts[int(districts[i])],
                cabinet_id=f"{prefix}-cab-{i // LAMPS_PER_CABINET:04d}",
                rated_w=float(rated[i]),
                lat=round(float(lats[i]), 6),
                lon=round(float(lons[i]), 6),
            )
            for i in range(count)
        ]
        # Lamps in service for a while: registers start from plausible non-zero values.
        self.energy_wh = rng.uniform(1e5, 5e5, size=count)
        self.operating_hours = self.energy_wh / (rated * 0.8)
        self.last_ts: list[datetime | None] = [None] * count
        self._elevation_cache: tuple[int, float] = (-1, 0.0)

    def __len__(self) -> int:
        return len(self.lamps)

    def _sun_elevation(self, ts: datetime) -> float:
        # Every lamp is within a few km of the centre: one elevation per second of time is plenty.
        second = int(ts.timestamp())
        if self._elevation_cache[0] != second:
            self._elevation_cache = (
                second,
                solar.elevation_deg(self.city.lat, self.city.lon, ts),
            )
        return self._elevation_cache[1]

    def dim_pct_at(self, ts: datetime) -> float:
        """The scheduled dim level at `ts` (0 when the lamps are off)."""
        if self._sun_elevation(ts) >= SWITCH_ELEVATION_DEG:
            return 0.0
        local = ts.astimezone(self.city.tz)
        # After local midnight and before noon is the second half of the night.
        return NIGHT_DIM_PCT if local.hour < 12 else DUSK_DIM_PCT

    def reading(self, index: int, ts: datetime) -> dict[str, object]:
        """Advance lamp `index` to `ts` and return its telemetry payload."""
        lamp = self.lamps[index]
        rng = self.rng
        dim = self.dim_pct_at(ts)
        on = dim > 0
        if on:
            power = lamp.rated_w * (0.1 + 0.9 * dim / 100) * float(rng.normal(1.0, 0.02))
        else:
            power = STANDBY_W * float(rng.uniform(0.8, 1.2))
        voltage = float(rng.normal(NOMINAL_VOLTAGE_V, 2.0))
        pf = 0.95 if on else 0.5
        last = self.last_ts[index]
        if last is not None and ts > last:
            hours = (ts - last).total_seconds() / 3600
            self.energy_wh[index] += power * hours
            if on:
                self.operating_hours[index] += hours
        self.last_ts[index] = ts
        return {
            "lamp_id": lamp.lamp_id,
            "ts": int(ts.timestamp() * 1000),
            "district": lamp.district,
            "cabinet_id": lamp.cabinet_id,
            "lamp_on": on,
            "dim_pct": dim,
            "power_w": round(max(power, 0.0), 2),
            "voltage_v": round(voltage, 1),
            "current_a": round(power / (voltage * pf), 3),
            "power_factor": pf,
            "energy_wh": round(float(self.energy_wh[index]), 2),
            "operating_hours": round(float(self.operating_hours[index]), 3),
            "lamp_failure": False,
            "lat": lamp.lat,
            "lon": lamp.lon,
        }
