"""Which upstream seq the cursor may advance to: the high-water mark of acknowledged frames.

Frames are registered in arrival order with the delivery futures of their events. The acknowledged
cursor advances over a prefix of frames whose futures have all completed, never past a frame still
in flight, so after a crash resuming from it re-delivers (duplicates are allowed) but never skips
(gaps are not). A failed delivery surfaces as :class:`~ingest.errors.BrokerError`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from ingest.errors import BrokerError


class AckTracker:
    """Per-upstream ordered record of in-flight frames and the acknowledged seq."""

    def __init__(self, acked: int | None = None) -> None:
        self._pending: deque[tuple[int, Sequence[asyncio.Future[object]]]] = deque()
        self.acked: int | None = acked

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, seq: int, futures: Sequence[asyncio.Future[object]]) -> None:
        """Register a frame (with no futures when it produced no events)."""
        if not futures and not self._pending:
            # The common case: nothing in flight before it, nothing to wait for.
            self.acked = seq
            return
        self._pending.append((seq, futures))
        self.poll()

    def poll(self) -> int | None:
        """Advance over the completed prefix; return the acknowledged seq."""
        pending = self._pending
        while pending:
            seq, futures = pending[0]
            for fut in futures:
                if not fut.done():
                    return self.acked
            for fut in futures:
                if fut.cancelled():
                    raise BrokerError(f"delivery of an event of seq {seq} was cancelled")
                err = fut.exception()
                if err is not None:
                    raise BrokerError(f"delivery of an event of seq {seq} failed: {err}") from err
            pending.popleft()
            self.acked = seq
        return self.acked

    async def wait_oldest(self) -> None:
        """Wait until the oldest in-flight frame is delivered (backpressure when too many are)."""
        if self._pending:
            _, futures = self._pending[0]
            if futures:
                await asyncio.wait(futures)
        self.poll()

    async def drain(self) -> int | None:
        """Wait for every in-flight frame; return the acknowledged seq."""
        while self._pending:
            await self.wait_oldest()
        return self.acked
