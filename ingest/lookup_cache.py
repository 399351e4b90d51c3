"""A bounded LRU of asynchronous lookups (DID documents, handles) with time-to-live.

- An answer is kept for ``ttl`` seconds, a failure (:class:`~ingest.errors.IdentityError`) for
  ``failure_ttl``, so a broken or hostile name costs one lookup per period, not one per event.
  Other exceptions are bugs: they reach the caller and are not kept.
- Concurrent callers of one key share one lookup; a caller that goes away does not cancel it for the
  others.
- :meth:`LookupCache.invalidate` forgets a key *and* detaches a lookup in flight for it: that lookup's
  answer goes to whoever already waits on it but is not stored, since it may predate the change that
  caused the invalidation.
- Each answer comes with the time its lookup started, so a caller can refuse answers older than
  another one (a handle checked before the DID document that claims it was fetched).
- At most ``max_entries`` keys; the least recently used goes first.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ingest.errors import IdentityError

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Cached(Generic[V]):
    """One answer: a value or the failure, when its lookup started and until when it holds."""

    answer: V | IdentityError
    started: float
    expires: float


class LookupCache(Generic[K, V]):
    """Answers of ``lookup(key)`` calls, shared and kept for a while."""

    def __init__(
        self,
        *,
        max_entries: int,
        ttl: float,
        failure_ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_entries = max_entries
        self._ttl = ttl
        self._failure_ttl = failure_ttl
        self._clock = clock
        self._entries: OrderedDict[K, Cached[V]] = OrderedDict()
        self._pending: dict[K, tuple[float, asyncio.Task[Cached[V]]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: K, lookup: Callable[[], Awaitable[V]], *, not_before: float | None = None) -> Cached[V]:
        """The answer for ``key`` from a lookup started at or after ``not_before`` (when given), looked
        up if there is none in the cache or in flight."""
        now = self._clock()
        floor = now if not_before is None else min(not_before, now)
        entry = self._entries.get(key)
        if entry is not None and entry.expires > now and (not_before is None or entry.started >= floor):
            self._entries.move_to_end(key)
            return entry
        pending = self._pending.get(key)
        if pending is None or (not_before is not None and pending[0] < floor):
            pending = (now, asyncio.create_task(self._run(key, lookup, now)))
            self._pending[key] = pending
        # shield: one caller going away must not cancel the lookup the others wait on.
        return await asyncio.shield(pending[1])

    def peek(self, key: K) -> V | None:
        """The stored value for ``key`` if there is one (even expired), without a lookup."""
        entry = self._entries.get(key)
        if entry is None or isinstance(entry.answer, IdentityError):
            return None
        return entry.answer

    def invalidate(self, key: K) -> None:
        """Forget ``key``; a lookup in flight for it is no longer stored or shared."""
        self._entries.pop(key, None)
        self._pending.pop(key, None)

    def cancel_pending(self) -> None:
        """Cancel the lookups in flight (on close)."""
        for _, task in self._pending.values():
            task.cancel()
        self._pending.clear()

    async def _run(self, key: K, lookup: Callable[[], Awaitable[V]], started: float) -> Cached[V]:
        me = asyncio.current_task()
        try:
            answer: V | IdentityError
            try:
                answer = await lookup()
                ttl = self._ttl
            except IdentityError as err:
                answer = err
                ttl = self._failure_ttl
            entry = Cached(answer, started, self._clock() + ttl)
            if self._is_pending(key, me):
                self._store(key, entry)
            return entry
        finally:
            if self._is_pending(key, me):
                del self._pending[key]

    def _is_pending(self, key: K, task: asyncio.Task[object] | None) -> bool:
        pending = self._pending.get(key)
        return pending is not None and pending[1] is task

    def _store(self, key: K, entry: Cached[V]) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)


def unwrap(entry: Cached[V]) -> V:
    """The value of ``entry``; raise the failure it holds."""
    if isinstance(entry.answer, IdentityError):
        # The same instance is raised to every caller while cached: drop the traceback of the last
        # raise so it does not grow with each one.
        raise entry.answer.with_traceback(None)
    return entry.answer
