"""Small in-process caches with a time to live, for answers that may be a little old."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from runtime.logging import get_logger

K = TypeVar("K")
V = TypeVar("V")

log = get_logger("api.cache")


class TtlCache(Generic[K, V]):
    """At most ``size`` entries, each served for ``seconds`` after it was put; least recently put
    entries go first. ``seconds`` 0 turns it off."""

    def __init__(self, seconds: float, size: int) -> None:
        self._seconds = seconds
        self._size = size
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The live value for ``key``, or None."""
        entry = self.get_with_time_left(key)
        return None if entry is None else entry[0]

    def get_with_time_left(self, key: K) -> tuple[V, float] | None:
        """The live value for ``key`` and the seconds it has left, or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        left = entry[0] - time.monotonic()
        if left < 0:
            del self._entries[key]
            return None
        return entry[1], left

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` for ``key``."""
        if self._seconds <= 0:
            return
        self._entries[key] = (time.monotonic() + self._seconds, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


class SharedAnswers(Generic[K, V]):
    """Answers that are the same for every caller, each served for ``seconds`` after it was computed,
    and computed once at a time: requests for a key being computed wait for that computation rather
    than each running it (a feed page's expiry under load would otherwise start as many queries as
    requests arrive in the time one takes). A failure is not kept: the requests waiting get it, the
    next one computes afresh. ``seconds`` 0 turns it off (every request computes).

    An answer asked for once more than ``REFRESH_AT`` of its time is gone is still served, and one
    computation in the background replaces it (bounded by ``refresh_timeout``): a page asked often
    never makes a request wait for its recomputation, and no answer is served older than ``seconds``.
    A background computation that fails leaves the kept answer to expire as it would have. At most
    ``max_refreshing`` run at once (they hold database connections outside the requests' in-flight
    limit, and pages computed in one burst come due in one); past that an answer is served as it is,
    and recomputed by a request once it expires."""

    REFRESH_AT = 0.75

    def __init__(self, seconds: float, size: int, *, refresh_timeout: float = 10.0, max_refreshing: int = 4) -> None:
        self._seconds = seconds
        self._refresh_timeout = refresh_timeout
        self._max_refreshing = max_refreshing
        self._kept = TtlCache[K, V](seconds, size)
        self._running: dict[K, asyncio.Future[V]] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def get(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        """The kept answer for ``key``, the one being computed, or ``compute()``'s."""
        if self._seconds <= 0:
            return await compute()
        while True:
            kept = self._kept.get_with_time_left(key)
            if kept is not None:
                value, left = kept
                late = left < self._seconds * (1 - self.REFRESH_AT)
                if late and key not in self._running and len(self._background) < self._max_refreshing:
                    self._refresh(key, compute)
                return value
            running = self._running.get(key)
            if running is None:
                break
            try:
                return await asyncio.shield(running)
            except asyncio.CancelledError:
                # The request computing it was cancelled (its client left, its deadline passed): this
                # one computes instead, unless it is itself being cancelled too.
                task = asyncio.current_task()
                if not running.cancelled() or (task is not None and task.cancelling()):
                    raise
        return await self._lead(key, self._claim(key), compute)

    async def aclose(self) -> None:
        """Cancel the background computations (the app is stopping: its pool is about to close)."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    def _claim(self, key: K) -> asyncio.Future[V]:
        # Claimed before any await, so no second computation of the key can start in between.
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        return future

    async def _lead(self, key: K, future: asyncio.Future[V], compute: Callable[[], Awaitable[V]]) -> V:
        try:
            value = await compute()
        except Exception as err:
            future.set_exception(err)
            future.exception()  # retrieved: with nobody waiting, asyncio would log it as lost
            raise
        except BaseException:
            future.cancel()  # cancelled, or the process is stopping: a waiting request computes instead
            raise
        finally:
            del self._running[key]
        self._kept.put(key, value)
        future.set_result(value)
        return value

    def _refresh(self, key: K, compute: Callable[[], Awaitable[V]]) -> None:
        future = self._claim(key)

        async def run() -> None:
            try:
                async with asyncio.timeout(self._refresh_timeout):
                    await self._lead(key, future, compute)
            except Exception as err:  # the kept answer stays until it expires; the next request retries
                log.warning("shared_answer_refresh_failed", error=type(err).__name__, detail=str(err)[:200])

        task = asyncio.get_running_loop().create_task(run())
        # The loop keeps only a weak reference to a task: held here until it is done.
        self._background.add(task)
        task.add_done_callback(self._background.discard)
