"""The cities the service knows: slug, name, centre, time zone, bounding box, districts.

Kazakhstan has kept one zone, UTC+5, all year since March 2024 (Asia/Almaty in tzdata 2024a
and later); daily rollups use each city's local day.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from zoneinfo import ZoneInfo

from smartcity.errors import ConfigurationError


@dataclass(frozen=True)
class City:
    slug: str
    name: str
    lat: float
    lon: float
    tz_name: str
    # Half-size of the bounding box around the centre, in degrees: readings outside it are
    # impossible for this city's devices.
    half_lat_deg: float
    half_lon_deg: float
    districts: tuple[str, ...]
    # Climate for the simulators' seasonal heating load: annual mean and half the summer-winter
    # swing of the daily mean air temperature (°C), coldest around 15 January.
    mean_temp_c: float = 8.0
    temp_swing_c: float = 15.0

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.tz_name)

    def contains(self, lat: float, lon: float) -> bool:
        return abs(lat - self.lat) <= self.half_lat_deg and abs(lon - self.lon) <= self.half_lon_deg

    def district_centre(self, index: int) -> tuple[float, float]:
        """A district's centre: the first district is the city centre, the others lie on a ring
        halfway to the edge of the bounding box (a schematic map, not a surveyed one)."""
        if index == 0:
            return self.lat, self.lon
        angle = 2 * math.pi * (index - 1) / max(1, len(self.districts) - 1)
        return (
            self.lat + 0.5 * self.half_lat_deg * math.sin(angle),
            self.lon + 0.5 * self.half_lon_deg * math.cos(angle),
        )

    def mean_temp_on(self, day_of_year: int) -> float:
        """The typical daily mean temperature (°C) on a day of the year (1–366)."""
        return self.mean_temp_c - self.temp_swing_c * math.cos(
            2 * math.pi * (day_of_year - 15) / 365.25
        )


CITIES: dict[str, City] = {
    c.slug: c
    for c in (
        City(
            "astana",
            "Astana",
            51.1694,
            71.4491,
            "Asia/Almaty",
            0.25,
            0.40,
            ("almaty", "baikonur", "esil", "nura", "saryarka"),
            3.5,
            19.0,
        ),
        City(
            "almaty",
            "Almaty",
            43.2389,
            76.8897,
            "Asia/Almaty",
            0.25,
            0.35,
            ("alatau", "almaly", "auezov", "bostandyk", "zhetysu", "medeu", "nauryzbay", "turksib"),
            10.0,
            14.0,
        ),
        City(
            "shymkent",
            "Shymkent",
            42.3417,
            69.5901,
            "Asia/Almaty",
            0.20,
            0.25,
            ("abay", "al-farabi", "enbekshi", "karatau", "turan"),
            13.0,
            14.0,
        ),
        City(
            "aktobe",
            "Aktobe",
            50.2839,
            57.1670,
            "Asia/Aqtobe",
            0.20,
            0.30,
            ("almaty", "astana"),
            5.5,
            18.0,
        ),
    )
}


def get_city(slug: str) -> City:
    try:
        return CITIES[slug]
    except KeyError:
        raise ConfigurationError(
            f"unknown city {slug!r}; known cities: {', '.join(sorted(CITIES))}"
        ) from None
