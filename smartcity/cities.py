"""The cities the service knows: slug, name, centre, time zone, bounding box, districts.

Kazakhstan has kept one zone, UTC+5, all year since March 2024 (Asia/Almaty in tzdata 2024a
and later); daily rollups use each city's local day.
"""

from __future__ import annotations

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

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.tz_name)

    def contains(self, lat: float, lon: float) -> bool:
        return abs(lat - self.lat) <= self.half_lat_deg and abs(lon - self.lon) <= self.half_lon_deg


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
