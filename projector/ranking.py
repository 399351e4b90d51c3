"""Top tracks by distinct likers in rolling windows: the ``top_tracks`` snapshot (0003_api_reads.sql).

Per window ('day' 1 day, 'week' 7 days, 'month' 30 days) the ranking counts, per liked track, the
distinct likers whose like's sort time (the earlier of createdAt and indexedAt, as the
``likes_recent`` index has it) falls in the window, leaving out likers whose repo is hidden and tracks
that are not indexed or whose artist is hidden; it keeps the top 1,000, ranked 1.. by (likers DESC,
uri DESC). Each window is replaced whole in one transaction, so a reader sees one ranking, never a
mix. A transaction-scoped advisory lock per (schema, window) makes refreshes from several projectors
take turns instead of colliding on the (window, rank) key.

This recomputes from the likes rather than folding each like in: a window slides with the clock, so
likes leave it without any event. It opens its own transactions (outside the batch unit of work, whose
offsets it does not touch), on a timer in :mod:`projector.app` and once per replay before the swap.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
from prometheus_client import Counter, Histogram

from runtime.logging import get_logger
from schemas.migrate import quote_schema

log = get_logger("projector.ranking")

WINDOWS: dict[str, timedelta] = {"day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=30)}
TOP = 1000

# A liker or artist is hidden when upstream made the repo inactive or an operator took it down here.
_RANKING = """
INSERT INTO {s}.top_tracks (time_window, rank, uri, likers)
SELECT $1, row_number() OVER (ORDER BY ranked.likers DESC, ranked.uri DESC), ranked.uri, ranked.likers
FROM (
    SELECT recent.uri, recent.likers
    FROM (
        SELECT l.subject_uri AS uri, count(DISTINCT l.did) AS likers
        FROM {s}.likes l
        WHERE LEAST(l.created_at, l.indexed_at) >= now() - $2::interval
          AND NOT EXISTS (SELECT 1 FROM {s}.artists a WHERE a.did = l.did AND (NOT a.active OR a.local_takedown))
        GROUP BY l.subject_uri
    ) recent
    JOIN {s}.tracks t ON t.uri = recent.uri
    WHERE NOT EXISTS (SELECT 1 FROM {s}.artists a WHERE a.did = t.did AND (NOT a.active OR a.local_takedown))
    ORDER BY recent.likers DESC, recent.uri DESC
    LIMIT $3
) ranked
"""


def _lock_key(schema: str, window: str) -> int:
    digest = hashlib.blake2b(f"plyr-top-tracks:{schema}:{window}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def refresh_top_tracks(pool: asyncpg.Pool, schema: str) -> dict[str, int]:
    """Recompute every window's ranking in ``schema``; return the tracks ranked per window."""
    s = quote_schema(schema)
    ranked: dict[str, int] = {}
    for window, span in WINDOWS.items():
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(schema, window))
            await conn.execute(f"DELETE FROM {s}.top_tracks WHERE time_window = $1", window)
            status = await conn.execute(_RANKING.format(s=s), window, span, TOP)
        ranked[window] = int(status.rsplit(" ", 1)[1])  # "INSERT 0 <rows>"
    return ranked


async def refresh_periodically(
    refresh: Callable[[], Awaitable[dict[str, int]]],
    seconds: float,
    *,
    duration: Histogram,
    failures: Counter,
) -> None:
    """Call ``refresh`` now and every ``seconds`` until cancelled. A failure is logged and counted, and
    the next tick tries again: a stale ranking must never stop the projector."""
    while True:
        start = time.perf_counter()
        try:
            ranked = await refresh()
        except Exception as err:  # any failure waits for the next tick
            failures.inc()
            log.warning("top_tracks_refresh_failed", error=repr(err))
        else:
            elapsed = time.perf_counter() - start
            duration.observe(elapsed)
            log.debug("top_tracks_refreshed", ranked=ranked, seconds=round(elapsed, 3))
        await asyncio.sleep(seconds)
