"""A simulated clock: real time, or accelerated (`speed` simulated seconds per real second)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


class SimClock:
    def __init__(self, start: datetime | None = None, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start = (start or datetime.now(UTC)).astimezone(UTC)
        self.speed = speed
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self._t0) * self.speed)

    def elapsed_s(self) -> float:
        """Simulated seconds since start."""
        return (time.monotonic() - self._t0) * self.speed

    def lag_s(self, sim_elapsed_s: float) -> float:
        """Real seconds by which the moment `sim_elapsed_s` is already past (negative: ahead)."""
        return (time.monotonic() - self._t0) - sim_elapsed_s / self.speed

    def real_seconds_until(self, sim_elapsed_s: float) -> float:
        """Real seconds to wait until `sim_elapsed_s` simulated seconds have passed."""
        return max(0.0, sim_elapsed_s / self.speed - (time.monotonic() - self._t0))
