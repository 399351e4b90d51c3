"""Backfill and resync (I/O): find the repos holding ``fm.plyr.*`` records, export each from its PDS,
verify it, and put its records on the log, ending with a snapshot the projector deletes by.

Spec: atproto.com/specs/sync ("Backfill", record-level sync).

- :func:`ingest.discovery.discover` queues the repos the relay lists (``backfilling``, reason
  ``discovered``) in the repo state table.
- :class:`SyncWorker` takes every repo that is not synchronized (``backfilling``, ``resyncing``,
  ``desynchronized``) from the table, resolves its DID document (PDS and signing key), fetches
  ``getRepo``, checks it (:func:`ingest.repo_export.export_repo`), sends the records then the snapshot
  through the sink and waits until the broker acknowledged all of them. Only then is the repo saved as
  synchronized at the export's rev/data/commit, and ``on_synced`` told, so the ingester can release
  the live commits it held for the repo (those newer than the export; a held commit verifies against
  the new data root).

Invariants:
- All state is in the table: a worker killed at any point resumes by doing the unfinished repos again
  (their events may go out twice; the projector's rev rule makes that a no-op).
- At most ``concurrency`` repos are fetched at once, and ``per_pds`` per PDS. A 429 holds that PDS back
  for its Retry-After; any failure is written to the repo's ``reason`` and retried after a jittered
  delay doubling up to ``retry_cap_s``. A failure never stops the other repos.
- The snapshot of a repo whose export failed is never sent: nothing of a lying export is projected.
- Exports are checked in a worker thread, so a large repo does not stall the firehose on the loop.
- One worker per database at a time (:func:`sync_lock`, a Postgres advisory lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

import asyncpg

from ingest.errors import (
    BrokerError,
    IdentityError,
    RepoSyncError,
    SyncBusyError,
    SyncFailure,
)
from ingest.identity import IdentityResolver
from ingest.metrics import IngestMetrics, collection_label
from ingest.producer import EventSink
from ingest.repo_client import RepoClient
from ingest.repo_export import ExportError, ExportLimits, RepoExport, export_repo
from ingest.repo_state import RepoStateStore, RepoStatus, SyncState
from ingest.settings import IngestSettings
from ingest.verify.crypto import KeyFormatError, PublicKey, parse_multikey
from runtime.backoff import Backoff
from runtime.logging import get_logger
from runtime.urls import UnsafeUrl, service_origin
from schemas.diddoc import DidDocument
from schemas.envelope import Source
from schemas.ids import CollectionFilter

log = get_logger("ingest.backfill")

OnSynced = Callable[[RepoStatus], Awaitable[None]]
"""Told each repo saved as synchronized, after its export's events were acknowledged."""

# Per repo, the drops logged one by one; the rest are only counted.
_DROPS_LOGGED: Final = 10


@dataclass(frozen=True, slots=True)
class SyncLimits:
    """How hard the worker pulls: concurrency, bounds on one export, retry delays, polling."""

    concurrency: int = 8
    per_pds: int = 2
    timeout_s: float = 300.0
    export: ExportLimits = field(default_factory=ExportLimits)
    retry_base_s: float = 5.0
    retry_cap_s: float = 3600.0
    poll_s: float = 5.0
    max_clock_skew_s: float = 300.0

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> SyncLimits:
        """The limits the settings give."""
        return cls(
            concurrency=settings.backfill_concurrency,
            per_pds=settings.backfill_per_pds,
            timeout_s=settings.backfill_timeout_s,
            export=ExportLimits(
                max_bytes=settings.backfill_max_export_bytes, max_records=settings.backfill_max_records
            ),
            retry_base_s=settings.backfill_retry_base_s,
            retry_cap_s=settings.backfill_retry_cap_s,
            poll_s=settings.backfill_poll_s,
            max_clock_skew_s=settings.max_clock_skew_s,
        )


@dataclass(slots=True)
class SyncStats:
    """What a worker did since it started (the progress bar reads it)."""

    started: float = field(default_factory=time.monotonic)
    done: int = 0
    records: int = 0
    # Repos whose last attempt failed and that are waiting for their next one.
    failing: int = 0
    # Repos not synchronized at the last look at the table, including the ones in flight.
    pending: int = 0

    @property
    def total(self) -> int:
        """Repos done plus repos still to do."""
        return self.done + self.pending


@dataclass(slots=True)
class _Retry:
    """A repo whose last attempt failed: how often, why, and when it may be tried again."""

    backoff: Backoff
    attempts: int = 0
    not_before: float = 0.0
    reason: str = ""


class _PdsGate:
    """One PDS: its share of the concurrency, and the moment its Retry-After ends."""

    def __init__(self, slots: int) -> None:
        self.slots = asyncio.Semaphore(slots)
        self.not_before = 0.0


class SyncWorker:
    """Backfills and resyncs the repos queued in the repo state table (see the module docstring)."""

    def __init__(
        self,
        store: RepoStateStore,
        resolver: IdentityResolver,
        client: RepoClient,
        sink: EventSink,
        *,
        collections: CollectionFilter,
        metrics: IngestMetrics,
        limits: SyncLimits | None = None,
        allow_private: bool = False,
        verify: bool = True,
        on_synced: OnSynced | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._resolver = resolver
        self._client = client
        self._sink = sink
        self._collections = collections
        self._metrics = metrics
        self._limits = limits or SyncLimits()
        self._allow_private = allow_private
        self._verify = verify
        self._on_synced = on_synced
        self._clock = clock
        self.stats = SyncStats(started=clock())
        self._slots = asyncio.Semaphore(self._limits.concurrency)
        self._gates: dict[str, _PdsGate] = {}
        self._retries: dict[str, _Retry] = {}
        self._inflight: set[str] = set()
        # While the table is being read: the repos whose attempt ended meanwhile. The read may predate
        # their outcome, so this load must not queue them again; the next one sees what they left (an
        # ended attempt sets _finished, so that next load comes as soon as the queue is idle).
        self._ended_while_loading: set[str] | None = None
        self._wake = asyncio.Event()
        self._reload = True
        self._finished = False

    def wake(self) -> None:
        """Look at the table now (a repo was just queued in this process)."""
        self._reload = True
        self._wake.set()

    async def run(self) -> None:
        """Process the queue until cancelled; a broker failure (BrokerError) ends it."""
        await self._loop(None)

    async def run_until_empty(self, *, max_attempts: int = 3) -> dict[str, str]:
        """Process the queue until every repo in it is synchronized or has failed ``max_attempts``
        times in a row; returns the failed ones (DID → reason). Repos queued meanwhile are done too."""
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        return await self._loop(max_attempts)

    async def _loop(self, max_attempts: int | None) -> dict[str, str]:
        queue: dict[str, RepoStatus] = {}
        pending_dids: set[str] = set()
        loaded_at = float("-inf")
        max_inflight = self._limits.concurrency * 4
        async with asyncio.TaskGroup() as group:
            while True:
                self._wake.clear()
                now = self._clock()
                idle = all(self._waiting(did, now) for did in queue)
                if self._reload or now - loaded_at >= self._limits.poll_s or (self._finished and idle):
                    self._reload = self._finished = False
                    loaded_at = now
                    self._ended_while_loading = set()
                    try:
                        pending = await self._store.pending()
                        ended = self._ended_while_loading
                    finally:
                        self._ended_while_loading = None
                    pending_dids = {s.did for s in pending}
                    queue = {s.did: s for s in pending if s.did not in self._inflight and s.did not in ended}
                    self.stats.pending = len(pending)
                    self._metrics.repos_pending.set(len(pending))
                waits: list[float] = []
                for did, status in list(queue.items()):
                    retry = self._retries.get(did)
                    if retry is not None and max_attempts is not None and retry.attempts >= max_attempts:
                        del queue[did]
                    elif retry is not None and retry.not_before > now:
                        waits.append(retry.not_before - now)
                    elif len(self._inflight) < max_inflight:
                        del queue[did]
                        self._inflight.add(did)
                        group.create_task(self._attempt(status))
                if max_attempts is not None and not (self._inflight or queue or self._finished or self._reload):
                    return {
                        did: r.reason
                        for did, r in self._retries.items()
                        if r.attempts >= max_attempts and did in pending_dids
                    }
                timeout = max(0.0, loaded_at + self._limits.poll_s - now)
                if waits:
                    timeout = min(timeout, min(waits))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()

    def _waiting(self, did: str, now: float) -> bool:
        retry = self._retries.get(did)
        return retry is not None and retry.not_before > now

    async def _attempt(self, status: RepoStatus) -> None:
        try:
            await self.sync_repo(status)
        except RepoSyncError as err:
            await self._failed(status, err)
        else:
            self._retries.pop(status.did, None)
            self.stats.done += 1
        finally:
            self._inflight.discard(status.did)
            if self._ended_while_loading is not None:
                self._ended_while_loading.add(status.did)
            self.stats.failing = len(self._retries)
            self._finished = True
            self._wake.set()

    async def _failed(self, status: RepoStatus, err: RepoSyncError) -> None:
        limits = self._limits
        retry = self._retries.get(status.did)
        if retry is None:
            retry = self._retries[status.did] = _Retry(
                Backoff(base=limits.retry_base_s, cap=limits.retry_cap_s, reset_after=float("inf"))
            )
        retry.attempts += 1
        delay = retry.backoff.next_delay()
        if err.retry_after is not None:
            delay = max(delay, min(err.retry_after, limits.retry_cap_s))
        retry.not_before = self._clock() + delay
        retry.reason = f"{err.failure}: {err.detail[:300]}"
        self._metrics.repo_sync_failures.labels(err.failure.value).inc()
        log.warning(
            "repo_sync_failed",
            did=status.did,
            reason=err.failure.value,
            detail=err.detail[:300],
            attempt=retry.attempts,
            retry_in_s=round(delay, 2),
        )
        current = await self._store.get(status.did) or status
        if current.state is not SyncState.SYNCHRONIZED:
            await self._store.save([current.moved(reason=f"{retry.reason} (attempt {retry.attempts})")])

    async def sync_repo(self, status: RepoStatus) -> RepoStatus:
        """Export one repo onto the log and save it synchronized; RepoSyncError if it cannot be now."""
        did = status.did
        source = Source.BACKFILL if status.state is SyncState.BACKFILLING else Source.RESYNC
        if source is Source.RESYNC or did in self._retries:
            # A resync may follow a key rotation or a PDS move: ask for the current document.
            self._resolver.invalidate(did)
        pds, key = await self._identity(did)
        data = await self._fetch(pds, did)
        self._metrics.repo_export_bytes.inc(len(data))
        try:
            export = await asyncio.to_thread(
                export_repo,
                data,
                did,
                key,
                collections=self._collections,
                source=source,
                upstream=pds.partition("://")[2],
                now=datetime.now(UTC),
                held_rev=status.rev,
                limits=self._limits.export,
                max_clock_skew=timedelta(seconds=self._limits.max_clock_skew_s),
            )
        except ExportError as err:
            raise RepoSyncError(err.reason, err.detail) from err
        del data
        await deliver(self._sink, export)
        verified = export.verified
        synced = status.moved(
            rev=verified.rev,
            data=str(verified.data),
            commit=str(verified.commit),
            state=SyncState.SYNCHRONIZED,
            reason=None,
            pds=pds,
        )
        current = await self._store.get(did)
        if current is not None and (current.state, current.reason) != (status.state, status.reason):
            # Asked for again while this export ran (an operator, a failed live commit): that request
            # stands, and the repo is done once more.
            log.info("repo_requested_again", did=did, state=current.state.value, reason=current.reason)
            return current
        await self._store.save([synced])
        self._count(export, source)
        log.info("repo_synced", did=did, source=source.value, rev=verified.rev, records=len(export.events) - 1)
        if self._on_synced is not None:
            await self._on_synced(synced)
        return synced

    async def _identity(self, did: str) -> tuple[str, PublicKey | None]:
        """The PDS origin (safe to contact) and the signing key (None when not verifying) of ``did``."""
        document = await resolve_document(self._resolver, did)
        if document.pds is None:
            raise RepoSyncError(SyncFailure.NO_PDS, "the DID document names no #atproto_pds service")
        try:
            pds = str(service_origin(document.pds, allow_private=self._allow_private))
        except UnsafeUrl as err:
            raise RepoSyncError(SyncFailure.NO_PDS, f"PDS endpoint refused: {err}") from err
        return pds, signing_key_of(document) if self._verify else None

    async def _fetch(self, pds: str, did: str) -> bytes:
        gate = self._gates.get(pds)
        if gate is None:
            gate = self._gates[pds] = _PdsGate(self._limits.per_pds)
        async with gate.slots:
            wait = gate.not_before - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
            async with self._slots:
                try:
                    return await self._client.get_repo(
                        pds, did, max_bytes=self._limits.export.max_bytes, time_limit=self._limits.timeout_s
                    )
                except RepoSyncError as err:
                    if err.failure is SyncFailure.RATE_LIMITED:
                        self._metrics.repo_rate_limited.inc()
                        pause = err.retry_after if err.retry_after is not None else self._limits.retry_base_s
                        gate.not_before = self._clock() + min(pause, self._limits.retry_cap_s)
                    raise

    def _count(self, export: RepoExport, source: Source) -> None:
        m = self._metrics
        m.repo_syncs.labels(source.value).inc()
        records = export.records
        self.stats.records += len(records)
        by_collection: dict[str, int] = {}
        for event in records:
            label = collection_label(event.collection)
            by_collection[label] = by_collection.get(label, 0) + 1
        for label, count in by_collection.items():
            m.repo_records.labels(label).inc(count)
        for i, drop in enumerate(export.drops):
            m.repo_record_drops.labels(drop.reason.value).inc()
            if i < _DROPS_LOGGED:
                log.warning("repo_record_skipped", did=drop.did, path=drop.path, reason=drop.reason.value)
        if len(export.drops) > _DROPS_LOGGED:
            log.warning("repo_records_skipped", did=export.did, count=len(export.drops))


async def resolve_document(resolver: IdentityResolver, did: str) -> DidDocument:
    """The DID document of ``did``; RepoSyncError (identity_unavailable / identity_invalid) if not had."""
    try:
        return await resolver.resolve_did(did)
    except IdentityError as err:
        failure = SyncFailure.IDENTITY_UNAVAILABLE if err.retriable else SyncFailure.IDENTITY_INVALID
        raise RepoSyncError(failure, str(err)) from err


def signing_key_of(document: DidDocument) -> PublicKey:
    """The repo signing key a DID document names; RepoSyncError(no_signing_key) if none is usable."""
    if document.signing_key is None:
        raise RepoSyncError(SyncFailure.NO_SIGNING_KEY, "the DID document has no #atproto Multikey")
    try:
        return parse_multikey(document.signing_key)
    except KeyFormatError as err:
        raise RepoSyncError(SyncFailure.NO_SIGNING_KEY, str(err)) from err


async def deliver(sink: EventSink, export: RepoExport) -> None:
    """Send an export's events, in order, and wait until the broker acknowledged every one."""
    futures: list[asyncio.Future[object]] = []
    for event in export.events:
        future = await sink.send(event)
        if future is not None:
            futures.append(future)
    try:
        await asyncio.gather(*futures)
    except BrokerError:
        raise
    except Exception as err:
        raise BrokerError(f"the export of {export.did} was not acknowledged: {err}") from err


@contextlib.asynccontextmanager
async def sync_lock(pool: asyncpg.Pool, *, schema: str, wait: bool = False) -> AsyncIterator[None]:
    """Hold the backfill queue of ``schema`` for this process (a Postgres advisory lock on one pooled
    connection, released with it, also when the process dies). ``wait`` False: SyncBusyError at once
    when another process holds it."""
    key = f"{schema}.sync_worker"
    async with pool.acquire() as conn:
        if wait:
            await conn.execute("SELECT pg_advisory_lock(hashtext($1))", key)
        elif not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key):
            raise SyncBusyError("another process (an ingester, or plyr-index backfill --run) is processing the queue")
        try:
            yield
        finally:
            # A lost connection took the lock with it.
            with contextlib.suppress(asyncpg.PostgresError, OSError):
                await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", key)
