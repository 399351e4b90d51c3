"""Replay: rebuild every read model from offset 0 into a fresh schema, then swap it in atomically.

The live schema keeps serving (and its projector keeps applying) while the replay consumes the whole
log into ``<schema>_next`` with the same :class:`~projector.store.Store`. Once a poll comes back
empty, the swap is tried in one transaction: lock the live schema's offsets rows (the live projector's
next batch waits on them), check the fresh schema has reached every live offset, and rename
``<schema>`` → ``<schema>_old_<time>`` and ``<schema>_next`` → ``<schema>``. If the live projector
is still ahead, the replay consumes more and tries again. After the swap the live projector goes on
in the new schema (its stored offsets are those of the replay; anything below them is skipped), so
nothing is applied twice or lost. The old schema stays for an operator to inspect or drop.

Before each swap attempt the fresh schema's top-tracks rankings are computed: they are not folded
from events, and the swapped-in schema must not serve empty rankings until the live projector's
timer comes round.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from projector.pipeline import CommitPipeline
from projector.prepare import LogMessage
from projector.ranking import refresh_top_tracks
from projector.store import Store
from runtime.logging import get_logger
from runtime.progress import LiveLine, bar, duration
from schemas.migrate import quote_schema

log = get_logger("projector.replay")


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay did."""

    schema: str
    old_schema: str | None
    events: int
    seconds: float


def render_progress(events: int, target: int, elapsed: float) -> str:
    """``replay [#####.....] events/target events · rate · ETA``: target is where the live projector
    stood when the replay started (the log grows meanwhile, so events may pass it)."""
    rate = events / elapsed if elapsed > 0 else 0.0
    parts = [f"replay {bar(events, target)} {events:,}/{target:,} events", f"{rate:,.0f} events/s"]
    left = target - events
    if left > 0 and rate > 0:
        parts.append(f"ETA {duration(left / rate)}")
    elif left <= 0:
        parts.append(f"caught up in {duration(elapsed)}")
    return " · ".join(parts)


async def _has_table(conn: asyncpg.Connection, schema: str, table: str) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{quote_schema(schema)}.{table}"))


async def _live_offsets(conn: asyncpg.Connection, schema: str, topic: str, *, lock: bool) -> dict[int, int]:
    if not await _has_table(conn, schema, "offsets"):
        return {}
    rows = await conn.fetch(
        f"SELECT partition, next_offset FROM {quote_schema(schema)}.offsets WHERE topic = $1"
        + (" ORDER BY partition FOR UPDATE" if lock else ""),
        topic,
    )
    return {r["partition"]: r["next_offset"] for r in rows}


async def carry_operator_state(pool: asyncpg.Pool, live: str, fresh: str) -> int:
    """Copy the live schema's local takedowns into ``fresh`` before it is folded.

    They are an operator's decisions, not events of the log, so a replay alone would drop them; set
    first, they are honoured by every count the replay computes. Returns how many were carried.
    """
    async with pool.acquire() as conn:
        if not await _has_table(conn, live, "artists"):
            return 0
        status = await conn.execute(
            f"INSERT INTO {quote_schema(fresh)}.artists (did, local_takedown)"
            f" SELECT did, true FROM {quote_schema(live)}.artists WHERE local_takedown"
            " ON CONFLICT (did) DO UPDATE SET local_takedown = true"
        )
    return int(status.rsplit(" ", 1)[-1])


@dataclass(frozen=True, slots=True)
class Swap:
    """The outcome of a swap attempt."""

    done: bool
    old_schema: str | None = None


async def try_swap(pool: asyncpg.Pool, live: str, fresh: str, topic: str) -> Swap:
    """Swap ``fresh`` in as ``live`` if it has caught up with every live offset."""
    old = f"{live}_old_{datetime.now(UTC):%Y%m%d%H%M%S}"
    async with pool.acquire() as conn, conn.transaction():
        live_offsets = await _live_offsets(conn, live, topic, lock=True)
        fresh_offsets = await _live_offsets(conn, fresh, topic, lock=False)
        behind = {p: o for p, o in live_offsets.items() if fresh_offsets.get(p, 0) < o}
        if behind:
            log.info("replay_not_caught_up", behind=behind)
            return Swap(False)
        live_exists = await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", live)
        if live_exists:
            await conn.execute(f"ALTER SCHEMA {quote_schema(live)} RENAME TO {quote_schema(old)}")
        await conn.execute(f"ALTER SCHEMA {quote_schema(fresh)} RENAME TO {quote_schema(live)}")
    return Swap(True, old if live_exists else None)


async def replay(
    pool: asyncpg.Pool,
    store: Store,
    *,
    bootstrap: str,
    topic: str,
    live: str,
    fresh: str,
    max_batch: int = 5000,
    lanes: int = 1,
    progress: TextIO | None = None,
) -> ReplayResult:
    """Consume the whole log into ``store`` (on schema ``fresh``) and swap it in as ``live``; with
    ``progress`` a terminal, a live progress line is drawn there."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    start = time.perf_counter()
    events = 0
    try:
        await consumer.topics()  # fetches metadata, so partitions_for_topic can answer
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        stored = await store.load_offsets([tp.partition for tp in tps])
        for tp in tps:
            consumer.seek(tp, stored.get(tp.partition, 0))
        async with pool.acquire() as conn:
            target = sum((await _live_offsets(conn, live, topic, lock=False)).values())
        last_report = time.perf_counter()
        line = None
        if progress is not None:
            line = LiveLine(lambda: render_progress(events, target, time.perf_counter() - start), progress)
        async with CommitPipeline(store, lanes) as pipeline, line or contextlib.nullcontext():
            while True:
                polled = await consumer.getmany(timeout_ms=1000, max_records=max_batch)
                batch = [LogMessage(tp.partition, m.offset, m.value or b"") for tp, ms in polled.items() for m in ms]
                if batch:
                    await pipeline.submit(batch)
                    events += len(batch)
                    now = time.perf_counter()
                    if now - last_report >= 2:
                        rate = events / (now - start)
                        eta = max(target - events, 0) / rate if rate else None
                        log.info(
                            "replay_progress", events=events, target=target, rate=round(rate), eta_s=eta and round(eta)
                        )
                        last_report = now
                    continue
                await pipeline.flush()
                await refresh_top_tracks(pool, fresh)
                swap = await try_swap(pool, live, fresh, topic)
                if swap.done:
                    seconds = time.perf_counter() - start
                    log.info(
                        "replay_swapped",
                        schema=live,
                        old_schema=swap.old_schema,
                        events=events,
                        seconds=round(seconds, 2),
                    )
                    return ReplayResult(live, swap.old_schema, events, seconds)
    finally:
        await consumer.stop()
