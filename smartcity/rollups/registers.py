"""Register deltas: how a lifetime counter (energy_wh, operating_hours, energy_import_kwh,
volume_m3) becomes consumption per bucket.

The rule, the same in every tier and in the raw-tier queries:

* The delta of a reading is its register minus the device's previous reading's register (by
  event time). It **belongs to the bucket of the later reading**: the reading that reports
  the consumption closes the interval (prev_ts, ts]. So a delta that spans a bucket boundary
  counts in the later bucket, a gap's whole consumption lands on the first reading after it,
  and no interval is counted twice or lost however the buckets are cut.
* A register that goes down was reset (meter replaced, controller reflashed): the counter
  restarted from zero, so the delta is the new value itself. What the old counter gained
  between the previous reading and the reset is unknowable and not counted.
* The first reading of a device, or the first after a gap longer than the look-back
  (`rollup_lookback_h`), has no previous reading: delta 0.

The previous reading can sit in an earlier bucket; finding it needs a window over time per
device, which a TimescaleDB continuous aggregate cannot hold (no window functions), hence
rollups refreshed by `maintain` in both storage modes (docs/storage.md).
"""

from __future__ import annotations

from psycopg import sql

# The default look-back (a week): a lamp or meter off the network for longer than that has
# most likely been serviced or replaced, and its register cannot be trusted across the gap.
DEFAULT_LOOKBACK_H = 168.0


def delta(value: str, previous: str) -> sql.Composable:
    """SQL for the delta of register column `value` given its previous value `previous`
    (NULL when there is no usable previous reading)."""
    v, p = sql.Identifier(value), sql.Identifier(previous)
    return sql.SQL(
        "CASE WHEN {p} IS NULL THEN 0 WHEN {v} >= {p} THEN {v} - {p} ELSE {v} END"
    ).format(v=v, p=p)


def previous(column: str, device: str, lookback: sql.Composable) -> sql.Composable:
    """SQL for the device's previous reading's `column`, NULL when that reading is more than
    `lookback` (an interval expression) before this one: the same rule whichever range is
    being computed, so refreshing in pieces gives the same numbers as refreshing at once."""
    # COLLATE "C": partitioning only needs equality, and a bytewise sort of device ids is
    # several times cheaper than a linguistic one.
    return sql.SQL(
        'CASE WHEN ts - lag(ts) OVER (PARTITION BY {d} COLLATE "C" ORDER BY ts) <= {lb} '
        'THEN lag({c}) OVER (PARTITION BY {d} COLLATE "C" ORDER BY ts) END'
    ).format(c=sql.Identifier(column), d=sql.Identifier(device), lb=lookback)
