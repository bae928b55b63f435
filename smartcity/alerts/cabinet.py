"""The `cabinet_imbalance` rule: the lamps of one control cabinet, together, drawing far from
what their dim levels predict.

Definition. For each lit lamp of the cabinet (its newest reading within CABINET_WINDOW_S,
lit, not dark, supply in band — dark lamps and bad supply have their own rules) the ratio

    r = (power_w / draw_fraction(dim_pct)) / reference

where `draw_fraction` is the LED driver model the dimming rule uses (10 % + 90 % × dim) and
`reference` is the lamp's own median full-level-equivalent draw over its last
CABINET_REFERENCE_MAX lit readings that are at least CABINET_REFERENCE_LAG_S old (within
CABINET_REFERENCE_DAYS). The telemetry does not carry the rated power; the lamp's own past is
its rating. The cabinet fires when the **median** r of at least CABINET_MIN_LAMPS lamps is more
than CABINET_TOLERANCE off 1.

Why the median of a cabinet: one lamp's fault (a broken dimmer draws +82 % at 50 %) moves the
median not at all, so lamp faults stay the lamp rules'; a cabinet-wide fault (a controller
applying the wrong dim profile, drivers mis-programmed on a maintenance round, a feeder tap
set wrong) moves every lamp, and the median of 40 lamps with 2 % reading noise is steady to
well under 1 %, so the cabinet can be held to 10 % where a single lamp needs 25 %.
Why the lag: a reference that included the last minutes would learn a fault as it happens.
Limitations: a cabinet that has drawn off for longer than the lag plus half of
CABINET_REFERENCE_MAX readings becomes its own reference and the alert clears; after such a
long fault ends, the normal draw looks off for a while (an echo alert); a cabinet whose lamps
were replaced with others of a different power looks off until the reference catches up.

Evaluated after each committed lamp batch (`engine.evaluate`) for the cabinets in it, from the
committed table, so every ingest worker reaches the same verdict whatever share of the
cabinet's lamps its batch holds. The alert's device is the cabinet id.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import psycopg

from smartcity.alerts import rules
from smartcity.alerts.rules import Reading, Verdict

Conn = psycopg.Connection[tuple[object, ...]]

RULE = "cabinet_imbalance"
# Lamps report every minute: two intervals catch every lamp's newest reading once.
CABINET_WINDOW_S = 120.0
CABINET_REFERENCE_LAG_S = 2 * 3600.0
CABINET_REFERENCE_DAYS = 7
# Four hours of a lamp's lit readings: a fault that lasted an hour or two is then a minority
# of the reference after it ends, and the median ignores it (with 60, a 70-minute fault made
# the reference 6 % high for the next hour and normal lamps looked 10 % low: measured in the
# bench). Cost: up to 240 index entries per lit lamp per evaluation.
CABINET_REFERENCE_MAX = 240
CABINET_REFERENCE_MIN = 5
CABINET_MIN_LAMPS = 5
# Reading noise (±2 %) and the spread of ageing drivers stay well inside this.
CABINET_TOLERANCE = 0.10


def verdicts(conn: Conn, readings: Sequence[Reading]) -> dict[str, tuple[str, datetime, Verdict]]:
    """cabinet id → (city, when, verdict) for the cabinets in `readings`, at each one's newest
    reading in them; cabinets where the rule says nothing (fewer than CABINET_MIN_LAMPS lit
    lamps with a reference: by day, in its first hours) are left out."""
    latest: dict[str, tuple[str, datetime]] = {}
    for r in readings:
        cab, ts = r.get("cabinet_id"), r["ts"]
        assert isinstance(ts, datetime)
        if cab is None:
            continue
        if str(cab) not in latest or latest[str(cab)][1] < ts:
            latest[str(cab)] = (str(r["city"]), ts)
    if not latest:
        return {}
    cabs = sorted(latest)
    rows = conn.execute(
        _QUERY,
        {
            "cabs": cabs,
            "ts": [latest[c][1] for c in cabs],
            "window": CABINET_WINDOW_S,
            "lag": CABINET_REFERENCE_LAG_S,
            "days": CABINET_REFERENCE_DAYS,
            "max": CABINET_REFERENCE_MAX,
            "base": rules.DRIVER_BASE_FRACTION,
            "dark": rules.LAMP_FAILURE_MAX_POWER_W,
            "vmin": rules.SUPPLY_MIN_VOLTAGE_V,
            "vmax": rules.SUPPLY_MAX_VOLTAGE_V,
        },
    ).fetchall()
    ratios: dict[str, list[float]] = {}
    for cab, full_w, ref, n in rows:
        if ref is not None and int(n) >= CABINET_REFERENCE_MIN and float(ref) > 0:  # type: ignore[call-overload, arg-type]
            ratios.setdefault(str(cab), []).append(float(full_w) / float(ref))  # type: ignore[arg-type]
    out: dict[str, tuple[str, datetime, Verdict]] = {}
    for cab, values in ratios.items():
        if len(values) < CABINET_MIN_LAMPS:
            continue
        median = float(np.median(values))
        city, ts = latest[cab]
        message = (
            f"the {len(values)} lit lamps of cabinet {cab} draw {median:.0%} of what their dim "
            f"levels predict (median; tolerance ±{CABINET_TOLERANCE:.0%}): cabinet imbalance"
        )
        out[cab] = (city, ts, Verdict(abs(median - 1) > CABINET_TOLERANCE, message))
    return out


_QUERY = """
    SELECT c.cabinet_id, x.full_w, r.ref, r.n
    FROM unnest(%(cabs)s::text[], %(ts)s::timestamptz[]) AS c (cabinet_id, ts)
    CROSS JOIN LATERAL (
        SELECT DISTINCT ON (l.lamp_id) l.lamp_id, l.lamp_on, l.power_w, l.voltage_v, l.dim_pct,
               l.power_w / (%(base)s + (1 - %(base)s) * l.dim_pct / 100) AS full_w
        FROM lighting_readings l
        WHERE l.cabinet_id = c.cabinet_id
          AND l.ts > c.ts - make_interval(secs => %(window)s) AND l.ts <= c.ts
        ORDER BY l.lamp_id, l.ts DESC
    ) x
    CROSS JOIN LATERAL (
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY y.full_w) AS ref, count(*) AS n
        FROM (
            SELECT l.power_w / (%(base)s + (1 - %(base)s) * l.dim_pct / 100) AS full_w
            FROM lighting_readings l
            WHERE l.lamp_id = x.lamp_id
              AND l.ts <= c.ts - make_interval(secs => %(lag)s)
              AND l.ts > c.ts - make_interval(days => %(days)s)
              AND l.lamp_on AND l.dim_pct > 0 AND l.power_w > %(dark)s
              AND l.voltage_v BETWEEN %(vmin)s AND %(vmax)s
            ORDER BY l.ts DESC LIMIT %(max)s
        ) y
    ) r
    WHERE x.lamp_on AND x.dim_pct > 0 AND x.power_w > %(dark)s
      AND x.voltage_v BETWEEN %(vmin)s AND %(vmax)s
"""
