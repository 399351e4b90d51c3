"""Garbage-collector settings for the throughput-bound workers (the projector, a replay).

A batch of 5,000 events allocates a few hundred thousand short-lived objects (envelopes, rows,
parameter lists) and frees nearly all of them by reference counting when it commits. With CPython's
default first-generation threshold (700 allocations) the collector ran every few events and scanned
each survivor again in the older generations: about a quarter of the projector's Python time
(measured side by side on the projector benchmark: 137 → 105 µs of CPU per event). A large first
generation still collects the cycles a batch makes (asyncio tasks and exceptions hold some), long
before they could add up, and freezing what startup allocated (modules, lexicons, compiled checks)
keeps it out of every later scan.
"""

from __future__ import annotations

import gc

# Collections of the young generation per 50,000 net allocations (about ten events' worth of a batch).
_YOUNG = 50_000
_MIDDLE = 20
_OLD = 10


def tune_for_batches() -> None:
    """Call once at process start, after imports and before the main loop."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(_YOUNG, _MIDDLE, _OLD)
