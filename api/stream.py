"""``GET``/``HEAD /stream/{did}/{rkey}``: a 307 to where the track's audio can be played from.

The track is ``at://{did}/fm.plyr.track/{rkey}``, visible only while its artist is active and not
taken down locally. Sources, in order:

1. its ``audioUrl``, only when that URL's origin is exactly one of ``API_TRUSTED_CDN_ORIGINS``;
2. the mirror bucket, when configured and ``blobs/<audioBlob cid>`` is there: a presigned GET valid
   for ``API_PRESIGN_SECONDS`` (``Cache-Control: no-store``, the URL expires);
3. the artist's PDS ``com.atproto.sync.getBlob``, the PDS taken from the DID document.

Supporter-gated tracks (``supportGate`` set) get 402 unless ``API_GATED_AUDIO=presign``, and then
only source 2 serves them. An untrusted URL never reaches a ``Location`` header: anything that fails
:mod:`runtime.urls` falls through to the next source. No playable source → 404; DID resolution failures
→ 502 ``UpstreamFailure`` (or 503 ``Unavailable`` when trying again later may help).

The app sets ``app.state.settings`` and ``app.state.pool``; the shared HTTP sessions, resolver and S3
client (:class:`api.sources.AudioSources`) are opened on first use, kept on ``app.state`` and closed
by this router's lifespan, which FastAPI merges into the app's when it includes the router.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Final
from urllib.parse import urlencode

import asyncpg
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from prometheus_client import CollectorRegistry, Counter

from api.blobs import StorageError
from api.cids import BlobCidError, blob_digest
from api.errors import (
    COMMON_STATUSES,
    InvalidRequest,
    NotFound,
    PaymentRequired,
    Unavailable,
    XrpcError,
    openapi_errors,
)
from api.identity import ResolveError
from api.settings import ApiSettings
from api.sources import AudioSources, open_sources
from api.sql import visible
from runtime.logging import get_logger
from runtime.urls import UnsafeUrl, trusted_origins, trusted_redirect
from schemas.ids import is_did, is_record_key

log = get_logger("api.stream")

PUBLIC_CACHE: Final = "public, max-age=60"
NO_STORE: Final = "no-store"

_TRACK = (
    "SELECT t.audio_url, t.audio_blob_cid, t.support_gate IS NOT NULL AS gated"
    f" FROM tracks t {visible('a', 't.did')} WHERE t.uri = $1"
)


class UpstreamFailure(XrpcError):
    """The artist's identity or PDS could not be used (bad or hostile DID document)."""

    status = 502
    error = "UpstreamFailure"


async def audio_sources(app: FastAPI) -> AudioSources:
    """The app's :class:`AudioSources`, opened on first use."""
    state = app.state
    current: AudioSources | None = getattr(state, "audio_sources", None)
    if current is not None:
        return current
    lock: asyncio.Lock | None = getattr(state, "audio_sources_lock", None)
    if lock is None:
        lock = state.audio_sources_lock = asyncio.Lock()
    async with lock:
        current = getattr(state, "audio_sources", None)
        if current is None:
            stack = AsyncExitStack()
            current = await stack.enter_async_context(open_sources(state.settings))
            state.audio_sources_stack = stack
            state.audio_sources = current
    return current


async def close_audio_sources(app: FastAPI) -> None:
    """Close what :func:`audio_sources` opened (idempotent)."""
    stack: AsyncExitStack | None = getattr(app.state, "audio_sources_stack", None)
    app.state.audio_sources = None
    app.state.audio_sources_stack = None
    if stack is not None:
        await stack.aclose()


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: ApiSettings | None = getattr(app.state, "settings", None)
    if settings is not None:
        trusted_origins(settings.trusted_cdn_origins)  # a malformed origin stops startup
    try:
        yield
    finally:
        await close_audio_sources(app)


router = APIRouter(lifespan=_lifespan)


def stream_metrics(registry: CollectorRegistry) -> Counter:
    """The redirect counter the app keeps on ``app.state.stream_redirects`` for this router."""
    return Counter("plyr_api_stream_redirects", "Stream redirects by target", ["target"], registry=registry)


@router.get(
    "/stream/{did}/{rkey}",
    response_class=RedirectResponse,
    status_code=307,
    responses=openapi_errors(*COMMON_STATUSES, 402, 404, 502),
)
async def stream(request: Request, did: str, rkey: str) -> Response:
    """307 to a playable source of the track's audio."""
    return await _stream(request, did, rkey)


@router.head("/stream/{did}/{rkey}", include_in_schema=False)
async def stream_head(request: Request, did: str, rkey: str) -> Response:
    """The same answer as GET, without a body."""
    return await _stream(request, did, rkey)


def _redirect(request: Request, target: str, url: str, cache_control: str) -> Response:
    """The 307, counted by where it sends the listener (``cdn``, ``bucket``, ``pds``)."""
    redirects: Counter = request.app.state.stream_redirects
    redirects.labels(target).inc()
    return RedirectResponse(url, status_code=307, headers={"Cache-Control": cache_control})


async def _stream(request: Request, did: str, rkey: str) -> Response:
    if not is_did(did):
        raise InvalidRequest("did: not a DID")
    if not is_record_key(rkey):
        raise InvalidRequest("rkey: not a record key")
    settings: ApiSettings = request.app.state.settings
    pool: asyncpg.Pool = request.app.state.pool
    uri = f"at://{did}/fm.plyr.track/{rkey}"
    row = await pool.fetchrow(_TRACK, uri)
    if row is None:
        raise NotFound(f"no such track: {uri}")
    sources = await audio_sources(request.app)
    cid = _blob_cid(row["audio_blob_cid"], uri)
    if row["gated"]:
        if settings.gated_audio != "presign":
            raise PaymentRequired("this track is for the artist's supporters; this index does not serve it publicly")
        presigned = await _mirrored(sources, cid)
        if presigned is None:
            raise NotFound(
                "no playable source: supporter-only audio is served only from the mirror, and it is not there"
            )
        return _redirect(request, "bucket", presigned, NO_STORE)
    if row["audio_url"] is not None:
        try:
            return _redirect(request, "cdn", str(trusted_redirect(row["audio_url"], sources.trusted_cdn)), PUBLIC_CACHE)
        except UnsafeUrl as err:
            log.debug("audio_url_skipped", uri=uri, problem=str(err.problem))
    if cid is None:
        raise NotFound("no playable source: no audioUrl on a trusted CDN and no audio blob")
    presigned = await _mirrored(sources, cid)
    if presigned is not None:
        return _redirect(request, "bucket", presigned, NO_STORE)
    try:
        pds = await sources.resolver.pds(did)
    except ResolveError as err:
        log.info("pds_unresolved", did=did, problem=str(err.problem))
        if err.retriable:
            raise Unavailable(f"the artist's PDS cannot be resolved now ({err.problem})") from err
        raise UpstreamFailure(f"the artist's PDS cannot be used ({err.problem})") from err
    blob = f"{pds}/xrpc/com.atproto.sync.getBlob?{urlencode({'did': did, 'cid': cid})}"
    return _redirect(request, "pds", blob, PUBLIC_CACHE)


def _blob_cid(cid: str | None, uri: str) -> str | None:
    """The audio blob CID if it is one a PDS can serve (raw sha2-256), else None."""
    if cid is None:
        return None
    try:
        blob_digest(cid)
    except BlobCidError:
        log.debug("audio_blob_cid_skipped", uri=uri)
        return None
    return cid


async def _mirrored(sources: AudioSources, cid: str | None) -> str | None:
    """A presigned URL for the blob if the mirror holds it; None otherwise or when storage fails."""
    if sources.store is None or cid is None:
        return None
    try:
        if await sources.store.exists(cid):
            return await sources.store.presign(cid)
    except StorageError as err:
        log.warning("mirror_unavailable", error=str(err))
    return None
