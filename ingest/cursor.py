"""The durable per-upstream cursor (I/O): where to resume after a restart, and whether an upstream is
halted.

Only the acknowledged seq (:mod:`ingest.acks`) is ever saved, so a crash re-delivers and never skips.
Two implementations share the :class:`CursorStore` contract (tests/contract): Postgres for real runs,
memory for unit tests of the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import asyncpg

from schemas.migrate import quote_schema

INGEST_SCHEMA = "plyr_ingest"


@dataclass(frozen=True, slots=True)
class CursorState:
    """Where an upstream stands: its last acknowledged seq, and why it is halted (if it is)."""

    seq: int | None
    halted: str | None = None


class CursorStore(Protocol):
    """Loads and saves per-upstream cursors."""

    async def load(self, upstream: str) -> CursorState: ...

    async def save(self, upstream: str, seq: int) -> None: ...

    async def halt(self, upstream: str, reason: str) -> None: ...

    async def resume(self, upstream: str, *, live: bool) -> None: ...


class MemoryCursorStore:
    """Cursors in a dict: for tests and for file replays that need none."""

    def __init__(self) -> None:
        self.states: dict[str, CursorState] = {}

    async def load(self, upstream: str) -> CursorState:
        """The stored state (empty when never saved)."""
        return self.states.get(upstream, CursorState(None))

    async def save(self, upstream: str, seq: int) -> None:
        """Store the acknowledged seq."""
        self.states[upstream] = CursorState(seq, self.states.get(upstream, CursorState(None)).halted)

    async def halt(self, upstream: str, reason: str) -> None:
        """Mark the upstream halted."""
        self.states[upstream] = CursorState(self.states.get(upstream, CursorState(None)).seq, reason)

    async def resume(self, upstream: str, *, live: bool) -> None:
        """Clear the halt; with ``live`` also forget the cursor (start from the upstream's head)."""
        old = self.states.get(upstream, CursorState(None))
        self.states[upstream] = CursorState(None if live else old.seq, None)


class PostgresCursorStore:
    """Cursors in ``plyr_ingest.cursors`` (migration set ``ingest``)."""

    def __init__(self, pool: asyncpg.Pool, schema: str = INGEST_SCHEMA) -> None:
        self._pool = pool
        self._table = f"{quote_schema(schema)}.cursors"

    async def load(self, upstream: str) -> CursorState:
        """The stored state (empty when never saved)."""
        row = await self._pool.fetchrow(f"SELECT seq, halted FROM {self._table} WHERE upstream = $1", upstream)
        return CursorState(None) if row is None else CursorState(row["seq"], row["halted"])

    async def save(self, upstream: str, seq: int) -> None:
        """Store the acknowledged seq."""
        await self._pool.execute(
            f"INSERT INTO {self._table} (upstream, seq) VALUES ($1, $2) "
            "ON CONFLICT (upstream) DO UPDATE SET seq = EXCLUDED.seq, updated_at = now()",
            upstream,
            seq,
        )

    async def halt(self, upstream: str, reason: str) -> None:
        """Mark the upstream halted."""
        await self._pool.execute(
            f"INSERT INTO {self._table} (upstream, halted) VALUES ($1, $2) "
            "ON CONFLICT (upstream) DO UPDATE SET halted = EXCLUDED.halted, updated_at = now()",
            upstream,
            reason,
        )

    async def resume(self, upstream: str, *, live: bool) -> None:
        """Clear the halt; with ``live`` also forget the cursor."""
        await self._pool.execute(
            f"UPDATE {self._table} SET halted = NULL, updated_at = now(),"
            " seq = CASE WHEN $2 THEN NULL ELSE seq END WHERE upstream = $1",
            upstream,
            live,
        )
