"""Produce an event seen from several upstreams once.

Commits are deduplicated by (repo, rev): a repo's revs only grow, so a commit whose rev is not newer
than the last one produced for that repo was already produced (through another upstream) or is
stale. The entry keeps the delivery futures of the first copy, so the upstream that saw the
duplicate waits for that delivery before advancing its own cursor. Identity and account events,
which have no rev, are deduplicated on their content. Both maps are bounded LRUs: a restart or an
eviction can only let a duplicate through, which the projector's rev rules absorb.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Hashable, Sequence

Futures = Sequence[asyncio.Future[object]]


class Deduper:
    """Bounded memory of what was produced recently."""

    def __init__(self, max_repos: int = 200_000, max_other: int = 50_000) -> None:
        self._revs: OrderedDict[str, tuple[str, Futures]] = OrderedDict()
        self._other: OrderedDict[Hashable, Futures] = OrderedDict()
        self._max_repos = max_repos
        self._max_other = max_other

    def seen_commit(self, did: str, rev: str) -> Futures | None:
        """If this commit was produced already, the futures of that delivery; else None."""
        entry = self._revs.get(did)
        if entry is None or rev > entry[0]:
            return None
        self._revs.move_to_end(did)
        return entry[1]

    def record_commit(self, did: str, rev: str, futures: Futures) -> None:
        """Remember that the commit (did, rev) was produced with these futures."""
        self._revs[did] = (rev, futures)
        self._revs.move_to_end(did)
        if len(self._revs) > self._max_repos:
            self._revs.popitem(last=False)

    def seen_other(self, key: Hashable) -> Futures | None:
        """Like seen_commit, for rev-less events keyed by their content."""
        futures = self._other.get(key)
        if futures is not None:
            self._other.move_to_end(key)
        return futures

    def record_other(self, key: Hashable, futures: Futures) -> None:
        """Remember a rev-less event by its content."""
        self._other[key] = futures
        if len(self._other) > self._max_other:
            self._other.popitem(last=False)

    def clear(self) -> None:
        """Forget everything (after a pipeline restart, deliveries must be redone)."""
        self._revs.clear()
        self._other.clear()
