"""ETA accuracy: the Transit App horizon buckets and their score (DESIGN.md, Targets).

One definition for `smartcity bench eta` (predictions against the simulator's ground truth)
and for the transit rollups (sampled predictions against observed stop arrivals): a
prediction belongs to the bucket of its horizon — how long before the bus really arrived it
was made — and is accurate when the bus came at most `early_s` earlier or `late_s` later
than predicted. The score is the mean of the bucket accuracies (a bucket without predictions
counts as 0, so a predictor cannot score by predicting only short horizons).
"""

from __future__ import annotations

from collections.abc import Mapping

# (label, horizon from s, to s, early s, late s): Transit App's ETA-accuracy buckets.
BUCKETS: tuple[tuple[str, int, int, int, int], ...] = (
    ("0_3", 0, 180, 30, 90),
    ("3_6", 180, 360, 60, 150),
    ("6_10", 360, 600, 60, 210),
    ("10_15", 600, 900, 90, 270),
)
# Predictions further ahead than this are in no bucket (not scored, not sampled).
MAX_HORIZON_S = BUCKETS[-1][2]


def bucket_of(horizon_s: float) -> str | None:
    """The label of the bucket holding `horizon_s`, or None outside 0–15 min."""
    for label, lo, hi, _, _ in BUCKETS:
        if lo <= horizon_s < hi:
            return label
    return None


def bucket_middle_s(label: str) -> float:
    for name, lo, hi, _, _ in BUCKETS:
        if name == label:
            return (lo + hi) / 2
    raise KeyError(label)


def is_accurate(label: str, error_s: float) -> bool:
    """`error_s` = real − predicted arrival (positive: the bus came later than predicted)."""
    for name, _, _, early, late in BUCKETS:
        if name == label:
            return -early <= error_s <= late
    raise KeyError(label)


def overall(accuracy: Mapping[str, float]) -> float:
    """The score: mean of the bucket accuracies (0..1), a missing bucket counting as 0."""
    return sum(accuracy.get(label, 0.0) for label, *_ in BUCKETS) / len(BUCKETS)
