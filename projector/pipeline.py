"""Batch pipeline: prepare batch N+1 (pure CPU: decode, validate, build rows) while batch N commits,
and commit the partitions of a poll on several lanes at once.

A lane owns the partitions whose number is its index modulo the lane count. Within a lane at most one
commit is in flight and commits happen in poll order, so the offsets rule of :mod:`projector.store`
holds per partition. Lanes share no offsets rows and no ledger rows (a repo's events stay in one
partition); where their batches meet (a track liked from both, an artist's counts) the store's
claims make them take turns. A commit is Python and Postgres in turn: with one lane Postgres waits
while Python folds a batch and Python waits while Postgres runs it; with two, one lane's statements
run while the other's Python works, on the machine's other core.

Preparation runs in chunks, yielding to the event loop between them, so the commits in flight can
send their next statements as soon as the previous ones return.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from projector.prepare import LogMessage, Prepared
from projector.store import BatchResult, Store

_CHUNK = 256

Committed = tuple[BatchResult, Sequence[LogMessage]]


class CommitPipeline:
    """Feeds batches to a store, overlapping preparation with the commits in flight."""

    def __init__(self, store: Store, lanes: int = 1) -> None:
        if lanes < 1:
            raise ValueError("a pipeline needs at least one lane")
        self._store = store
        self._lanes = lanes
        self._pending: dict[int, tuple[asyncio.Task[BatchResult], Sequence[LogMessage]]] = {}

    async def _prepare(self, batch: Sequence[LogMessage]) -> Prepared:
        parts: list[Prepared] = []
        for start in range(0, len(batch), _CHUNK):
            parts.append(self._store.prepare(batch[start : start + _CHUNK]))
            await asyncio.sleep(0)
        times = [p.newest for p in parts if p.newest is not None]
        return Prepared([item for p in parts for item in p.items], max(times) if times else None)

    async def submit(self, batch: Sequence[LogMessage]) -> list[Committed]:
        """Prepare ``batch`` lane by lane; for each lane wait for its previous commit, then start this
        one. Returns the previous commits that finished meanwhile (with their messages)."""
        by_lane: dict[int, list[LogMessage]] = {}
        for m in batch:
            by_lane.setdefault(m.partition % self._lanes, []).append(m)
        done: list[Committed] = []
        for lane, messages in sorted(by_lane.items()):
            prepared = await self._prepare(messages)
            if (previous := await self._collect(lane)) is not None:
                done.append(previous)
            self._pending[lane] = (asyncio.create_task(self._store.commit(prepared)), messages)
        return done

    async def _collect(self, lane: int) -> Committed | None:
        entry = self._pending.pop(lane, None)
        if entry is None:
            return None
        task, messages = entry
        return await task, messages

    async def flush(self) -> list[Committed]:
        """Wait for every commit in flight; return their results and batches."""
        return [c for lane in sorted(self._pending) if (c := await self._collect(lane)) is not None]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pending = list(self._pending.values())
        self._pending.clear()
        if exc_type is None:
            outcomes = await asyncio.gather(*(task for task, _ in pending), return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            return
        # Shutting down on an error or a cancel: the transactions roll back, nothing is lost (their
        # offsets were not stored).
        for task, _ in pending:
            task.cancel()
        for task, _ in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
