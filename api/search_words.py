"""The search vocabulary (``search_words``, migration 0014): every distinct normalized word of titles,
handles and list names, each keyed under its one-character deletions, which fuzzy search corrects a
query's words against.

The API keeps it, not the projector, so it costs no write per event: a rebuild recomputes the whole
set from the read models in one statement and writes only the difference. It runs at startup and then
every ``API_SEARCH_WORDS_REFRESH_SECONDS``, on a connection of its own (never one of the request pool's,
which a long rebuild or a locked table would hold), under a transaction-scoped advisory lock, and only
when no replica rebuilt it within the interval. A word missing from it (a title indexed since the last
rebuild) still matches as it is typed; only its misspellings are not corrected until the next rebuild.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self

import asyncpg

from api import spelling
from api.backpressure import UNAVAILABLE_ERRORS
from runtime.logging import get_logger
from schemas.migrate import quote_schema

log = get_logger("api.search_words")

# Words longer than this are not worth correcting (and each costs a key per character).
_MAX_WORD = 64
# Shorter words are kept under themselves only, as api/spelling.py keys a query word.
_KEYED_FROM = spelling.KEYED_FROM
# Where words split: white space and punctuation, apostrophes aside ("don't" is one word). The search
# handler splits queries the same way (api/queries/search.py, _SEPARATORS).
SEPARATORS = "[[:space:].,;:!?()/_-]+"
_WORDS = f"regexp_split_to_table(search_norm({{0}}), '{SEPARATORS}')"
_REBUILD = f"""
WITH fresh AS MATERIALIZED (
    SELECT DISTINCT word FROM (
        SELECT {_WORDS.format("title")} FROM tracks WHERE title IS NOT NULL
        UNION ALL SELECT {_WORDS.format("name")} FROM lists WHERE name IS NOT NULL
        UNION ALL SELECT {_WORDS.format("handle")} FROM artists WHERE handle IS NOT NULL
    ) w (word)
    WHERE word <> '' AND length(word) <= {_MAX_WORD}
),
gone AS (
    DELETE FROM search_words s WHERE NOT EXISTS (SELECT FROM fresh f WHERE f.word = s.word) RETURNING word
),
added AS (
    INSERT INTO search_words (word) SELECT word FROM fresh ON CONFLICT DO NOTHING RETURNING word
),
gone_keys AS (
    DELETE FROM search_word_keys k USING gone g WHERE k.word = g.word
),
added_keys AS (
    INSERT INTO search_word_keys (key, word)
    SELECT a.word, a.word FROM added a
    UNION
    SELECT overlay(a.word PLACING '' FROM i FOR 1), a.word
    FROM added a, generate_series(1, length(a.word)) i WHERE length(a.word) >= {_KEYED_FROM}
)
SELECT (SELECT count(*) FROM fresh) AS words, (SELECT count(*) FROM gone) AS removed,
       (SELECT count(*) FROM added) AS added
"""
_STAMP = "INSERT INTO search_words_refreshed (at) VALUES (now()) ON CONFLICT (one) DO UPDATE SET at = excluded.at"


async def rebuild(conn: asyncpg.Connection, schema: str, *, unless_newer_than: float | None = None) -> bool:
    """Recompute ``schema``'s vocabulary from its read models (skipped, False, when another session is
    rebuilding it or it was rebuilt less than ``unless_newer_than`` seconds ago)."""
    quoted = quote_schema(schema)
    async with conn.transaction():
        # A rebuild reads every title: the request pool's statement timeout is not for it.
        await conn.execute(f"SET LOCAL search_path = {quoted}, public; SET LOCAL statement_timeout = 0")
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))", f"plyr-search-words:{schema}"):
            return False
        if unless_newer_than is not None:
            age = await conn.fetchval("SELECT extract(epoch FROM now() - at)::float8 FROM search_words_refreshed")
            if age is not None and age < unless_newer_than:
                return False
        start = time.perf_counter()
        counts = await conn.fetchrow(_REBUILD)
        await conn.execute(_STAMP)
    assert counts is not None  # an aggregate row always comes back
    log.info(
        "search_words_rebuilt",
        words=counts["words"],
        added=counts["added"],
        removed=counts["removed"],
        seconds=round(time.perf_counter() - start, 3),
    )
    return True


class SearchWords:
    """Keeps the vocabulary of ``schema`` rebuilt every ``interval`` seconds while entered.

    Entering starts the refresh task and waits up to ``startup_wait`` seconds for its first pass, so a
    freshly started API corrects words at once; leaving cancels it.
    """

    def __init__(self, database_url: str, schema: str, interval: float, startup_wait: float) -> None:
        self._url, self._schema = database_url, schema
        self._interval, self._startup_wait = interval, startup_wait
        self._first = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError("SearchWords is already running")
        self._task = asyncio.create_task(self._run(), name="search-words")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first.wait(), self._startup_wait)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        # Wake often enough to notice a vocabulary that is missing (a replay swapped in a new schema),
        # but rebuild only when none was made within the interval.
        tick = min(self._interval, 60.0)
        while True:
            try:
                async with self._connection() as conn:
                    await rebuild(conn, self._schema, unless_newer_than=self._interval)
            except (*UNAVAILABLE_ERRORS, asyncpg.PostgresError) as err:
                # Fuzzy search works from the last vocabulary meanwhile; the next tick tries again.
                log.warning("search_words_rebuild_failed", error=type(err).__name__)
            self._first.set()
            await asyncio.sleep(tick)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        conn = await asyncpg.connect(self._url, timeout=10)
        try:
            yield conn
        finally:
            await conn.close()
