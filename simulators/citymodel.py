"""Where a city's simulated devices are: districts, lamp cabinets, households and businesses.

Built from a `smartcity.cities.City` and a seed, so the same seed always gives the same city.
Premises (a household or a business, each with one electricity and maybe one water meter)
cluster around their district's centre; device ids that identify a resident's meter carry
seeded random hex suffixes, never sequence numbers, so that one meter id cannot be guessed from
another (the resident API's privacy rule).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smartcity.cities import City

# How far devices spread around their district's centre, as a share of the city's half-size.
DISTRICT_SPREAD = 0.25
# One business connection per this many premises (shops, offices, workshops).
BUSINESS_SHARE = 0.12


def placed_near_districts(
    city: City, rng: np.random.Generator, district_idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates for devices in the given districts, clipped to the city's bounding box."""
    centres = np.array([city.district_centre(i) for i in range(len(city.districts))])
    n = len(district_idx)
    lat = centres[district_idx, 0] + rng.normal(0, DISTRICT_SPREAD, n) * city.half_lat_deg
    lon = centres[district_idx, 1] + rng.normal(0, DISTRICT_SPREAD, n) * city.half_lon_deg
    lat = np.clip(lat, city.lat - 0.95 * city.half_lat_deg, city.lat + 0.95 * city.half_lat_deg)
    lon = np.clip(lon, city.lon - 0.95 * city.half_lon_deg, city.lon + 0.95 * city.half_lon_deg)
    return np.round(lat, 6), np.round(lon, 6)


def unguessable_ids(rng: np.random.Generator, prefix: str, count: int) -> list[str]:
    """`count` distinct ids `{prefix}-{12 hex digits}` drawn from `rng` (48 random bits each)."""
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < count:
        for value in rng.integers(0, 2**48, size=count - len(ids), dtype=np.int64):
            device_id = f"{prefix}-{int(value):012x}"
            if device_id not in seen:
                seen.add(device_id)
                ids.append(device_id)
    return ids


@dataclass(frozen=True, slots=True)
class Premises:
    """Households and businesses of a city, as parallel arrays (one entry per premises)."""

    district_idx: np.ndarray  # int, index into city.districts
    business: np.ndarray  # bool
    electric_heating: np.ndarray  # bool: heated by electricity (the rest by district heating)
    lat: np.ndarray
    lon: np.ndarray

    def __len__(self) -> int:
        return len(self.district_idx)


def build_premises(city: City, count: int, rng: np.random.Generator) -> Premises:
    district_idx = rng.integers(0, len(city.districts), size=count)
    lat, lon = placed_near_districts(city, rng, district_idx)
    business = rng.random(count) < BUSINESS_SHARE
    # Most flats are on district heating; houses on the edge and some businesses heat with
    # electricity, which is what makes the winter load curve.
    electric_heating = rng.random(count) < np.where(business, 0.2, 0.1)
    return Premises(district_idx, business, electric_heating, lat, lon)
