"""The solar position against reference sunrise/sunset times.

Reference values: the `astral` package (3.2), which implements the same NOAA equations
independently, for Astana and Shymkent on the solstices, equinoxes and mid-January.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from smartcity import solar
from smartcity.cities import get_city

TZ = ZoneInfo("Asia/Almaty")
TOLERANCE = timedelta(minutes=2)


@pytest.mark.parametrize(
    ("city", "day", "sunrise", "sunset"),
    [
        ("astana", date(2026, 1, 15), "08:12:11", "16:35:18"),
        ("astana", date(2026, 3, 20), "06:17:49", "18:26:33"),
        ("astana", date(2026, 6, 21), "03:58:59", "20:32:59"),
        ("astana", date(2026, 9, 23), "06:01:47", "18:10:33"),
        ("astana", date(2026, 12, 21), "08:15:59", "16:08:22"),
        ("shymkent", date(2026, 6, 21), "04:45:11", "20:01:39"),
        ("shymkent", date(2026, 12, 21), "07:47:33", "16:51:40"),
    ],
)
def test_sunrise_and_sunset_match_reference(
    city: str, day: date, sunrise: str, sunset: str
) -> None:
    c = get_city(city)
    result = solar.sunrise_sunset(c.lat, c.lon, day, TZ)
    assert result is not None
    for got, want in zip(result, (sunrise, sunset), strict=True):
        expected = datetime.combine(day, datetime.strptime(want, "%H:%M:%S").time(), TZ)
        assert abs(got - expected) < TOLERANCE, (got.astimezone(TZ), expected)


def test_elevation_is_near_the_horizon_at_sunrise_and_highest_near_noon() -> None:
    c = get_city("astana")
    result = solar.sunrise_sunset(c.lat, c.lon, date(2026, 3, 20), TZ)
    assert result is not None
    rise, _ = result
    assert abs(solar.elevation_deg(c.lat, c.lon, rise) - solar.SUNRISE_ELEVATION_DEG) < 0.3
    # At the equinox the noon sun stands at about 90° − latitude.
    noon = max(
        solar.elevation_deg(
            c.lat, c.lon, datetime(2026, 3, 20, 6, tzinfo=UTC) + timedelta(minutes=m)
        )
        for m in range(0, 180, 2)
    )
    assert abs(noon - (90 - c.lat)) < 1.0


def test_polar_night_has_no_sunrise() -> None:
    assert (
        solar.sunrise_sunset(78.2, 15.6, date(2026, 12, 21), ZoneInfo("Arctic/Longyearbyen"))
        is None
    )
