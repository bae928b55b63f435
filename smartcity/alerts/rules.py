"""The per-reading rules: each looks at one committed reading and says whether it fires.

A rule is a pure function of the reading (and, for day-burning, the sun), so every ingest
worker evaluating any share of the stream reaches the same verdict; what makes a problem raise
once is the database (see `store.py`). Each rule carries its parameters as named constants,
documented in docs/alerts.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import numpy as np

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
    if not r["lamp_on"]:
        # A lamp switched off by day says nothing about whether it lights at night: the alert
        # stays open until the lamp is on again (and lights, or not).
        return None
    power = _f(r, "power_w")
    firing = power <= LAMP_FAILURE_MAX_POWER_W or bool(r["lamp_failure"])
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


# LED drivers draw about 10 % of their rated power plus 90 % × the dim level (constant-current
# drivers; the same model as the rollups' `DRIVER_BASE_FRACTION`).
DRIVER_BASE_FRACTION = 0.1
# A dimmed lamp whose draw is off the expected draw at its dim level by more than this share has
# a dimming failure: a driver that ignores dimming draws 1/0.55 = +82 % at 50 %; reading noise
# and ageing stay within a few per cent.
DIMMING_TOLERANCE = 0.25
# Readings at or above this dim level are "full": a dimming failure cannot show there, so they
# teach the lamp's own full-level draw (its reference, `ref_full_w`, added by the engine).
DIMMING_FULL_PCT = 90.0


def draw_fraction(dim_pct: float) -> float:
    """The share of its full draw a healthy lamp draws at `dim_pct`."""
    return DRIVER_BASE_FRACTION + (1 - DRIVER_BASE_FRACTION) * dim_pct / 100


def dimming_failure(r: Reading) -> Verdict | None:
    """Needs `ref_full_w`: the lamp's median draw at full level (its own history)."""
    ref = r.get("ref_full_w")
    dim = _f(r, "dim_pct")
    power = _f(r, "power_w")
    if (
        ref is None
        or not r["lamp_on"]
        or not 0 < dim < DIMMING_FULL_PCT
        or power <= LAMP_FAILURE_MAX_POWER_W  # dark: that is lamp failure
        or not SUPPLY_MIN_VOLTAGE_V <= _f(r, "voltage_v") <= SUPPLY_MAX_VOLTAGE_V
    ):
        return None
    expected = float(ref) * draw_fraction(dim)  # type: ignore[arg-type]
    ratio = power / expected
    return Verdict(
        abs(ratio - 1) > DIMMING_TOLERANCE,
        f"lamp dimmed to {dim:g} % draws {power:g} W, expected {expected:.0f} W "
        f"({ratio:.0%} of expected; full-level draw {float(ref):.0f} W): dimming failure",  # type: ignore[arg-type]
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


# Water leak: flow that never stops at night. Every reading of the last LEAK_WINDOW_S, all of them
# inside the local night LEAK_NIGHT_START_H–LEAK_NIGHT_END_H (when a household sleeps), flows
# more than the meter's own quiet-night level: its LEAK_BASELINE_QUANTILE flow at this time of
# night over the previous LEAK_BASELINE_DAYS (`night_baseline_lph`, added by the engine; a low
# quantile, so that the nights of a leak running for days do not raise it), plus
# LEAK_MIN_EXCESS_LPH and at least LEAK_MIN_RATIO times it. Normal night use is intermittent (a
# flush, a glass of water), so its two-hour minimum stays near or below that level; a running
# toilet adds 5–30 l/h for hours. Without history (fewer than LEAK_MIN_BASELINE readings) a fixed
# LEAK_MIN_FLOW_LPH applies. The meter's own `leak` flag fires the rule at any hour.
LEAK_NIGHT_START_H = 1.0
LEAK_NIGHT_END_H = 5.0
LEAK_WINDOW_S = 2 * 3600.0
LEAK_MIN_READINGS = 6  # of the 8 a 15-minute meter sends in the window (allow two lost)
LEAK_BASELINE_DAYS = 7
LEAK_BASELINE_QUANTILE = 0.2
LEAK_MIN_BASELINE = 8
LEAK_MIN_EXCESS_LPH = 3.0
LEAK_MIN_RATIO = 1.5
LEAK_MIN_FLOW_LPH = 12.0


def water_leak(r: Reading) -> Verdict | None:
    """Needs `window_min_flow_lph` and `window_readings` (the meter's readings in the last
    LEAK_WINDOW_S up to this one) and `night_baseline_lph`, added by the engine for readings
    inside the night."""
    if r["kind"] != "water":
        return None
    if r.get("leak"):
        return Verdict(True, "water meter reports a leak")
    low = r.get("window_min_flow_lph")
    if low is None:
        return None  # outside the night window: says nothing either way
    count = int(r.get("window_readings") or 0)  # type: ignore[call-overload]
    if count < LEAK_MIN_READINGS:
        return None
    baseline = r.get("night_baseline_lph")
    if isinstance(baseline, list | tuple) and len(baseline) >= LEAK_MIN_BASELINE:
        quiet = float(np.quantile(np.asarray(baseline, dtype=float), LEAK_BASELINE_QUANTILE))
        limit = max(quiet + LEAK_MIN_EXCESS_LPH, LEAK_MIN_RATIO * quiet)
        basis = f"its quiet-night level {quiet:.1f} l/h"
    else:
        limit, basis = LEAK_MIN_FLOW_LPH, "no night history"
    hours = LEAK_WINDOW_S / 3600
    return Verdict(
        float(low) >= limit,  # type: ignore[arg-type]
        f"water flowed at least {float(low):.1f} l/h for {hours:g} h at night "  # type: ignore[arg-type]
        f"(limit {limit:.1f} l/h from {basis}): leak",
    )


# Consumption spike: the interval's mean power against the same meter's same hour of the
# previous SPIKE_BASELINE_DAYS days (±30 min, so 4 readings a day), scored robustly in log space:
# z = (log x − median) / (1.4826 × MAD). Fires when z ≥ SPIKE_MIN_Z and x ≥ SPIKE_MIN_RATIO ×
# the baseline median: both, so a meter with a very steady baseline does not fire on a modest
# rise, and a very noisy one does not fire on its own noise. Electricity only: a short burst of
# water is a bath or a garden hose; sustained flow is the leak rule's.
SPIKE_BASELINE_DAYS = 14
SPIKE_MIN_BASELINE = 12  # three days of history at least
SPIKE_MIN_Z = 6.0
SPIKE_MIN_RATIO = 4.0
# The MAD of a meter's log power is never taken below this (a meter that always reads the same
# would otherwise fire on any change): e^0.1 ≈ ±10 %.
SPIKE_MIN_MAD = 0.1
_SPIKE_FLOOR_W = 1.0  # log of 0 W: counted as 1 W
# A meter whose usual draw at this hour is below this (an empty flat, a meter that was stuck for
# days) has no usual level to be a multiple of: its first real draw is not a spike.
SPIKE_MIN_USUAL_W = 20.0


def consumption_spike(r: Reading) -> Verdict | None:
    """Needs `baseline_w`: the same meter's power at this hour on previous days (numpy)."""
    if r["kind"] != "electricity" or r.get("power_w") is None:
        return None
    baseline = r.get("baseline_w")
    if not isinstance(baseline, list | tuple) or len(baseline) < SPIKE_MIN_BASELINE:
        return None
    logs = np.log(np.maximum(np.asarray(baseline, dtype=float), _SPIKE_FLOOR_W))
    median = float(np.median(logs))
    mad = max(1.4826 * float(np.median(np.abs(logs - median))), SPIKE_MIN_MAD)
    power = _f(r, "power_w")
    z = (math.log(max(power, _SPIKE_FLOOR_W)) - median) / mad
    usual = math.exp(median)
    if usual < SPIKE_MIN_USUAL_W:
        return None
    return Verdict(
        z >= SPIKE_MIN_Z and power >= SPIKE_MIN_RATIO * usual,
        f"meter drew {power:.0f} W, {power / usual:.1f}× its usual {usual:.0f} W at this hour "
        f"(robust z {z:.1f} over {len(baseline)} readings)",
    )


# Zero consumption: the register (electricity: import + export, so a meter running backwards
# is reverse energy, not this) did not move over the last N readings while the meter kept
# reporting (a seized water meter, a stuck pulse sensor, a bypass). An electricity meter of an
# occupied home always moves (a fridge alone is ~0.02 kWh per 15 min against the register's
# 0.001 kWh); water may stand still for a night, so its window is longer.
ZERO_CONSUMPTION_READINGS = {"electricity": 8, "water": 24}  # 2 h and 6 h at 15-minute readings
# Register resolution: a rise no larger than this is no movement.
ZERO_CONSUMPTION_EPSILON = {"electricity": 0.0005, "water": 0.00005}


def zero_consumption(r: Reading) -> Verdict | None:
    """Needs `flat_readings` and `flat_span`: how many of the meter's readings up to this one
    (at most the window's count) and the rise of its register across them."""
    kind = str(r["kind"])
    count = r.get("flat_readings")
    rise = r.get("flat_span")
    if count is None or rise is None:
        return None
    needed = ZERO_CONSUMPTION_READINGS[kind]
    if int(count) < needed:  # type: ignore[call-overload]
        return None
    unit = "kWh" if kind == "electricity" else "m³"
    return Verdict(
        float(rise) <= ZERO_CONSUMPTION_EPSILON[kind],  # type: ignore[arg-type]
        f"{kind} register did not move over the last {needed} readings "
        f"(rise {float(rise):g} {unit}) while the meter kept reporting",  # type: ignore[arg-type]
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
    Rule("dimming_failure", "lighting", Severity.MINOR, _LAMP_HOLD_OFF_S, dimming_failure),
    Rule("water_leak", "metering", Severity.MAJOR, _METER_HOLD_OFF_S, water_leak),
    Rule("consumption_spike", "metering", Severity.WARNING, _METER_HOLD_OFF_S, consumption_spike),
    Rule("zero_consumption", "metering", Severity.WARNING, _METER_HOLD_OFF_S, zero_consumption),
)


def evaluated_elsewhere(_: Reading) -> Verdict | None:
    """The per-reading check of a rule that looks at more than one reading."""
    return None


# Rules over more than one device's reading, evaluated by their own modules with the same
# lifecycle (`engine.apply_runs`): a cabinet's lamps together after each committed batch
# (`cabinet.py`); the buses from the tracker's state and stop arrivals on the schedule
# (`transit.py`, in `smartcity alerts run`). Bus fixes come every 10 s: a minute of hold-off
# is six of them; a headway problem lasts as long as a bus passes a few stops.
_BUS_HOLD_OFF_S = 60.0
_HEADWAY_HOLD_OFF_S = 20 * 60.0
GROUP_RULES: tuple[Rule, ...] = (
    Rule("cabinet_imbalance", "lighting", Severity.MINOR, _LAMP_HOLD_OFF_S, evaluated_elsewhere),
    Rule("stale_gps", "transit", Severity.MINOR, _BUS_HOLD_OFF_S, evaluated_elsewhere),
    Rule("off_route", "transit", Severity.MINOR, _BUS_HOLD_OFF_S, evaluated_elsewhere),
    Rule("bus_bunching", "transit", Severity.WARNING, _HEADWAY_HOLD_OFF_S, evaluated_elsewhere),
    Rule("headway_gap", "transit", Severity.WARNING, _HEADWAY_HOLD_OFF_S, evaluated_elsewhere),
)

RULES_BY_NAME: dict[str, Rule] = {r.name: r for r in RULES + GROUP_RULES}

# Which raw table feeds which domain's rules, and the column naming the device.
TABLE_DOMAINS: dict[str, tuple[str, str]] = {
    "lighting_readings": ("lighting", "lamp_id"),
    "meter_readings": ("metering", "meter_id"),
}
