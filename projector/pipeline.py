"""Two-stage batch pipeline: prepare batch N+1 (pure CPU: decode, validate, build rows) while batch
N commits (Postgres, on the other core).

At most one commit is in flight and commits happen in poll order, so the offsets rule of
:mod:`projector.store` is untouched. Preparation runs in chunks, yielding to the event loop between
them, so the in-flight commit can send its next statement as soon as the previous one returns.
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


class CommitPipeline:
    """Feeds batches to a store, overlapping preparation with the previous commit."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: tuple[asyncio.Task[BatchResult], Sequence[LogMessage]] | None = None

    async def _prepare(self, batch: Sequence[LogMessage]) -> Prepared:
        parts: list[Prepared] = []
        for start in range(0, len(batch), _CHUNK):
            parts.append(self._store.prepare(batch[start : start + _CHUNK]))
            await asyncio.sleep(0)
        times = [p.newest for p in parts if p.newest is not None]
        return Prepared([item for p in parts for item in p.items], max(times) if times else None)

    async def submit(self, batch: Sequence[LogMessage]) -> tuple[BatchResult, Sequence[LogMessage]] | None:
        """Prepare ``batch``, wait for the previous commit, start this one; return the previous result."""
        prepared = await self._prepare(batch)
        done = await self.flush()
        self._pending = (asyncio.create_task(self._store.commit(prepared)), batch)
        return done

    async def flush(self) -> tuple[BatchResult, Sequence[LogMessage]] | None:
        """Wait for the commit in flight, if any; return its result and batch."""
        if self._pending is None:
            return None
        task, batch = self._pending
        self._pending = None
        return await task, batch

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._pending is not None:
            task, _ = self._pending
            self._pending = None
            if exc_type is None:
                await task
            else:
                # Shutting down on an error or a cancel: the transaction rolls back, nothing is lost
                # (its offsets were not stored).
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
