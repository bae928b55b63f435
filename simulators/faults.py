"""Fault injection with a ground-truth log, and malformed messages on demand.

Each fault kind has a rate: the expected number of occurrences per device per simulated day.
`FaultSchedule` plans one simulated day at a time (so an unbounded run needs no end date):
for each kind it draws how many devices start that fault during the day, which ones, when,
and for how long, and writes each planned fault to the ground-truth log as one JSON line:

    {"domain": "lighting", "fault": "day_burning", "device_id": "ast-lamp-000042",
     "start": "2026-11-23T07:12:40Z", "end": "2026-11-23T10:30:00Z"}

The simulators then shape the device's readings while the fault is active (see
docs/simulators.md, "Faults"). Scores for alerts compare raised alerts with this log.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO

import numpy as np
import orjson

from simulators.stream import Message
from smartcity.topics import Domain

DAY_S = 86400.0

# fault kind → (shortest, longest) duration in simulated seconds. Long enough for an alert
# rule to see it over a few reporting intervals, short enough that a day shows several.
LIGHTING_FAULTS: dict[str, tuple[float, float]] = {
    "lamp_failure": (3 * 3600, 24 * 3600),  # lamp on (commanded) but draws no power
    "day_burning": (2 * 3600, 12 * 3600),  # lamp stays on in daylight
    "dimming_failure": (3 * 3600, 24 * 3600),  # ignores dimming: 100 % whenever on
    "supply_loss": (1800, 4 * 3600),  # no mains voltage: 0 V, 0 W, lamp dark
    "silent": (1800, 6 * 3600),  # stops reporting
}
METERING_FAULTS: dict[str, tuple[float, float]] = {
    "tamper": (3600, 12 * 3600),  # tamper flag; the meter under-reads (bypass)
    "leak": (24 * 3600, 72 * 3600),  # water: a steady extra flow, visible at night
    "reverse_energy": (3600, 12 * 3600),  # electricity counted on the export register
    "consumption_spike": (900, 3600),  # 5–10× the usual power (electricity)
    "stuck_register": (6 * 3600, 36 * 3600),  # seized meter: register and flow stand still
    "silent": (3600, 12 * 3600),  # stops reporting
}
# Faults of a lamp cabinet as a whole (planned per cabinet, logged with the cabinet's id).
CABINET_FAULTS: dict[str, tuple[float, float]] = {
    # every lamp of the cabinet draws 12–15 % more than its dim level predicts (a controller
    # applying the wrong dim profile, drivers mis-programmed): under the lamp rules' tolerance
    "cabinet_imbalance": (1800, 5400),
}
TRANSIT_FAULTS: dict[str, tuple[float, float]] = {
    "gps_dropout": (60, 600),  # no fixes
    "stale_position": (60, 600),  # fixes keep the same old position
    "off_route_detour": (120, 900),  # 150–400 m away from the shape
    "bunching": (1800, 1800),  # trips starting in this window are held back to bunch
}
FAULTS: dict[str, dict[str, tuple[float, float]]] = {
    "lighting": {**LIGHTING_FAULTS, **CABINET_FAULTS},
    "metering": METERING_FAULTS,
    "transit": TRANSIT_FAULTS,
}
MALFORMED_KINDS = ("bad_json", "wrong_types", "missing_fields", "absurd_values")


def iso_ms(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FaultLog:
    """Writes ground-truth entries as JSON lines to an open text file, or keeps them in memory."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self._out = out
        self.entries: list[dict[str, object]] = []

    def add(self, entry: dict[str, object]) -> None:
        if self._out is None:
            self.entries.append(entry)
        else:
            self._out.write(orjson.dumps(entry).decode() + "\n")


@dataclass(frozen=True, slots=True)
class ActiveFault:
    kind: str
    start_s: float
    end_s: float
    # A uniform draw in [0, 1) that the simulator maps to the fault's size (a leak's flow, a
    # detour's offset), fixed when the fault is planned.
    magnitude: float = 0.5


def parse_rates(domain: str, specs: Sequence[str]) -> dict[str, float]:
    """`["lamp_failure=0.01", "metering.silent=0.1", …]` → this domain's rates.

    A kind may be qualified by its domain (`silent` exists for lamps and meters; unqualified it
    applies to both). Other domains' kinds are skipped: the CLI passes one list to every fleet.
    """
    kinds = FAULTS[domain]
    rates: dict[str, float] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        qualifier, dot, kind = name.rpartition(".")
        if (dot and qualifier != domain) or kind not in kinds:
            continue
        try:
            rate = float(value) if sep else -1.0
        except ValueError:
            rate = -1.0
        if rate < 0:
            raise ValueError(f"fault rate {spec!r} must be KIND=RATE with a rate ≥ 0 per day")
        rates[kind] = rate
    return rates


def check_fault_specs(specs: Sequence[str]) -> None:
    known = {k for kinds in FAULTS.values() for k in kinds}
    known |= {f"{d}.{k}" for d, kinds in FAULTS.items() for k in kinds}
    for spec in specs:
        kind = spec.partition("=")[0]
        if kind not in known:
            raise ValueError(
                f"unknown fault {kind!r}; known: {', '.join(sorted(known))} "
                "(give each as KIND=RATE, the expected occurrences per device per simulated day)"
            )


class FaultSchedule:
    """Faults of one fleet, planned a simulated day at a time from their rates."""

    def __init__(
        self,
        domain: str,
        device_ids: Sequence[str],
        rates: dict[str, float],
        *,
        seed: int,
        start: datetime,
        log: FaultLog | None,
        eligible: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.domain = domain
        # fault kind → the device indices it can happen to (a leak only to water meters)
        self._eligible = eligible or {}
        self._ids = device_ids
        self._rates = {k: r for k, r in rates.items() if r > 0}
        self._rng = np.random.default_rng([seed, 0xFA017])
        self._start = start
        self._log = log
        self._planned_days = 0
        self.by_device: dict[int, list[ActiveFault]] = {}

    def __bool__(self) -> bool:
        return bool(self._rates or self.by_device)  # planned from rates, or added one by one

    def plan_until(self, t_s: float) -> None:
        """Make sure every fault starting before `t_s` simulated seconds is planned."""
        while self._rates and self._planned_days * DAY_S <= t_s:
            day0 = self._planned_days * DAY_S
            everyone = np.arange(len(self._ids))
            for kind, rate in self._rates.items():
                shortest, longest = FAULTS[self.domain][kind]
                pool = self._eligible.get(kind, everyone)
                count = int(self._rng.poisson(rate * len(pool))) if len(pool) else 0
                for index in self._rng.choice(pool, size=count) if count else ():
                    start_s = day0 + float(self._rng.uniform(0, DAY_S))
                    end_s = start_s + float(self._rng.uniform(shortest, longest))
                    self.add(int(index), kind, start_s, end_s, float(self._rng.random()))
            self._planned_days += 1

    def add(
        self,
        index: int,
        kind: str,
        start_s: float,
        end_s: float,
        magnitude: float = 0.5,
        **detail: object,
    ) -> None:
        self.by_device.setdefault(index, []).append(ActiveFault(kind, start_s, end_s, magnitude))
        if self._log is not None:
            self._log.add(
                {
                    "domain": self.domain,
                    "fault": kind,
                    "device_id": self._ids[index],
                    "start": iso_ms(self._start + timedelta(seconds=start_s)),
                    "end": iso_ms(self._start + timedelta(seconds=end_s)),
                    **detail,
                }
            )

    def active(self, index: int, t_s: float) -> ActiveFault | None:
        """The fault lamp/meter/bus `index` has at `t_s`, if any (the first planned wins)."""
        faults = self.by_device.get(index)
        if not faults:
            return None
        for fault in faults:
            if fault.start_s <= t_s < fault.end_s:
                return fault
        return None


def corrupt(payload: bytes, kind: str, rng: random.Random) -> bytes:
    """A broken copy of a valid JSON payload, of the given malformed kind."""
    if kind == "bad_json":
        return payload[: max(1, len(payload) // 2)]
    obj = orjson.loads(payload)
    if not isinstance(obj, dict):  # a SenML pack: break its first record instead
        obj = {"pack": obj}
    keys = sorted(obj)
    if kind == "wrong_types":
        numeric = [k for k in keys if isinstance(obj[k], int | float) and k != "ts"]
        key = rng.choice(numeric or keys)
        obj[key] = str(obj[key])
    elif kind == "missing_fields":
        obj.pop("ts", None)
        for key in keys:
            if key.endswith("_id"):
                obj.pop(key)
                break
    elif kind == "absurd_values":
        for key in ("power_w", "speed_mps", "energy_import_kwh", "volume_m3", "lat"):
            if key in obj:
                obj[key] = -1e12 if key != "lat" else 999.0
                break
        else:
            obj["ts"] = -1
    return orjson.dumps(obj)


def with_malformed(
    messages: Iterable[Message],
    rate: float,
    *,
    seed: int,
    start: datetime,
    log: FaultLog | None,
    kinds: Sequence[str] = MALFORMED_KINDS,
) -> Iterator[Message]:
    """Replace a share `rate` of messages by malformed copies (logged as ground truth)."""
    rng = random.Random(seed ^ 0xBAD)
    for t_s, topic, payload in messages:
        if rate > 0 and rng.random() < rate:
            kind = rng.choice(list(kinds))
            payload = corrupt(payload, kind, rng)
            if log is not None:
                log.add(
                    {
                        "domain": next((d.value for d in Domain if f"/{d.value}/" in topic), ""),
                        "fault": f"malformed:{kind}",
                        "topic": topic,
                        "start": iso_ms(start + timedelta(seconds=t_s)),
                        "end": iso_ms(start + timedelta(seconds=t_s)),
                    }
                )
        yield t_s, topic, payload
