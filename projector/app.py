"""Composition root of the projector: pool, migrations, store, consumer, metrics; the batch loop, and
beside it the timer that recomputes the top-tracks rankings.

Each poll's batch goes to :meth:`projector.store.Store.apply` as one transaction with its offsets; a
crash anywhere leaves the read models as if every event before the stored offsets was applied once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TextIO

import asyncpg
from prometheus_client import CollectorRegistry

from projector.consumer import LogConsumer
from projector.heartbeat import Heartbeat
from projector.metrics import COLLECTIONS, ProjectorMetrics
from projector.pipeline import CommitPipeline
from projector.prepare import Validator
from projector.ranking import refresh_periodically, refresh_top_tracks
from projector.rebuild import ReplayResult, carry_operator_state, replay
from projector.settings import ProjectorSettings
from projector.store import BatchResult, Store
from projector.validate import RecordValidator
from runtime.logging import get_logger
from runtime.metrics import MetricsServer
from runtime.settings import PlatformSettings
from schemas.migrate import migrate, quote_schema

log = get_logger("projector")


def _observe(metrics: ProjectorMetrics, result: BatchResult, size: int, seconds: float) -> None:
    metrics.batch_size.observe(size)
    metrics.batch_seconds.observe(seconds)
    metrics.stale.inc(result.stale)
    metrics.dead_letters.inc(result.dead_letters)
    metrics.changes.inc(result.changes)
    for collection, n in result.by_collection.items():
        metrics.applied.labels(collection if collection in COLLECTIONS else "other").inc(n)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def open_store(pool: asyncpg.Pool, schema: str, topic: str, validator: Validator | None = None) -> Store:
    """Migrate the read models into ``schema`` and return a store on them."""
    async with pool.acquire() as conn:
        await migrate(conn, "read", schema)
    return Store(pool, schema, validator or RecordValidator(), topic)


# A projector must fail rather than wait forever: a batch blocked on a row lock held by a session that
# will never finish (its process killed mid-transaction, a server restarting), or a session left idle
# in a transaction, ends in an error, and the process is started again from the offsets stored with the
# rows. The bounds are far above a batch's normal time (well under a second).
_LIVENESS = {"lock_timeout": "60000", "idle_in_transaction_session_timeout": "60000"}


async def rebuild(
    platform: PlatformSettings, settings: ProjectorSettings, *, progress: TextIO | None = None
) -> ReplayResult:
    """Replay the whole log into ``<schema>_next`` and swap it in as ``<schema>`` (a progress line on
    ``progress`` when it is a terminal)."""
    fresh = f"{settings.schema_name}_next"[:63]
    async with asyncpg.create_pool(platform.database_url, min_size=1, max_size=settings.commit_lanes + 2) as pool:
        await pool.execute(f"DROP SCHEMA IF EXISTS {quote_schema(fresh)} CASCADE")  # a replay that died midway
        store = await open_store(pool, fresh, platform.events_topic)
        carried = await carry_operator_state(pool, settings.schema_name, fresh)
        log.info("replay_start", schema=fresh, local_takedowns=carried)
        return await replay(
            pool,
            store,
            bootstrap=platform.kafka_bootstrap,
            topic=platform.events_topic,
            live=settings.schema_name,
            fresh=fresh,
            max_batch=settings.max_batch,
            lanes=settings.commit_lanes,
            progress=progress,
        )


async def run(
    platform: PlatformSettings, settings: ProjectorSettings, *, registry: CollectorRegistry | None = None
) -> int:
    """Consume and apply until cancelled."""
    registry = registry or CollectorRegistry()
    metrics = ProjectorMetrics(registry)
    async with contextlib.AsyncExitStack() as stack:
        if settings.metrics_port:
            await stack.enter_async_context(MetricsServer(registry, settings.metrics_host, settings.metrics_port))
        pool = await stack.enter_async_context(
            asyncpg.create_pool(
                platform.database_url,
                min_size=1,
                max_size=settings.commit_lanes + 2,
                server_settings=_LIVENESS,
            )
        )
        store = await open_store(pool, settings.schema_name, platform.events_topic)
        refresher = asyncio.create_task(
            refresh_periodically(
                lambda: refresh_top_tracks(pool, settings.schema_name),
                settings.top_refresh_seconds,
                duration=metrics.top_refresh_seconds,
                failures=metrics.top_refresh_failures,
            ),
            name="top-tracks-refresh",
        )
        stack.push_async_callback(_stop, refresher)
        consumer = await stack.enter_async_context(
            LogConsumer(
                platform.kafka_bootstrap,
                platform.events_topic,
                settings.group_id,
                store.load_offsets,
                session_timeout_ms=settings.session_timeout_ms,
                heartbeat_interval_ms=settings.heartbeat_interval_ms,
            )
        )
        log.info("projector_start", topic=platform.events_topic, schema=settings.schema_name, group=settings.group_id)
        heartbeat = Heartbeat(pool, settings.schema_name, settings.group_id)
        stack.push_async_callback(heartbeat.leave)
        pipeline = await stack.enter_async_context(CommitPipeline(store, settings.commit_lanes))
        async for batch in consumer.batches(max_records=settings.max_batch, timeout_ms=settings.poll_timeout_ms):
            start = time.perf_counter()
            finished = await (pipeline.submit(batch) if batch else pipeline.flush())
            if not batch and not finished:
                await heartbeat.beat(0.0)  # an empty poll with nothing in flight: caught up
            for result, committed in finished:
                _observe(metrics, result, len(committed), time.perf_counter() - start)
                positions = {m.partition: m.offset + 1 for m in committed}
                for partition, next_offset in positions.items():
                    metrics.position.labels(str(partition)).set(next_offset)
                for partition, behind in consumer.lag(positions).items():
                    metrics.lag_messages.labels(str(partition)).set(behind)
                if result.newest is not None:
                    behind_s = max(time.time() - result.newest.timestamp(), 0)
                    metrics.lag_seconds.set(behind_s)
                    await heartbeat.beat(behind_s)
    return 0
