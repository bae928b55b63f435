"""Where the sun is: solar elevation and sunrise/sunset for a place and time.

The NOAA solar calculator's equations (after Meeus, "Astronomical Algorithms"), accurate to
about a minute for sunrise and sunset at the latitudes of Kazakhstan's cities. Shared by the
lighting simulator (lamps switch on at dusk) and the alert rules (day-burning).
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, tzinfo

# Sunrise and sunset are when the sun's centre is this far below the horizon: the sun's
# apparent radius plus atmospheric refraction.
SUNRISE_ELEVATION_DEG = -0.833


def _julian_century(when: datetime) -> float:
    jd = when.astimezone(UTC).timestamp() / 86400.0 + 2440587.5
    return (jd - 2451545.0) / 36525.0


def _declination_and_eot(t: float) -> tuple[float, float]:
    """Solar declination (radians) and the equation of time (minutes) at Julian century t."""
    l0 = math.radians((280.46646 + t * (36000.76983 + t * 0.0003032)) % 360)
    m = math.radians(357.52911 + t * (35999.05029 - 0.0001537 * t))
    e = 0.016708634 - t * (0.000042037 + 0.0000001267 * t)
    c = math.radians(
        math.sin(m) * (1.914602 - t * (0.004817 + 0.000014 * t))
        + math.sin(2 * m) * (0.019993 - 0.000101 * t)
        + math.sin(3 * m) * 0.000289
    )
    true_long = l0 + c
    omega = math.radians(125.04 - 1934.136 * t)
    app_long = true_long - math.radians(0.00569 + 0.00478 * math.sin(omega))
    eps0 = 23 + (26 + (21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))) / 60) / 60
    eps = math.radians(eps0 + 0.00256 * math.cos(omega))
    decl = math.asin(math.sin(eps) * math.sin(app_long))
    y = math.tan(eps / 2) ** 2
    eot = 4 * math.degrees(
        y * math.sin(2 * l0)
        - 2 * e * math.sin(m)
        + 4 * e * y * math.sin(m) * math.cos(2 * l0)
        - 0.5 * y * y * math.sin(4 * l0)
        - 1.25 * e * e * math.sin(2 * m)
    )
    return decl, eot


def elevation_deg(lat: float, lon: float, when: datetime) -> float:
    """The sun's geometric elevation above the horizon, in degrees, at `when` (aware)."""
    utc = when.astimezone(UTC)
    decl, eot = _declination_and_eot(_julian_century(utc))
    minutes = utc.hour * 60 + utc.minute + utc.second / 60 + utc.microsecond / 6e7
    true_solar_min = (minutes + eot + 4 * lon) % 1440
    hour_angle = math.radians(true_solar_min / 4 - 180)
    phi = math.radians(lat)
    cos_zenith = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(
        hour_angle
    )
    return 90 - math.degrees(math.acos(max(-1.0, min(1.0, cos_zenith))))


def sunrise_sunset(
    lat: float, lon: float, local_day: date, tz: tzinfo
) -> tuple[datetime, datetime] | None:
    """Sunrise and sunset (aware, UTC) of `local_day` in time zone `tz`; None in polar day/night."""
    local_noon = datetime(local_day.year, local_day.month, local_day.day, 12, tzinfo=tz)
    noon_utc = local_noon.astimezone(UTC)
    midnight = datetime(noon_utc.year, noon_utc.month, noon_utc.day, tzinfo=UTC)
    phi = math.radians(lat)
    events: list[datetime] = []
    for sign in (-1, 1):  # -1: sunrise (before solar noon), +1: sunset
        guess = noon_utc
        for _ in range(3):  # declination and the equation of time move a little during the day
            decl, eot = _declination_and_eot(_julian_century(guess))
            cos_ha = math.cos(math.radians(90 - SUNRISE_ELEVATION_DEG)) / (
                math.cos(phi) * math.cos(decl)
            ) - math.tan(phi) * math.tan(decl)
            if not -1 <= cos_ha <= 1:
                return None
            solar_noon_min = 720 - 4 * lon - eot
            # Keep solar noon on the same side of midnight as the local noon we asked about.
            while solar_noon_min - (noon_utc - midnight).total_seconds() / 60 > 720:
                solar_noon_min -= 1440
            while (noon_utc - midnight).total_seconds() / 60 - solar_noon_min > 720:
                solar_noon_min += 1440
            event_min = solar_noon_min + sign * 4 * math.degrees(math.acos(cos_ha))
            guess = midnight + timedelta(minutes=event_min)
        events.append(guess)
    return events[0], events[1]
