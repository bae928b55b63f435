"""The per-reading rules: each looks at one committed reading and says whether it fires.

A rule is a pure function of the reading (and, for day-burning, the sun), so every ingest
worker evaluating any share of the stream reaches the same verdict; what makes a problem raise
once is the database (see `store.py`). Each rule carries its parameters as named constants,
documented in docs/alerts.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from smartcity import solar
from smartcity.cities import get_city


class Severity(StrEnum):
    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    WARNING = "warning"


Reading = Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A rule's answer for one reading: `firing`, and the message when it does."""

    firing: bool
    message: str = ""


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    domain: str
    severity: Severity
    # How long (event time) the condition must stay absent before the alert clears itself:
    # long enough that a condition flickering at the reporting interval keeps one alert.
    hold_off_s: float
    check: Callable[[Reading], Verdict | None]  # None: the rule does not apply to this reading


# --- lighting ------------------------------------------------------------------------------------

# A lamp told to be on that draws no more than this is dark: an LED driver in standby draws
# about 0.5 W, the smallest lamp at its lowest dim level draws about 3 W.
LAMP_FAILURE_MAX_POWER_W = 1.5
# Street lights switch at about -2° (civil twilight); a lamp is day-burning only when it is on
# with the sun this high, so a photocell switching a few minutes late at dawn never fires.
DAY_BURNING_MIN_ELEVATION_DEG = 3.0
# The lamp's supply: EN 50160 allows ±10 % of 230 V; outside this band the lamp is at risk.
SUPPLY_MIN_VOLTAGE_V = 207.0
SUPPLY_MAX_VOLTAGE_V = 253.0


def _f(reading: Reading, key: str) -> float:
    value = reading[key]
    assert isinstance(value, int | float), key
    return float(value)


def _ts(reading: Reading) -> datetime:
    ts = reading["ts"]
    assert isinstance(ts, datetime)
    return ts


def lamp_failure(r: Reading) -> Verdict | None:
    if r.get("voltage_v") is not None and _f(r, "voltage_v") < SUPPLY_MIN_VOLTAGE_V:
        return Verdict(False)  # no supply is supply loss, not a broken lamp
    power = _f(r, "power_w")
    firing = bool(r["lamp_on"]) and (power <= LAMP_FAILURE_MAX_POWER_W or bool(r["lamp_failure"]))
    return Verdict(
        firing, f"lamp is on but draws {power:g} W (≤ {LAMP_FAILURE_MAX_POWER_W:g} W): lamp failed"
    )


def day_burning(r: Reading) -> Verdict | None:
    if not r["lamp_on"]:
        return Verdict(False)
    city = get_city(str(r["city"]))
    elevation = solar.elevation_deg(city.lat, city.lon, _ts(r))
    return Verdict(
        elevation >= DAY_BURNING_MIN_ELEVATION_DEG,
        f"lamp is on in daylight (sun {elevation:.1f}° above the horizon)",
    )


def supply_loss(r: Reading) -> Verdict | None:
    volts = _f(r, "voltage_v")
    firing = not SUPPLY_MIN_VOLTAGE_V <= volts <= SUPPLY_MAX_VOLTAGE_V
    return Verdict(
        firing,
        f"supply voltage {volts:g} V outside {SUPPLY_MIN_VOLTAGE_V:g}–{SUPPLY_MAX_VOLTAGE_V:g} V",
    )


# --- metering ------------------------------------------------------------------------------------


def meter_tamper(r: Reading) -> Verdict | None:
    return Verdict(bool(r["tamper"]), f"{r['kind']} meter reports tampering")


# The export register counts in 0.001 kWh; a consumer's meter whose export register moved by
# more than this since its previous reading is running backwards (or was rewired).
REVERSE_ENERGY_MIN_KWH = 0.002


def reverse_energy(r: Reading) -> Verdict | None:
    """Needs `prev_energy_export_kwh` (the meter's previous reading), added by the engine."""
    if r["kind"] != "electricity" or r.get("energy_export_kwh") is None:
        return None
    prev = r.get("prev_energy_export_kwh")
    if prev is None:
        return None  # the meter's first reading: nothing to compare with
    delta = _f(r, "energy_export_kwh") - float(prev)  # type: ignore[arg-type]
    return Verdict(
        delta > REVERSE_ENERGY_MIN_KWH,
        f"consumer meter exported {delta:.3f} kWh since its previous reading",
    )


# Hold-offs: a few reporting intervals (lamps report every minute, meters every 15 minutes).
_LAMP_HOLD_OFF_S = 5 * 60.0
_METER_HOLD_OFF_S = 60 * 60.0

RULES: tuple[Rule, ...] = (
    Rule("lamp_failure", "lighting", Severity.MAJOR, _LAMP_HOLD_OFF_S, lamp_failure),
    Rule("day_burning", "lighting", Severity.MINOR, _LAMP_HOLD_OFF_S, day_burning),
    Rule("supply_loss", "lighting", Severity.CRITICAL, _LAMP_HOLD_OFF_S, supply_loss),
    Rule("meter_tamper", "metering", Severity.MAJOR, _METER_HOLD_OFF_S, meter_tamper),
    Rule("reverse_energy", "metering", Severity.MAJOR, _METER_HOLD_OFF_S, reverse_energy),
)

RULES_BY_NAME: dict[str, Rule] = {r.name: r for r in RULES}

# Which raw table feeds which domain's rules, and the column naming the device.
TABLE_DOMAINS: dict[str, tuple[str, str]] = {
    "lighting_readings": ("lighting", "lamp_id"),
    "meter_readings": ("metering", "meter_id"),
}
