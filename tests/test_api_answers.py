"""The API's answer cache: reuse within the TTL, one build at a time per key, failures never
cached, bounded size, off at TTL 0 (the clock is the seam: a list the test moves by hand)."""

from __future__ import annotations

import asyncio

import pytest

from api.answers import AnswerCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_is_reused_until_it_expires() -> None:
    clock = Clock()
    cache: AnswerCache[int] = AnswerCache(2.0, 10, clock=clock)
    builds = 0

    async def build() -> int:
        nonlocal builds
        builds += 1
        return builds

    async def scenario() -> None:
        first = await cache.get("s1", build)
        assert (first.value, first.hit, first.age_s) == (1, False, 0.0)
        clock.now += 1.5
        again = await cache.get("s1", build)
        assert (again.value, again.hit, again.age_s) == (1, True, 1.5)
        assert (await cache.get("s2", build)).value == 2  # another key
        clock.now += 0.5  # s1 is 2.0 s old: expired
        assert (await cache.get("s1", build)).value == 3

    asyncio.run(scenario())
    assert (cache.hits, cache.misses) == (1, 3)


def test_concurrent_misses_share_one_build() -> None:
    cache: AnswerCache[str] = AnswerCache(5.0, 10)
    builds = 0

    async def scenario() -> list[str]:
        release = asyncio.Event()

        async def build() -> str:
            nonlocal builds
            builds += 1
            await release.wait()
            return "feed"

        tasks = [asyncio.create_task(cache.get("tu", build)) for _ in range(5)]
        await asyncio.sleep(0)  # every task reaches the cache before the build finishes
        release.set()
        return [(await t).value for t in tasks]

    assert asyncio.run(scenario()) == ["feed"] * 5
    assert builds == 1


def test_a_failed_build_is_not_cached_and_its_waiters_build_again() -> None:
    cache: AnswerCache[str] = AnswerCache(5.0, 10)
    attempts = 0

    async def scenario() -> tuple[BaseException | str, ...]:
        release = asyncio.Event()

        async def build() -> str:
            nonlocal attempts
            attempts += 1
            await release.wait()
            if attempts == 1:
                raise RuntimeError("database went away")
            return "ok"

        first = asyncio.create_task(cache.get("k", build))
        await asyncio.sleep(0)
        second = asyncio.create_task(cache.get("k", build))
        await asyncio.sleep(0)
        release.set()
        got = await asyncio.gather(first, second, return_exceptions=True)
        return tuple(g if isinstance(g, BaseException) else g.value for g in got)

    first, second = asyncio.run(scenario())
    assert isinstance(first, RuntimeError)
    assert second == "ok"
    assert attempts == 2


def test_size_is_bounded_and_ttl_zero_turns_it_off() -> None:
    cache: AnswerCache[int] = AnswerCache(60.0, 3)
    off: AnswerCache[int] = AnswerCache(0.0, 3)
    n = 0

    async def build() -> int:
        nonlocal n
        n += 1
        return n

    async def scenario() -> None:
        for key in range(10):
            await cache.get(key, build)
        assert len(cache) == 3
        assert (await cache.get(9, build)).hit  # the newest stay
        assert not (await cache.get(0, build)).hit  # the oldest went
        assert (await off.get("x", build)).value != (await off.get("x", build)).value
        assert len(off) == 0

    asyncio.run(scenario())


@pytest.mark.parametrize("ttl_s", [-1.0, 0.0])
def test_non_positive_ttl_never_stores(ttl_s: float) -> None:
    cache: AnswerCache[int] = AnswerCache(ttl_s, 3)

    async def build() -> int:
        return 1

    asyncio.run(cache.get("k", build))
    assert len(cache) == 0


def test_an_answer_not_kept_still_goes_to_the_waiters_of_its_build() -> None:
    cache: AnswerCache[bytes] = AnswerCache(5.0, 10)
    builds = 0

    async def scenario() -> list[bytes]:
        release = asyncio.Event()

        async def build() -> bytes:
            nonlocal builds
            builds += 1
            await release.wait()
            return b"x" * 1000

        tasks = [
            asyncio.create_task(cache.get("big", build, keep=lambda b: len(b) < 100))
            for _ in range(3)
        ]
        await asyncio.sleep(0)
        release.set()
        return [(await t).value for t in tasks]

    assert asyncio.run(scenario()) == [b"x" * 1000] * 3
    assert builds == 1
    assert len(cache) == 0  # too large to keep
