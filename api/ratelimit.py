"""Per-client rate limiting of the public endpoints: an in-process token bucket.

Each client (by address) has a bucket of `burst` tokens refilled at `rate_per_s`; a request
takes one, and a request that finds the bucket empty gets 429 with Retry-After (the seconds
until a token is back). Buckets live in one process: with several API processes or behind a
load balancer, put the limit in the proxy (nginx `limit_req`, an API gateway) instead, where it
sees every request.

Who is the client: the TCP peer. Behind a reverse proxy every request comes from the proxy, so
list the proxy in SMARTCITY_API_TRUSTED_PROXIES; then, and only for requests from it, the
address in X-Forwarded-For that the proxy appended (the right-most one not itself a trusted
proxy) is the client. X-Forwarded-For from anyone else is ignored: a client could write any
address there and so escape its own bucket.

Memory is bounded: at most `max_clients` buckets; the least recently seen is forgotten first
(a forgotten client simply starts again with a full bucket).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

# Enough for every active client of a city-wide app at once; each bucket is ~100 bytes.
MAX_CLIENTS = 100_000


class TokenBucketLimiter:
    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        # client -> (tokens, time of last update); most recently used last.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str) -> float:
        """Take a token for `client`: 0.0 if allowed, else the seconds until one is free."""
        now = self._clock()
        tokens, last = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate_per_s)
        wait_s = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait_s = (1.0 - tokens) / self.rate_per_s
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait_s

    def __len__(self) -> int:
        return len(self._buckets)


def client_address(peer: str | None, forwarded_for: str | None, trusted: frozenset[str]) -> str:
    """The client's address: the peer, or (only from a trusted proxy) X-Forwarded-For's."""
    if peer is None:
        return "unknown"
    if peer not in trusted or not forwarded_for:
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        if hop and hop not in trusted:
            return hop
    return peer


def retry_after_header(wait_s: float) -> str:
    """Retry-After is whole seconds; round up so a client that obeys it is let through."""
    return str(max(1, math.ceil(wait_s)))
