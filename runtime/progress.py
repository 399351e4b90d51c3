"""A one-line progress display for long work on a terminal (backfill, resync, replay).

:class:`LiveLine` redraws a line, built by a callable, in place a few times a second while open, and
only when the stream is a terminal: logs and pipes get the structured log lines instead, never
carriage returns. The parts own what the line says (pure renderers, tested on values); this owns
drawing it. :func:`bar` and :func:`duration` are the pieces every renderer shares.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Self, TextIO

_WIDTH = 24


def bar(done: int, total: int) -> str:
    """``[#####.....]`` for done of total (full when there is nothing to do)."""
    filled = _WIDTH if total <= 0 else round(_WIDTH * min(done, total) / total)
    return "[" + "#" * filled + "." * (_WIDTH - filled) + "]"


def duration(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class LiveLine:
    """Redraws ``line()`` on ``stream`` every ``interval`` seconds while open, if the stream is a
    terminal (or ``force``); the last line stays when it closes."""

    def __init__(self, line: Callable[[], str], stream: TextIO, *, interval: float = 0.25, force: bool = False):
        self._line = line
        self._stream = stream
        self._interval = interval
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
        line = self._line()
        # Pad over what a longer previous line left behind.
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width = len(line)

    async def _redraw(self) -> None:
        while True:
            self.draw()
            await asyncio.sleep(self._interval)
