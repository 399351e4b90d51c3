"""Composition root of ``plyr-index backfill`` and ``plyr-index resync``: builds the repo state store,
the outbound sessions, the identity resolver, the sink and the worker from settings, for one command.

- :func:`queue_and_run`: queue repos (``--did``, ``--discover``) in the repo state table, where a
  running ingester's :class:`~ingest.backfill.SyncWorker` picks them up; with ``--run``, process the
  queue in this process until it is empty instead (refused while another process holds it).
- :func:`import_car`: an operator's offline import of a repo export file: verify it (against the DID
  document's signing key, unless told not to) and send its events. It touches no repo state: what a
  file says is not a reason to stop resyncing a repo from its PDS.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, TextIO

import asyncpg
from prometheus_client import CollectorRegistry

from ingest.backfill import SyncLimits, SyncWorker, deliver, resolve_document, signing_key_of, sync_lock
from ingest.cursor import INGEST_SCHEMA
from ingest.discovery import Discovered, discover
from ingest.errors import RepoSyncError, SyncFailure
from ingest.identity import AtprotoIdentityResolver, dns_resolver
from ingest.metrics import IngestMetrics
from ingest.producer import EventSink, JsonlSink, KafkaSink, ensure_topic
from ingest.progress import progress_bar
from ingest.repo_client import RepoClient
from ingest.repo_export import ExportError, ExportFailure, ExportLimits, RepoExport, export_repo
from ingest.repo_state import PostgresRepoStateStore, SyncState
from ingest.settings import IngestSettings
from ingest.verify.crypto import PublicKey
from runtime.outbound import Outbound
from runtime.settings import PlatformSettings
from schemas.envelope import Source
from schemas.migrate import migrate


@dataclass
class SyncRun:
    """What a backfill/resync command did."""

    queued: int = 0
    discovered: Discovered | None = None
    ran: bool = False
    done: int = 0
    records: int = 0
    # DID → the reason of its last failure, for repos still failing when the run ended.
    failed: dict[str, str] = field(default_factory=dict)


def _resolver(outbound: Outbound, settings: IngestSettings) -> AtprotoIdentityResolver:
    return AtprotoIdentityResolver(
        outbound,
        dns_resolver(settings.dns_servers),
        plc_url=settings.plc_url,
        max_entries=settings.identity_cache_size,
        ttl=settings.identity_ttl_s,
        failure_ttl=settings.identity_failure_ttl_s,
        timeout=settings.identity_timeout_s,
    )


def _kafka(platform: PlatformSettings) -> KafkaSink:
    return KafkaSink(
        platform.kafka_bootstrap,
        platform.events_topic,
        idempotence=platform.kafka_idempotence,
        compression=platform.kafka_compression,
    )


async def queue_and_run(
    platform: PlatformSettings,
    settings: IngestSettings,
    *,
    state: SyncState,
    dids: Sequence[str] = (),
    find: bool = False,
    run: bool = False,
    max_attempts: int = 3,
    progress: TextIO | None = None,
    registry: CollectorRegistry | None = None,
    schema: str = INGEST_SCHEMA,
) -> SyncRun:
    """Queue ``dids`` as ``state`` (and, with ``find``, what the relay lists); with ``run``, process the
    whole queue here. Raises DiscoveryError, SyncBusyError, BrokerError, or asyncpg/OS errors when
    Postgres cannot be reached."""
    metrics = IngestMetrics(registry or CollectorRegistry())
    out = SyncRun()
    async with contextlib.AsyncExitStack() as stack:
        pool = await stack.enter_async_context(asyncpg.create_pool(platform.database_url, min_size=1, max_size=4))
        async with pool.acquire() as conn:
            await migrate(conn, "ingest", schema)
        store = PostgresRepoStateStore(pool, schema)
        if dids:
            await store.request(list(dict.fromkeys(dids)), state, "operator")
            out.queued = len(set(dids))
        if not (find or run):
            return out
        outbound = await stack.enter_async_context(Outbound(allow_private=settings.allow_private_hosts))
        client = RepoClient(outbound)
        if find:
            out.discovered = await discover(
                client,
                store,
                relay=settings.relay_url,
                collections=settings.backfill_discover,
                page_limit=settings.backfill_page_limit,
                metrics=metrics,
            )
        if not run:
            return out
        await stack.enter_async_context(sync_lock(pool, schema=schema))
        resolver = await stack.enter_async_context(_resolver(outbound, settings))
        await ensure_topic(
            platform.kafka_bootstrap,
            platform.events_topic,
            platform.topic_partitions,
            platform.topic_replication_factor,
        )
        sink = await stack.enter_async_context(_kafka(platform))
        worker = SyncWorker(
            store,
            resolver,
            client,
            sink,
            collections=settings.collection_filter,
            metrics=metrics,
            limits=SyncLimits.from_settings(settings),
            allow_private=settings.allow_private_hosts,
            verify=settings.verify_commits,
        )
        out.ran = True
        bar = progress_bar(worker.stats, progress, label=state.value) if progress is not None else None
        async with bar or contextlib.nullcontext():
            out.failed = await worker.run_until_empty(max_attempts=max_attempts)
        out.done, out.records = worker.stats.done, worker.stats.records
    return out


async def import_car(
    platform: PlatformSettings,
    settings: IngestSettings,
    *,
    path: Path,
    did: str,
    verify: bool,
    out: BinaryIO | None = None,
) -> RepoExport:
    """Check the repo export in ``path`` as ``did``'s and send its events (to Kafka, or as JSON lines
    to ``out``). Raises RepoSyncError (no key to verify with), ExportError (the file does not verify),
    BrokerError, OSError (the file)."""
    limit = settings.backfill_max_export_bytes
    data = await asyncio.to_thread(_read, path, limit)
    key = await _signing_key(settings, did) if verify else None
    export = export_repo(
        data,
        did,
        key,
        collections=settings.collection_filter,
        source=Source.BACKFILL,
        upstream=f"file:{path.name}",
        now=datetime.now(UTC),
        limits=ExportLimits(max_bytes=limit, max_records=settings.backfill_max_records),
        max_clock_skew=timedelta(seconds=settings.max_clock_skew_s),
    )
    if out is not None:
        sink: EventSink = JsonlSink(out)
        await deliver(sink, export)
        await sink.flush()
        return export
    await ensure_topic(
        platform.kafka_bootstrap,
        platform.events_topic,
        platform.topic_partitions,
        platform.topic_replication_factor,
    )
    async with _kafka(platform) as kafka:
        await deliver(kafka, export)
    return export


def _read(path: Path, limit: int) -> bytes:
    if path.stat().st_size > limit:
        raise ExportError(ExportFailure.TOO_LARGE, f"{path} is over {limit} bytes (INGEST_BACKFILL_MAX_EXPORT_BYTES)")
    return path.read_bytes()


async def _signing_key(settings: IngestSettings, did: str) -> PublicKey:
    if not settings.resolve_identity:
        raise RepoSyncError(
            SyncFailure.IDENTITY_UNAVAILABLE,
            "identity resolution is off (INGEST_RESOLVE_IDENTITY=false), so there is no signing key to verify with",
        )
    async with Outbound(allow_private=settings.allow_private_hosts) as outbound, _resolver(outbound, settings) as r:
        return signing_key_of(await resolve_document(r, did))
