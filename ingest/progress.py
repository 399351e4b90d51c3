"""A one-line progress bar for ``plyr-index backfill/resync --run`` on a terminal.

:func:`render` is pure (stats and elapsed seconds → the line); :class:`ProgressBar` redraws it in place
a few times a second while a worker runs, and only when the stream is a terminal: logs and pipes get
the structured log lines instead, never carriage returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self, TextIO

from ingest.backfill import SyncStats

_WIDTH = 24


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def render(stats: SyncStats, elapsed: float, *, label: str = "sync") -> str:
    """``label [#####.....] done/total repos · records · failing · rate · ETA``."""
    total = max(stats.total, stats.done)
    filled = _WIDTH if total == 0 else round(_WIDTH * stats.done / total)
    bar = "#" * filled + "." * (_WIDTH - filled)
    rate = stats.done / elapsed if elapsed > 0 else 0.0
    parts = [f"{label} [{bar}] {stats.done}/{total} repos", f"{stats.records:,} records"]
    if stats.failing:
        parts.append(f"{stats.failing} failing")
    parts.append(f"{rate * 60:.1f} repos/min")
    left = total - stats.done
    if left and rate > 0:
        parts.append(f"ETA {_duration(left / rate)}")
    elif not left:
        parts.append(f"in {_duration(elapsed)}")
    return " · ".join(parts)


class ProgressBar:
    """Redraws :func:`render` of ``stats`` on ``stream`` every ``interval`` seconds while open, if the
    stream is a terminal (or ``force``); the last line stays when it closes."""

    def __init__(
        self,
        stats: SyncStats,
        stream: TextIO,
        *,
        label: str = "sync",
        interval: float = 0.25,
        force: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stats = stats
        self._stream = stream
        self._label = label
        self._interval = interval
        self._clock = clock
        self.enabled = force or stream.isatty()
        self._task: asyncio.Task[None] | None = None
        self._width = 0

    async def __aenter__(self) -> Self:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._redraw())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.draw()
            self._stream.write("\n")
            self._stream.flush()

    def draw(self) -> None:
        """Write the current line over the previous one."""
        line = render(self._stats, self._clock() - self._stats.started, label=self._label)
        # Pad over what a longer previous line left behind.
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width = len(line)

    async def _redraw(self) -> None:
        while True:
            self.draw()
            await asyncio.sleep(self._interval)
