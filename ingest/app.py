"""Composition root of the ingester: builds the sink, cursor store, metrics and upstream workers from
settings and runs them under one TaskGroup.

Flow per frame: ``pipeline.process_frame`` (pure) → dedupe across upstreams → ``sink.send`` → the
frame's delivery futures go to the upstream's :class:`~ingest.acks.AckTracker`. ``#identity`` events
take a detour through :class:`~ingest.identity_events.IdentityEvents` (resolved and verified in the
background; their future completes on delivery, so the cursor waits for them too). A flusher task saves
each tracker's acknowledged seq every ``cursor_flush_interval_s``; on shutdown the sink is flushed
and the final acknowledged seqs saved. A broker failure restarts the whole pipeline from the durable
cursors (deliveries in flight are redone; duplicates are allowed, gaps are not).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import asyncpg
import structlog
from prometheus_client import CollectorRegistry

from ingest.acks import AckTracker
from ingest.backfill import SyncLimits, SyncWorker, sync_lock
from ingest.capture import CaptureWriter, read_frames
from ingest.cursor import INGEST_SCHEMA, CursorStore, MemoryCursorStore, PostgresCursorStore
from ingest.dedupe import Deduper
from ingest.errors import (
    BrokerError,
    DropReason,
    FrameTooLargeError,
    FutureCursorError,
    UpstreamError,
    UpstreamHaltedError,
)
from ingest.firehose import subscribe
from ingest.gate import Gate, Verdict
from ingest.identity import AtprotoIdentityResolver, IdentityResolver, dns_resolver
from ingest.identity_events import IdentityEvents
from ingest.metrics import IngestMetrics, collection_label
from ingest.pipeline import FrameOutcome, process_frame
from ingest.producer import EventSink, JsonlSink, KafkaSink, ensure_topic
from ingest.repo_client import RepoClient
from ingest.repo_state import PostgresRepoStateStore, RepoStatus
from ingest.settings import IngestSettings
from runtime.backoff import Backoff
from runtime.logging import get_logger
from runtime.metrics import MetricsServer
from runtime.outbound import Outbound
from runtime.settings import PlatformSettings
from schemas.envelope import Event, IdentityEvent, RecordEvent
from schemas.ids import CollectionFilter
from schemas.migrate import migrate

log = get_logger("ingest")

SubscribeFn = Callable[[str, int | None], AsyncIterator[bytes]]


def _dedupe_key(event: Event) -> tuple[object, ...]:
    return (
        event.kind,
        event.did,
        event.time,
        getattr(event, "handle", None),
        getattr(event, "status", None),
        getattr(event, "active", None),
        getattr(event, "rev", None),
    )


class Ingester:
    """Per-frame handling shared by every upstream: filter, dedupe, send, count."""

    def __init__(
        self,
        sink: EventSink,
        collections: CollectionFilter,
        metrics: IngestMetrics,
        deduper: Deduper,
        identities: IdentityEvents | None = None,
        gate: Gate | None = None,
    ) -> None:
        self._sink = sink
        self._collections = collections
        self._metrics = metrics
        self._deduper = deduper
        # None: identity events go out as the frame gave them (unverified), like any other event.
        self._identities = identities
        # None: commits go on the log unverified (a trusted upstream, a capture file).
        self._gate = gate
        self._tracked = gate.tracked if gate is not None else None

    async def drain(self) -> None:
        """Wait until every identity event still resolving has been sent and delivered."""
        if self._identities is not None:
            await self._identities.drain()

    async def handle(self, upstream: str, data: bytes, tracker: AckTracker | None) -> FrameOutcome:
        """Process one frame from ``upstream`` and register its deliveries with ``tracker``."""
        m = self._metrics
        outcome = process_frame(data, upstream=upstream, collections=self._collections, tracked=self._tracked)
        m.frames.labels(upstream, outcome.kind).inc()
        for drop in outcome.drops:
            m.drops.labels(upstream, drop.reason).inc()
            log.warning(
                "frame_dropped",
                upstream=upstream,
                seq=outcome.seq,
                reason=drop.reason.value,
                detail=drop.detail[:300],
                did=drop.did,
                path=drop.path,
            )
        futures = await self._admit(upstream, outcome)
        if outcome.seq is not None:
            m.cursor.labels(upstream).set(outcome.seq)
            if tracker is not None:
                tracker.add(outcome.seq, futures)
        if outcome.time is not None:
            with contextlib.suppress(ValueError):
                lag = time.time() - datetime.fromisoformat(outcome.time).timestamp()
                m.lag_seconds.labels(upstream).set(lag)
        return outcome

    async def _admit(self, upstream: str, outcome: FrameOutcome) -> list[asyncio.Future[object]]:
        """Send the frame's events if the gate lets them through; the futures the cursor waits for."""
        if self._gate is None or outcome.message is None:
            return await self._send(upstream, outcome)
        verdict, held = await self._gate.admit(upstream, outcome)
        if verdict is not Verdict.UNTRACKED:
            self._metrics.verdicts.labels(verdict.value).inc()
        if held is not None:
            return [held.done]
        if verdict is Verdict.PASS:
            futures = await self._send(upstream, outcome)
            self._gate.delivered(outcome, futures)
            return futures
        if verdict is Verdict.UNTRACKED:
            return await self._send(upstream, outcome)
        return []  # skipped (already on the log) or failed verification (the repo is resynced)

    async def release(self, status: RepoStatus) -> None:
        """A repo's backfill or resync landed (its events acknowledged): admit its held frames again,
        in order; each held future completes when its frame is settled."""
        if self._gate is None:
            return
        for held in self._gate.synced(status):
            futures = await self._admit(held.upstream, held.outcome)
            _complete_after(held.done, futures)

    async def flush_repos(self) -> bool:
        """Write back repo states whose events were acknowledged, and queued requests; whether any
        backfill or resync was queued."""
        if self._gate is None:
            return False
        return await self._gate.flush() > 0

    async def _send(self, upstream: str, outcome: FrameOutcome) -> list[asyncio.Future[object]]:
        if not outcome.events:
            return []
        dedupe = self._deduper
        if outcome.did is not None and outcome.rev is not None:
            earlier = dedupe.seen_commit(outcome.did, outcome.rev)
            if earlier is not None:
                self._metrics.duplicates.labels(upstream).inc(len(outcome.events))
                return list(earlier)
        futures: list[asyncio.Future[object]] = []
        for event in outcome.events:
            key = None
            if not isinstance(event, RecordEvent):
                key = _dedupe_key(event)
                earlier = dedupe.seen_other(key)
                if earlier is not None:
                    self._metrics.duplicates.labels(upstream).inc()
                    futures.extend(earlier)
                    continue
            if isinstance(event, IdentityEvent) and self._identities is not None:
                own = await self._identities.submit(event, self._sink.send)
            else:
                fut = await self._sink.send(event)
                own = [fut] if fut is not None else []
            futures.extend(own)
            if key is not None:
                dedupe.record_other(key, own)
            collection = event.collection if isinstance(event, RecordEvent) else ""
            self._metrics.events.labels(upstream, event.kind, collection_label(collection)).inc()
        if outcome.did is not None and outcome.rev is not None:
            dedupe.record_commit(outcome.did, outcome.rev, futures)
        return futures


def _complete_after(done: asyncio.Future[object], futures: list[asyncio.Future[object]]) -> None:
    """Complete ``done`` like ``futures`` together (an error passes on; none: at once)."""
    if not futures:
        done.set_result(None)
        return
    gathered = asyncio.gather(*futures)

    def settle(g: asyncio.Future[list[object]]) -> None:
        if done.done():
            return
        if g.cancelled():
            done.cancel()
        elif (err := g.exception()) is not None:
            done.set_exception(err)
        else:
            done.set_result(None)

    gathered.add_done_callback(settle)


class UpstreamWorker:
    """Follows one upstream: subscribe from the cursor, hand frames to the ingester, reconnect."""

    def __init__(
        self,
        upstream: str,
        ingester: Ingester,
        store: CursorStore,
        metrics: IngestMetrics,
        subscribe_fn: SubscribeFn,
        max_inflight: int,
    ) -> None:
        self.upstream = upstream
        self._ingester = ingester
        self._store = store
        self._metrics = metrics
        self._subscribe = subscribe_fn
        self._max_inflight = max_inflight
        self.tracker = AckTracker()
        self.saved: int | None = None

    async def run(self) -> None:
        """Follow the upstream until cancelled or halted (FutureCursor)."""
        log_ = log.bind(upstream=self.upstream)
        state = await self._store.load(self.upstream)
        if state.halted:
            self._metrics.halted.labels(self.upstream).set(1)
            raise UpstreamHaltedError(
                f"{self.upstream} is halted ({state.halted}); resume with"
                f" `plyr-index ingest --resume-upstream {self.upstream}`"
            )
        self.tracker = AckTracker(state.seq)
        self.saved = state.seq
        cursor = state.seq
        backoff = Backoff()
        log_.info("upstream_start", cursor=cursor)
        while True:
            try:
                async for data in self._subscribe(self.upstream, cursor):
                    outcome = await self._ingester.handle(self.upstream, data, self.tracker)
                    backoff.healthy()
                    if outcome.seq is not None:
                        cursor = outcome.seq
                    if outcome.info is not None:
                        self._on_info(outcome, log_)
                    if outcome.error is not None:
                        await self._on_error(outcome, log_)
                    if len(self.tracker) > self._max_inflight:
                        await self.tracker.wait_oldest()
                raise UpstreamError("stream ended")
            except UpstreamError as err:
                if isinstance(err, FrameTooLargeError):
                    self._metrics.drops.labels(self.upstream, DropReason.FRAME_TOO_LARGE).inc()
                    log_.warning("frame_dropped", reason=DropReason.FRAME_TOO_LARGE.value, cursor=cursor)
                    if cursor is not None:
                        # From the same cursor the upstream would send it again. Its seq is above the
                        # cursor and nothing came between: one seq further skips only that frame.
                        cursor += 1
                self._metrics.reconnects.labels(self.upstream).inc()
                delay = backoff.next_delay()
                log_.warning("upstream_reconnect", error=str(err), cursor=cursor, delay_s=round(delay, 2))
                await asyncio.sleep(delay)

    def _on_info(self, outcome: FrameOutcome, log_: structlog.stdlib.BoundLogger) -> None:
        info = outcome.info
        assert info is not None
        if info.name == "OutdatedCursor":
            # The upstream no longer has events after our cursor; it goes on from its oldest.
            # Those events are lost from this upstream: count it so an operator can backfill.
            self._metrics.cursor_gaps.labels(self.upstream).inc()
            log_.warning("cursor_outdated", message=info.message, cursor=self.tracker.acked)
        else:
            log_.info("upstream_info", name=info.name, message=info.message)

    async def _on_error(self, outcome: FrameOutcome, log_: structlog.stdlib.BoundLogger) -> None:
        error = outcome.error
        assert error is not None
        self._metrics.error_frames.labels(self.upstream, error.error[:64]).inc()
        if error.error == "FutureCursor":
            reason = f"FutureCursor: {error.message or 'cursor is ahead of the upstream'}"
            await self._store.halt(self.upstream, reason)
            self._metrics.halted.labels(self.upstream).set(1)
            log_.error("upstream_halted", reason=reason, cursor=self.tracker.acked)
            raise FutureCursorError(f"{self.upstream}: {reason}")
        raise UpstreamError(f"error frame {error.error}: {error.message}")

    async def save_cursor(self) -> None:
        """Store the acknowledged seq if it moved."""
        acked = self.tracker.poll()
        if acked is not None and acked != self.saved:
            await self._store.save(self.upstream, acked)
            self.saved = acked
            self._metrics.acked_cursor.labels(self.upstream).set(acked)


async def _run_workers(
    workers: list[UpstreamWorker],
    ingester: Ingester,
    flush_interval: float,
    on_requests: Callable[[], None] | None = None,
) -> None:
    async def supervise(worker: UpstreamWorker) -> None:
        try:
            await worker.run()
        except (FutureCursorError, UpstreamHaltedError) as err:
            log.error("upstream_stopped", upstream=worker.upstream, error=str(err))

    async def flusher() -> None:
        while True:
            await asyncio.sleep(flush_interval)
            for worker in workers:
                await worker.save_cursor()
            if await ingester.flush_repos() and on_requests is not None:
                on_requests()  # a backfill or resync was just queued: no need to wait for the next poll

    flush_task = asyncio.create_task(flusher())
    try:
        async with asyncio.TaskGroup() as group:
            for worker in workers:
                group.create_task(supervise(worker))
    finally:
        flush_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flush_task


async def replay_file(path: Path, ingester: Ingester, sink: EventSink) -> int:
    """Feed every frame of a capture file through the ingester; return the frame count."""
    upstream = f"file:{path.name}"
    count = 0
    for data in read_frames(path):
        await ingester.handle(upstream, data, None)
        count += 1
        if count % 1000 == 0:
            await asyncio.sleep(0)  # let the producer's I/O run on long files
    await ingester.drain()
    await sink.flush()
    return count


def _default_subscribe(settings: IngestSettings) -> SubscribeFn:
    def fn(upstream: str, cursor: int | None) -> AsyncIterator[bytes]:
        return subscribe(
            upstream, cursor, stall_timeout=settings.stall_timeout_s, max_frame_bytes=settings.max_frame_bytes
        )

    return fn


async def open_cursor_store(pool: asyncpg.Pool) -> PostgresCursorStore:
    """Migrate the ingest state schema and return the store on it."""
    async with pool.acquire() as conn:
        await migrate(conn, "ingest", INGEST_SCHEMA)
    return PostgresCursorStore(pool)


async def resume_upstreams(platform: PlatformSettings, upstreams: Iterable[str], *, live: bool) -> None:
    """Clear the halt of upstreams (an operator's decision after a FutureCursor)."""
    pool = await asyncpg.create_pool(platform.database_url, min_size=1, max_size=2)
    try:
        store = await open_cursor_store(pool)
        for upstream in upstreams:
            await store.resume(upstream, live=live)
            log.info("upstream_resumed", upstream=upstream, live=live)
    finally:
        await pool.close()


async def _serve_upstreams(
    settings: IngestSettings,
    ingester: Ingester,
    store: CursorStore,
    metrics: IngestMetrics,
    subscribe_fn: SubscribeFn,
    *,
    on_requests: Callable[[], None] | None = None,
) -> None:
    workers = [
        UpstreamWorker(u, ingester, store, metrics, subscribe_fn, settings.max_inflight_frames)
        for u in settings.upstreams
    ]
    try:
        await _run_workers(workers, ingester, settings.cursor_flush_interval_s, on_requests)
    finally:
        # Whatever ended the run (cancel, halt), store what the broker acknowledged.
        with contextlib.suppress(BrokerError):
            await asyncio.shield(_final_save(workers, ingester))


async def _final_save(workers: list[UpstreamWorker], ingester: Ingester) -> None:
    for worker in workers:
        await worker.tracker.drain()
        await worker.save_cursor()
    await ingester.flush_repos()


async def run(
    platform: PlatformSettings,
    settings: IngestSettings,
    *,
    out: BinaryIO,
    registry: CollectorRegistry | None = None,
    subscribe_fn: SubscribeFn | None = None,
) -> int:
    """Run the ingester as configured; return the process exit code."""
    registry = registry or CollectorRegistry()
    metrics = IngestMetrics(registry)
    subscribe_fn = subscribe_fn or _default_subscribe(settings)
    async with contextlib.AsyncExitStack() as stack:
        if settings.metrics_port:
            server = await stack.enter_async_context(
                MetricsServer(registry, settings.metrics_host, settings.metrics_port)
            )
            log.info("metrics_listening", port=server.port)
        resolver = await _open_resolver(stack, settings)

        def identities() -> IdentityEvents:
            return IdentityEvents(
                resolver,
                metrics,
                concurrency=settings.identity_concurrency,
                max_pending=settings.identity_max_pending,
                deadline=settings.identity_deadline_s,
            )

        if settings.to == "jsonl":
            sink: EventSink = JsonlSink(out)
            async with identities() as pending:
                ingester = Ingester(sink, settings.collection_filter, metrics, Deduper(), pending)
                if settings.from_file is not None:
                    frames = await replay_file(settings.from_file, ingester, sink)
                    log.info("file_done", frames=frames)
                    return 0
                await _serve_upstreams(settings, ingester, MemoryCursorStore(), metrics, subscribe_fn)
                return 1
        await ensure_topic(
            platform.kafka_bootstrap,
            platform.events_topic,
            platform.topic_partitions,
            platform.topic_replication_factor,
        )
        if settings.from_file is not None:
            async with _kafka_sink(platform) as kafka, identities() as pending:
                ingester = Ingester(kafka, settings.collection_filter, metrics, Deduper(), pending)
                frames = await replay_file(settings.from_file, ingester, kafka)
            log.info("file_done", frames=frames)
            return 0
        # One more connection than the parts use at once: the sync worker's queue lock holds one.
        pool = await stack.enter_async_context(asyncpg.create_pool(platform.database_url, min_size=1, max_size=6))
        store = await open_cursor_store(pool)
        # Backfills and resyncs fetch from PDSes (untrusted hosts) on a session of their own.
        outbound = await stack.enter_async_context(Outbound(allow_private=settings.allow_private_hosts))
        backoff = Backoff(base=1.0, cap=30.0)
        while True:
            try:
                # Identity jobs send through the sink: they end (or are cancelled) before it closes.
                async with _kafka_sink(platform) as kafka, identities() as pending:
                    # A fresh deduper and gate per pipeline start: deliveries they remember died with
                    # the old producer and must be redone (the gate reloads what was acknowledged).
                    gate = await _open_gate(settings, pool, resolver, metrics)
                    ingester = Ingester(kafka, settings.collection_filter, metrics, Deduper(), pending, gate)
                    if resolver is None:
                        log.warning("repo_sync_off", reason="identity resolution is off: no PDS to fetch from")
                        await _serve_upstreams(settings, ingester, store, metrics, subscribe_fn)
                    else:
                        worker = SyncWorker(
                            PostgresRepoStateStore(pool),
                            resolver,
                            RepoClient(outbound),
                            kafka,
                            collections=settings.collection_filter,
                            metrics=metrics,
                            limits=SyncLimits.from_settings(settings),
                            allow_private=settings.allow_private_hosts,
                            verify=settings.verify_commits,
                            on_synced=ingester.release,
                        )
                        await _serve_with_sync(settings, ingester, store, metrics, subscribe_fn, worker, pool)
                log.error("all_upstreams_stopped")
                return 1
            except* BrokerError as group:
                delay = backoff.next_delay()
                log.error("broker_failed_restarting", error=str(group.exceptions[0]), delay_s=round(delay, 2))
                await asyncio.sleep(delay)


async def _serve_with_sync(
    settings: IngestSettings,
    ingester: Ingester,
    store: CursorStore,
    metrics: IngestMetrics,
    subscribe_fn: SubscribeFn,
    worker: SyncWorker,
    pool: asyncpg.Pool,
) -> None:
    """Follow the upstreams with the backfill/resync worker beside them: it takes the queue when no
    ``plyr-index backfill --run`` holds it, and releases each repo's held frames when it lands."""

    async def sync_forever() -> None:
        async with sync_lock(pool, schema=INGEST_SCHEMA, wait=True):
            await worker.run()

    async with asyncio.TaskGroup() as group:
        sync_task = group.create_task(sync_forever())
        try:
            await _serve_upstreams(settings, ingester, store, metrics, subscribe_fn, on_requests=worker.wake)
        finally:
            sync_task.cancel()


async def _open_resolver(stack: contextlib.AsyncExitStack, settings: IngestSettings) -> IdentityResolver | None:
    """The identity resolver on its own outbound sessions, or None when resolution is off."""
    if not settings.resolve_identity:
        log.info("identity_resolution_off")
        return None
    outbound = await stack.enter_async_context(Outbound(allow_private=settings.allow_private_hosts))
    return await stack.enter_async_context(
        AtprotoIdentityResolver(
            outbound,
            dns_resolver(settings.dns_servers),
            plc_url=settings.plc_url,
            max_entries=settings.identity_cache_size,
            ttl=settings.identity_ttl_s,
            failure_ttl=settings.identity_failure_ttl_s,
            timeout=settings.identity_timeout_s,
        )
    )


async def _open_gate(
    settings: IngestSettings, pool: asyncpg.Pool, resolver: IdentityResolver | None, metrics: IngestMetrics
) -> Gate | None:
    """The verification gate with the stored repo states, or None when verification is off."""
    if not settings.verify_commits:
        log.warning("commit_verification_off")
        return None
    if resolver is None:
        log.warning("commit_verification_off", reason="identity resolution is off: no signing keys")
        return None
    gate = Gate(
        PostgresRepoStateStore(pool),
        resolver,
        metrics,
        max_clock_skew=timedelta(seconds=settings.max_clock_skew_s),
        max_held_per_repo=settings.max_held_per_repo,
    )
    await gate.load()
    return gate


def _kafka_sink(platform: PlatformSettings) -> KafkaSink:
    return KafkaSink(
        platform.kafka_bootstrap,
        platform.events_topic,
        idempotence=platform.kafka_idempotence,
        compression=platform.kafka_compression,
    )


async def capture_upstream(
    upstream: str,
    out: Path,
    *,
    limit: int | None,
    seconds: float | None,
    cursor: int | None,
    stall_timeout: float = 60.0,
    max_frame_bytes: int = 8 * 1024 * 1024,
) -> int:
    """Record raw frames from ``upstream`` into a capture file, byte for byte; return the count."""
    with CaptureWriter(out) as writer:
        try:
            async with asyncio.timeout(seconds):
                async for frame in subscribe(
                    upstream, cursor, stall_timeout=stall_timeout, max_frame_bytes=max_frame_bytes
                ):
                    writer.write(frame)
                    if limit is not None and writer.frames >= limit:
                        break
        except TimeoutError:
            pass  # --seconds elapsed
        log.info("capture_done", upstream=upstream, frames=writer.frames, out=str(out))
        return writer.frames
