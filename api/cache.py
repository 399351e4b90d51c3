"""Small in-process caches with a time to live, for answers that may be a little old."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """At most ``size`` entries, each served for ``seconds`` after it was put; least recently put
    entries go first. ``seconds`` 0 turns it off."""

    def __init__(self, seconds: float, size: int) -> None:
        self._seconds = seconds
        self._size = size
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The live value for ``key``, or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._entries[key]
            return None
        return entry[1]

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
    next one computes afresh. ``seconds`` 0 turns it off (every request computes)."""

    def __init__(self, seconds: float, size: int) -> None:
        self._seconds = seconds
        self._kept = TtlCache[K, V](seconds, size)
        self._running: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        """The kept answer for ``key``, the one being computed, or ``compute()``'s."""
        if self._seconds <= 0:
            return await compute()
        while True:
            kept = self._kept.get(key)
            if kept is not None:
                return kept
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
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._running[key] = future
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
