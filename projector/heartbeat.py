"""How far behind the log this projector is, written for readiness checks (``projector_heartbeats``).

Lag is 0 after a poll that came back empty (caught up), otherwise the age of the newest event applied.
Written at most once per ``interval`` seconds, outside the batch transactions; a failed write is
logged and never stops the projector.
"""

from __future__ import annotations

import time
import uuid

import asyncpg

from runtime.logging import get_logger
from schemas.migrate import quote_schema

log = get_logger("projector.heartbeat")


class Heartbeat:
    """One projector process's row in ``projector_heartbeats``."""

    def __init__(self, pool: asyncpg.Pool, schema: str, group_id: str, interval: float = 1.0) -> None:
        self._pool = pool
        self._schema = quote_schema(schema)
        self._group = group_id
        self._member = f"{group_id}/{uuid.uuid4().hex[:12]}"
        self._interval = interval
        self._last = 0.0

    async def beat(self, lag_seconds: float) -> None:
        """Record ``lag_seconds`` if the last write is older than the interval."""
        now = time.monotonic()
        if now - self._last < self._interval:
            return
        self._last = now
        try:
            await self._pool.execute(
                f"INSERT INTO {self._schema}.projector_heartbeats (member, group_id, lag_seconds) VALUES ($1, $2, $3)"
                " ON CONFLICT (member) DO UPDATE SET lag_seconds = EXCLUDED.lag_seconds, beat_at = now()",
                self._member,
                self._group,
                max(lag_seconds, 0.0),
            )
        except (OSError, asyncpg.PostgresError) as err:
            log.warning("heartbeat_failed", error=str(err))

    async def leave(self) -> None:
        """Remove this member's row (a clean stop)."""
        try:
            await self._pool.execute(f"DELETE FROM {self._schema}.projector_heartbeats WHERE member = $1", self._member)
        except (OSError, asyncpg.PostgresError) as err:
            log.warning("heartbeat_leave_failed", error=str(err))
