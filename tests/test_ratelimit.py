"""The token bucket and the client address it is keyed by (no server needed)."""

from __future__ import annotations

from api.ratelimit import TokenBucketLimiter, client_address, retry_after_header


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_the_sustained_rate() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate_per_s=2.0, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == 0.5  # half a second until the next token at 2/s
    clock.now += 0.5
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    clock.now += 100  # refills, but never beyond the burst
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") > 0


def test_clients_have_their_own_buckets_and_memory_is_bounded() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate_per_s=1.0, burst=1, max_clients=2, clock=clock)
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    assert limiter.take("b") == 0.0
    assert limiter.take("c") == 0.0
    assert len(limiter) == 2  # "a", least recently seen, was forgotten
    assert limiter.take("a") == 0.0


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    proxies = frozenset({"10.0.0.1"})
    assert client_address("203.0.113.9", "1.2.3.4", proxies) == "203.0.113.9"
    assert client_address("10.0.0.1", "1.2.3.4", proxies) == "1.2.3.4"
    # A client's own forged entry sits left of what the proxy appended: the right-most wins.
    assert client_address("10.0.0.1", "6.6.6.6, 1.2.3.4", proxies) == "1.2.3.4"
    assert client_address("10.0.0.1", "1.2.3.4, 10.0.0.1", proxies) == "1.2.3.4"
    assert client_address("10.0.0.1", None, proxies) == "10.0.0.1"
    assert client_address(None, None, proxies) == "unknown"


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(1.2) == "2"
