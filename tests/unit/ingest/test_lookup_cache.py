"""ingest/lookup_cache.py: TTLs, shorter failures, shared lookups, invalidation, the LRU bound."""

from __future__ import annotations

import asyncio

import pytest

from ingest.errors import IdentityError, IdentityProblem
from ingest.lookup_cache import LookupCache, unwrap


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Counting:
    """A lookup that counts its calls, answers ``value``, and can be held until released."""

    def __init__(self, value: object = "v") -> None:
        self.calls = 0
        self.value = value
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self) -> object:
        self.calls += 1
        await self.release.wait()
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value


def cache(clock: Clock, max_entries: int = 100) -> LookupCache[str, object]:
    return LookupCache(max_entries=max_entries, ttl=100, failure_ttl=10, clock=clock)


async def test_answers_are_kept_for_the_ttl() -> None:
    clock, lookup = Clock(), Counting()
    c = cache(clock)
    assert unwrap(await c.get("k", lookup)) == "v"
    clock.now = 99
    assert unwrap(await c.get("k", lookup)) == "v" and lookup.calls == 1
    clock.now = 100.5
    await c.get("k", lookup)
    assert lookup.calls == 2


async def test_failures_are_kept_for_less_time_and_bugs_not_at_all() -> None:
    clock = Clock()
    c = cache(clock)
    failing = Counting(IdentityError(IdentityProblem.NOT_FOUND, "no"))
    for _ in range(2):
        with pytest.raises(IdentityError):
            unwrap(await c.get("k", failing))
    assert failing.calls == 1
    clock.now = 10.5
    with pytest.raises(IdentityError):
        unwrap(await c.get("k", failing))
    assert failing.calls == 2
    buggy = Counting(KeyError("bug"))
    for _ in range(2):
        with pytest.raises(KeyError):
            await c.get("b", buggy)
    assert buggy.calls == 2 and len(c) == 1


async def test_concurrent_callers_share_one_lookup_and_one_leaving_does_not_cancel_it() -> None:
    c = cache(Clock())
    lookup = Counting()
    lookup.release.clear()
    first = asyncio.create_task(c.get("k", lookup))
    others = [asyncio.create_task(c.get("k", lookup)) for _ in range(5)]
    await asyncio.sleep(0)
    first.cancel()
    lookup.release.set()
    results = await asyncio.gather(*others)
    assert {unwrap(r) for r in results} == {"v"} and lookup.calls == 1
    assert first.cancelled()


async def test_invalidate_detaches_a_lookup_in_flight() -> None:
    c = cache(Clock())
    old = Counting("old")
    old.release.clear()
    waiting = asyncio.create_task(c.get("k", old))
    await asyncio.sleep(0)
    c.invalidate("k")
    new = Counting("new")
    assert unwrap(await c.get("k", new)) == "new"
    old.release.set()
    # The old lookup's caller gets its answer, but it is not stored over the newer one.
    assert unwrap(await waiting) == "old"
    assert unwrap(await c.get("k", Counting("later"))) == "new"
    assert c.peek("k") == "new"
    c.invalidate("k")
    assert c.peek("k") is None


async def test_not_before_refuses_older_answers() -> None:
    clock = Clock()
    c = cache(clock)
    first = await c.get("k", Counting("first"))
    clock.now = 5
    assert unwrap(await c.get("k", Counting("x"), not_before=0)) == "first"
    assert unwrap(await c.get("k", Counting("second"), not_before=5)) == "second"
    assert first.started == 0


async def test_the_least_recently_used_goes_first() -> None:
    c = cache(Clock(), max_entries=2)
    for key in ("a", "b"):
        await c.get(key, Counting(key))
    await c.get("a", Counting("unused"))  # touch a
    await c.get("c", Counting("c"))
    assert (c.peek("a"), c.peek("b"), c.peek("c")) == ("a", None, "c")


async def test_cancel_pending_cancels_lookups_in_flight() -> None:
    c = cache(Clock())
    lookup = Counting()
    lookup.release.clear()
    waiting = asyncio.create_task(c.get("k", lookup))
    await asyncio.sleep(0)
    c.cancel_pending()
    with pytest.raises(asyncio.CancelledError):
        await waiting
