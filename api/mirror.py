"""Media mirror: copy the audio blobs of visible tracks from the artists' PDSes into the bucket.

A pass lists ``blobs/`` in the bucket once, walks the visible tracks' distinct ``audio_blob_cid``
values in CID order, and for each one not in the bucket: resolves the artist's PDS (api/identity.py),
fetches ``com.atproto.sync.getBlob`` on the guarded session (no private addresses unless
``API_ALLOW_PRIVATE_PDS``), refuses more than ``API_MIRROR_MAX_BYTES`` while streaming, within
``API_MIRROR_FETCH_TIMEOUT_SECONDS``, hashes the bytes as they arrive and uploads them with the
record's mime type **only** when they are the blob the CID names. The stream endpoint then serves the
object through presigned URLs (api/stream.py).

No table records failures (the read-model schema belongs to the projector): a failed CID backs off in
memory, is logged with its reason, and is counted in :class:`MirrorResult`. A blob is held in memory
while it is verified; the worker copies one at a time, so peak memory is about one maximum blob.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlencode

import asyncpg
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client import Counter as MetricCounter

from api.blobs import BlobStore, StorageError
from api.cids import BlobCheck, BlobCidError
from api.identity import ResolveError, ResolveProblem
from api.settings import ApiSettings, load_api
from api.sources import AudioSources, open_sources
from api.sql import visible
from runtime.backoff import Backoff
from runtime.lifecycle import run_until_signalled
from runtime.logging import configure, get_logger
from runtime.metrics import MetricsServer
from runtime.outbound import FetchError, FetchProblem
from runtime.settings import SettingsError, load_platform
from runtime.urls import UnsafeUrl, trusted_origins
from schemas.migrate import quote_schema

log = get_logger("api.mirror")

_PAGE = 500
_CANDIDATES = (
    "SELECT DISTINCT ON (t.audio_blob_cid) t.audio_blob_cid AS cid, t.did, t.audio_blob_mime AS mime,"
    " t.audio_blob_size AS size"
    f" FROM tracks t {visible('a', 't.did')}"
    " WHERE t.audio_blob_cid IS NOT NULL AND t.audio_blob_cid > $1"
    " ORDER BY t.audio_blob_cid, t.sort_at DESC LIMIT $2"
)


class MirrorFailure(StrEnum):
    """Why a blob was not copied (closed set: log field and result key)."""

    BAD_CID = "bad_cid"
    TOO_LARGE = "too_large"
    RESOLVE = "resolve"
    UNSAFE_ENDPOINT = "unsafe_endpoint"
    FETCH = "fetch"
    TIMEOUT = "timeout"
    CID_MISMATCH = "cid_mismatch"
    UPLOAD = "upload"


@dataclass
class MirrorResult:
    """What one pass did."""

    # Blobs of visible tracks that were not in the bucket when the pass began.
    missing: int = 0
    copied: int = 0
    # Missing blobs skipped because an earlier failure is still backing off.
    deferred: int = 0
    # Missing blobs left for the next pass because this one reached its copy limit.
    left: int = 0
    failed: Counter[MirrorFailure] = field(default_factory=Counter)

    @property
    def failures(self) -> int:
        """Blobs that failed in this pass."""
        return sum(self.failed.values())


class MirrorMetrics:
    """The mirror's Prometheus metrics, recorded once per pass (labels are closed sets)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.passes = MetricCounter(
            "plyr_mirror_passes",
            "Mirror passes, by outcome (ok; failed: the bucket or the database could not be used)",
            ["outcome"],
            registry=registry,
        )
        self.blobs = MetricCounter(
            "plyr_mirror_blobs",
            "Missing blobs a pass dealt with, by outcome: copied, deferred (an earlier failure backing off),"
            " or the failure reason",
            ["outcome"],
            registry=registry,
        )
        self.missing = Gauge(
            "plyr_mirror_missing_blobs", "Blobs of visible tracks not in the bucket at the last pass", registry=registry
        )
        self.last_pass = Gauge(
            "plyr_mirror_last_pass_timestamp_seconds", "When the last pass that could run ended", registry=registry
        )
        for outcome in ("ok", "failed"):
            self.passes.labels(outcome)
        for blob_outcome in ("copied", "deferred", *MirrorFailure):
            self.blobs.labels(str(blob_outcome))

    def record(self, result: MirrorResult) -> None:
        """Count a pass that ran."""
        self.passes.labels("ok").inc()
        self.blobs.labels("copied").inc(result.copied)
        self.blobs.labels("deferred").inc(result.deferred)
        for reason, n in result.failed.items():
            self.blobs.labels(str(reason)).inc(n)
        self.missing.set(result.missing)
        self.last_pass.set_to_current_time()


@dataclass
class _Failing:
    reason: MirrorFailure
    attempts: int
    retry_at: float


class FailureLog:
    """Failed CIDs and when to try each again: capped exponential backoff with jitter, in memory."""

    def __init__(self, base: float = 60.0, cap: float = 6 * 3600.0) -> None:
        self._base = base
        self._cap = cap
        self._failing: dict[str, _Failing] = {}

    def ready(self, cid: str) -> bool:
        """Whether ``cid`` may be tried now."""
        entry = self._failing.get(cid)
        return entry is None or entry.retry_at <= time.monotonic()

    def failed(self, cid: str, reason: MirrorFailure) -> _Failing:
        """Record a failure; returns the entry with its next attempt time."""
        attempts = self._failing[cid].attempts + 1 if cid in self._failing else 1
        delay = min(self._cap, self._base * 2 ** (attempts - 1)) * random.uniform(0.5, 1.0)
        entry = self._failing[cid] = _Failing(reason, attempts, time.monotonic() + delay)
        return entry

    def succeeded(self, cid: str) -> None:
        """Forget ``cid``'s failures."""
        self._failing.pop(cid, None)

    def reason(self, cid: str) -> MirrorFailure | None:
        """The last failure of ``cid``, if it is failing."""
        entry = self._failing.get(cid)
        return entry.reason if entry else None


async def mirror_once(
    pool: asyncpg.Pool,
    settings: ApiSettings,
    *,
    sources: AudioSources,
    failures: FailureLog,
    max_copies: int = 100,
) -> MirrorResult:
    """One pass: copy up to ``max_copies`` missing blobs. Raises StorageError if the bucket cannot be listed."""
    store = sources.store
    if store is None:
        raise ValueError("the media mirror needs API_S3_BUCKET")
    present = await store.present()
    result = MirrorResult()
    after = ""
    while True:
        rows = await pool.fetch(_CANDIDATES, after, _PAGE)
        for row in rows:
            cid = row["cid"]
            if cid in present:
                continue
            result.missing += 1
            if not failures.ready(cid):
                result.deferred += 1
            elif result.copied + result.failures >= max_copies:
                result.left += 1
            else:
                reason = await _copy(store, sources, settings, row)
                if reason is None:
                    failures.succeeded(cid)
                    result.copied += 1
                else:
                    entry = failures.failed(cid, reason)
                    result.failed[reason] += 1
                    log.warning(
                        "mirror_failed",
                        cid=cid,
                        did=row["did"],
                        reason=str(reason),
                        attempts=entry.attempts,
                        retry_in=round(entry.retry_at - time.monotonic()),
                    )
        if len(rows) < _PAGE:
            return result
        after = rows[-1]["cid"]


async def _copy(
    store: BlobStore, sources: AudioSources, settings: ApiSettings, row: asyncpg.Record
) -> MirrorFailure | None:
    """Copy one blob; the reason it was not copied, or None."""
    cid, did = row["cid"], row["did"]
    try:
        check = BlobCheck(cid)
    except BlobCidError:
        return MirrorFailure.BAD_CID
    if row["size"] is not None and row["size"] > settings.mirror_max_bytes:
        return MirrorFailure.TOO_LARGE
    try:
        pds = await sources.resolver.pds(did)
    except ResolveError as err:
        return MirrorFailure.UNSAFE_ENDPOINT if err.problem is ResolveProblem.UNSAFE_ENDPOINT else MirrorFailure.RESOLVE
    body = bytearray()

    def take(chunk: bytes) -> None:
        check.update(chunk)
        body.extend(chunk)

    url = f"{pds}/xrpc/com.atproto.sync.getBlob?{urlencode({'did': did, 'cid': cid})}"
    try:
        await sources.outbound.fetch(
            url,
            guarded=True,
            max_bytes=settings.mirror_max_bytes,
            time_limit=settings.mirror_fetch_timeout_seconds,
            sink=take,
        )
    except FetchError as err:
        return _fetch_failure(err)
    if not check.matches():
        return MirrorFailure.CID_MISMATCH
    try:
        await store.put(cid, body, row["mime"])
    except StorageError:
        return MirrorFailure.UPLOAD
    log.info("mirror_copied", cid=cid, did=did, size=check.size)
    return None


def _fetch_failure(err: FetchError) -> MirrorFailure:
    if err.problem is FetchProblem.TOO_LARGE:
        return MirrorFailure.TOO_LARGE
    if err.problem is FetchProblem.TIMEOUT:
        return MirrorFailure.TIMEOUT
    if err.problem in (FetchProblem.PRIVATE_ADDRESS, FetchProblem.UNSAFE_URL):
        return MirrorFailure.UNSAFE_ENDPOINT
    return MirrorFailure.FETCH


async def run_mirror(
    pool: asyncpg.Pool,
    settings: ApiSettings,
    *,
    sources: AudioSources,
    interval: float = 60.0,
    max_copies: int = 100,
    metrics: MirrorMetrics | None = None,
) -> None:
    """Pass after pass until cancelled; an unreachable bucket or database is retried with backoff."""
    failures = FailureLog()
    backoff = Backoff(base=1.0, cap=120.0)
    while True:
        try:
            result = await mirror_once(pool, settings, sources=sources, failures=failures, max_copies=max_copies)
        except (StorageError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            delay = backoff.next_delay()
            if metrics is not None:
                metrics.passes.labels("failed").inc()
            log.warning("mirror_pass_failed", error=type(err).__name__, detail=str(err)[:200], retry_in=round(delay, 1))
            await asyncio.sleep(delay)
            continue
        backoff.healthy()
        if metrics is not None:
            metrics.record(result)
        log.info(
            "mirror_pass",
            missing=result.missing,
            copied=result.copied,
            deferred=result.deferred,
            left=result.left,
            failed={str(k): v for k, v in result.failed.items()},
        )
        # A pass that hit its copy limit goes again at once; otherwise wait for new tracks.
        if not result.left:
            await asyncio.sleep(interval)


def mirror_main(argv: list[str] | None = None) -> int:
    """``plyr-index mirror``: run the media mirror (``--once`` for a single pass)."""
    p = argparse.ArgumentParser(prog="plyr-index mirror", description="Copy tracks' audio blobs into the bucket.")
    p.add_argument("--schema", dest="schema_name", help="read-model schema (env API_SCHEMA_NAME)")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between passes (default 60)")
    p.add_argument("--max-copies", type=int, default=100, help="blobs copied per pass at most (default 100)")
    p.add_argument("--once", action="store_true", help="one pass, then exit (status 1 if any blob failed)")
    args = p.parse_args(argv)
    try:
        platform = load_platform()
        settings = load_api(schema_name=args.schema_name)
        trusted_origins(settings.trusted_cdn_origins)
    except (SettingsError, UnsafeUrl) as err:
        print(f"plyr-index mirror: {err}", file=sys.stderr)  # noqa: T201 - before logging exists
        return 2
    if settings.s3_bucket is None:
        print("plyr-index mirror: API_S3_BUCKET is not set", file=sys.stderr)  # noqa: T201
        return 2
    configure(platform.log_level, platform.log_format)

    async def main() -> int:
        search_path = f"{quote_schema(settings.schema_name)}, public"
        async with (
            asyncpg.create_pool(
                platform.database_url, min_size=1, max_size=2, server_settings={"search_path": search_path}
            ) as pool,
            open_sources(settings) as sources,
        ):
            if args.once:
                result = await mirror_once(
                    pool, settings, sources=sources, failures=FailureLog(), max_copies=args.max_copies
                )
                log.info("mirror_pass", missing=result.missing, copied=result.copied, failed=result.failures)
                return 1 if result.failures else 0
            registry = CollectorRegistry()
            metrics = MirrorMetrics(registry)
            async with MetricsServer(registry, settings.mirror_metrics_host, settings.mirror_metrics_port) as server:
                log.info("mirror_metrics", port=server.port)
                await run_mirror(
                    pool, settings, sources=sources, interval=args.interval, max_copies=args.max_copies, metrics=metrics
                )
            return 0

    code = run_until_signalled(main())
    return 0 if code is None else code
