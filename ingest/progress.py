"""The progress line of ``plyr-index backfill/resync --run``: :func:`render` is pure (stats and elapsed
seconds → the line); :func:`progress_bar` draws it with :class:`runtime.progress.LiveLine`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from ingest.backfill import SyncStats
from runtime.progress import LiveLine, bar, duration


def render(stats: SyncStats, elapsed: float, *, label: str = "sync") -> str:
    """``label [#####.....] done/total repos · records · failing · rate · ETA``."""
    total = max(stats.total, stats.done)
    rate = stats.done / elapsed if elapsed > 0 else 0.0
    parts = [f"{label} {bar(stats.done, total)} {stats.done}/{total} repos", f"{stats.records:,} records"]
    if stats.failing:
        parts.append(f"{stats.failing} failing")
    parts.append(f"{rate * 60:.1f} repos/min")
    left = total - stats.done
    if left and rate > 0:
        parts.append(f"ETA {duration(left / rate)}")
    elif not left:
        parts.append(f"in {duration(elapsed)}")
    return " · ".join(parts)


def progress_bar(
    stats: SyncStats,
    stream: TextIO,
    *,
    label: str = "sync",
    interval: float = 0.25,
    force: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> LiveLine:
    """:func:`render` of ``stats``, redrawn while open on a terminal (or with ``force``)."""
    return LiveLine(lambda: render(stats, clock() - stats.started, label=label), stream, interval=interval, force=force)
