"""The TTL cache (expiry, size bound, off switch) and the shared answers built on it (one computation
at a time per key, failures and cancellations not kept, recomputed in the background when asked late)."""

from __future__ import annotations

import asyncio
import time

import pytest

from api.cache import SharedAnswers, TtlCache


def test_entries_expire_are_bounded_and_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    c: TtlCache[str, int] = TtlCache(seconds=10, size=2)
    c.put("a", 1)
    c.put("b", 2)
    assert (c.get("a"), c.get("b")) == (1, 2)
    c.put("c", 3)  # over the size: the oldest put goes
    assert (c.get("a"), c.get("c")) == (None, 3)
    now[0] += 10.5
    assert c.get("b") is None and c.get("c") is None
    off: TtlCache[str, int] = TtlCache(seconds=0, size=2)
    off.put("a", 1)
    assert off.get("a") is None


class Source:
    """Answers that count how often they were computed and finish when released."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def answer(self) -> str:
        self.calls += 1
        await self.release.wait()
        return f"answer {self.calls}"


async def test_concurrent_requests_share_one_computation_then_its_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    answers: SharedAnswers[str, str] = SharedAnswers(seconds=1, size=10)
    source = Source()
    waiting = [asyncio.create_task(answers.get("latest", source.answer)) for _ in range(20)]
    await asyncio.sleep(0)
    source.release.set()
    assert await asyncio.gather(*waiting) == ["answer 1"] * 20
    assert await answers.get("latest", source.answer) == "answer 1"
    assert source.calls == 1
    assert await answers.get("top", source.answer) == "answer 2"  # another key is its own
    now[0] += 1.5
    assert await answers.get("latest", source.answer) == "answer 3"  # expired: computed afresh


async def test_a_failure_reaches_the_waiting_requests_and_is_not_kept() -> None:
    answers: SharedAnswers[str, str] = SharedAnswers(seconds=60, size=10)
    gate = asyncio.Event()

    async def failing() -> str:
        await gate.wait()
        raise LookupError("the database said no")

    first = asyncio.create_task(answers.get("k", failing))
    await asyncio.sleep(0)
    second = asyncio.create_task(answers.get("k", failing))
    await asyncio.sleep(0)
    gate.set()
    for task in (first, second):
        with pytest.raises(LookupError):
            await task
    source = Source()
    source.release.set()
    assert await answers.get("k", source.answer) == "answer 1"


async def leader_and_follower(
    answers: SharedAnswers[str, str], source: Source
) -> tuple[asyncio.Task[str], asyncio.Task[str]]:
    """A request computing key "k" and one waiting for it."""
    leader = asyncio.create_task(answers.get("k", source.answer))
    await asyncio.sleep(0)
    follower = asyncio.create_task(answers.get("k", source.answer))
    await asyncio.sleep(0)
    return leader, follower


async def test_a_cancelled_computation_is_taken_over_by_a_waiting_request() -> None:
    answers: SharedAnswers[str, str] = SharedAnswers(seconds=60, size=10)
    source = Source()
    leader, follower = await leader_and_follower(answers, source)
    leader.cancel()  # its client went away
    await asyncio.sleep(0)
    source.release.set()
    assert await follower == "answer 2"
    assert leader.cancelled()


async def test_turned_off_every_request_computes() -> None:
    answers: SharedAnswers[str, str] = SharedAnswers(seconds=0, size=10)
    source = Source()
    source.release.set()
    assert [await answers.get("k", source.answer) for _ in range(3)] == ["answer 1", "answer 2", "answer 3"]


async def test_a_request_cancelled_with_the_computation_it_waits_for_stays_cancelled() -> None:
    answers: SharedAnswers[str, str] = SharedAnswers(seconds=60, size=10)
    source = Source()
    leader, follower = await leader_and_follower(answers, source)
    source.release.set()  # were the follower to compute, it would finish: the test cannot hang
    leader.cancel()
    follower.cancel()  # its own deadline passed too: it must not go on to compute
    await asyncio.gather(leader, follower, return_exceptions=True)
    assert leader.cancelled() and follower.cancelled()
    assert source.calls == 1


class Stopping(BaseException):
    """Neither an error nor a cancellation: what a stopping process may raise in a computation."""


async def test_a_computation_ended_otherwise_is_taken_over_by_a_waiting_request() -> None:
    answers: SharedAnswers[str, str] = SharedAnswers(seconds=60, size=10)
    gate = asyncio.Event()

    async def stopping() -> str:
        await gate.wait()
        raise Stopping

    leader = asyncio.create_task(answers.get("k", stopping))
    await asyncio.sleep(0)
    source = Source()
    source.release.set()
    follower = asyncio.create_task(answers.get("k", source.answer))
    await asyncio.sleep(0)
    gate.set()
    with pytest.raises(Stopping):
        await leader
    assert await asyncio.wait_for(follower, 5) == "answer 1"  # not left waiting for good


async def kept_once(monkeypatch: pytest.MonkeyPatch) -> tuple[list[float], SharedAnswers[str, str], Source]:
    """A clock to move by hand, and key "k" computed once ("answer 1") and kept for a second."""
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    answers: SharedAnswers[str, str] = SharedAnswers(seconds=1, size=10)
    source = Source()
    source.release.set()
    assert await answers.get("k", source.answer) == "answer 1"
    return now, answers, source


async def test_an_answer_asked_late_is_served_while_one_computation_replaces_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now, answers, source = await kept_once(monkeypatch)
    now[0] += 0.5  # before the refresh point: nothing recomputed
    assert await answers.get("k", source.answer) == "answer 1"
    assert source.calls == 1
    source.release.clear()
    now[0] += 0.3  # past it: the kept answer at once, and one computation behind it
    assert [await answers.get("k", source.answer) for _ in range(5)] == ["answer 1"] * 5
    await asyncio.sleep(0)
    assert source.calls == 2
    now[0] += 0.3  # the kept answer expires while the background computation runs: requests wait for it
    waiting = asyncio.create_task(answers.get("k", source.answer))
    await asyncio.sleep(0)
    source.release.set()
    assert await waiting == "answer 2"
    assert await answers.get("k", source.answer) == "answer 2"
    assert source.calls == 2


async def test_a_failed_background_computation_leaves_the_answer_to_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    now, answers, source = await kept_once(monkeypatch)
    failures = 0

    async def failing() -> str:
        nonlocal failures
        failures += 1
        raise LookupError("the database said no")

    now[0] += 0.9
    assert await answers.get("k", failing) == "answer 1"
    await asyncio.sleep(0)
    assert failures == 1
    assert await answers.get("k", failing) == "answer 1"  # kept; a later request tries again
    await asyncio.sleep(0)
    assert failures == 2
    now[0] += 0.2  # expired: computed by the request itself
    assert await answers.get("k", source.answer) == "answer 2"


async def test_a_background_computation_past_its_timeout_gives_way() -> None:
    answers: SharedAnswers[str, str] = SharedAnswers(seconds=0.2, size=10, refresh_timeout=0.05)
    source = Source()
    source.release.set()
    assert await answers.get("k", source.answer) == "answer 1"
    hung = asyncio.Event()

    async def never() -> str:
        hung.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    await asyncio.sleep(0.17)
    assert await answers.get("k", never) == "answer 1"
    await asyncio.wait_for(hung.wait(), 1)
    await asyncio.sleep(0.1)  # timed out, and the answer expired meanwhile
    assert await asyncio.wait_for(answers.get("k", source.answer), 1) == "answer 2"


async def test_closing_cancels_the_background_computations(monkeypatch: pytest.MonkeyPatch) -> None:
    now, answers, source = await kept_once(monkeypatch)
    source.release.clear()
    now[0] += 0.9
    assert await answers.get("k", source.answer) == "answer 1"
    await asyncio.sleep(0)
    assert source.calls == 2  # running, and would wait for ever
    await asyncio.wait_for(answers.aclose(), 1)
    source.release.set()
    now[0] += 0.2  # expired: nothing left running, so the request computes
    assert await answers.get("k", source.answer) == "answer 3"


async def settle() -> None:
    """Let the tasks that can run, run (the loop's clock is the patched one: no timed sleep)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_background_computations_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    answers: SharedAnswers[str, str] = SharedAnswers(seconds=1, size=10, max_refreshing=2)
    source = Source()
    source.release.set()
    keys = ["a", "b", "c", "d"]
    for key in keys:
        await answers.get(key, source.answer)
    source.release.clear()
    now[0] += 0.9
    # All four are served as kept; only two are recomputed behind them.
    assert [await answers.get(key, source.answer) for key in keys] == [f"answer {i}" for i in range(1, 5)]
    await asyncio.sleep(0)
    assert source.calls == 6
    source.release.set()
    await settle()  # the two finish (each answers with the count of calls when it ends)
    # The two recomputed are new; the others, still late and with room now, are recomputed in turn.
    assert [await answers.get(key, source.answer) for key in keys] == ["answer 6", "answer 6", "answer 3", "answer 4"]
    await settle()
    assert source.calls == 8
    assert [await answers.get(key, source.answer) for key in ("c", "d")] == ["answer 7", "answer 8"]
