"""DID → the artist's PDS origin, from the DID document, with a TTL cache (atproto.com/specs/did).

- ``did:plc``: ``GET <plc_url>/<did>`` on the trusted session (the directory is operator config).
- ``did:web``: ``GET https://<host>/.well-known/did.json`` on the guarded session (the host is
  untrusted input: SSRF rules of runtime/outbound.py apply).
- Which DIDs are supported and how the document is read (the ``#atproto_pds`` service) is
  :mod:`schemas.diddoc`; the endpoint must also pass :func:`runtime.urls.service_origin`.

Answers are cached per DID: successes for ``ttl`` seconds, failures for ``failure_ttl`` (so a broken
or hostile DID costs one lookup per period, not one per request). Concurrent lookups of one DID share
one request. :class:`ResolveError` says whether asking again later can help.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from enum import StrEnum

import orjson

from runtime.outbound import FetchError, FetchProblem, Outbound
from runtime.urls import Origin, UnsafeUrl, outbound_url, service_origin
from schemas.diddoc import DidDocError, parse_did_document
from schemas.diddoc import document_url as did_document_url

_MAX_DOCUMENT = 64 * 1024


class ResolveProblem(StrEnum):
    """Why no PDS could be found for a DID (closed set)."""

    UNSUPPORTED_DID = "unsupported_did"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"
    BAD_DOCUMENT = "bad_document"
    NO_PDS = "no_pds"
    UNSAFE_ENDPOINT = "unsafe_endpoint"


class ResolveError(Exception):
    """The DID's PDS is unknown; ``retriable`` when the directory or host could not answer."""

    def __init__(self, problem: ResolveProblem, detail: str) -> None:
        super().__init__(f"{problem}: {detail}")
        self.problem = problem

    @property
    def retriable(self) -> bool:
        """Whether a later attempt may succeed."""
        return self.problem is ResolveProblem.UNAVAILABLE


def pds_origin(did: str, document: object, *, allow_private: bool, trusted: frozenset[Origin]) -> Origin:
    """The PDS origin in ``document`` (the DID document of ``did``). Pure; raises :class:`ResolveError`."""
    try:
        endpoint = parse_did_document(did, document).pds
    except DidDocError as err:
        raise ResolveError(ResolveProblem.BAD_DOCUMENT, str(err)) from err
    if endpoint is None:
        raise ResolveError(ResolveProblem.NO_PDS, "no #atproto_pds service")
    try:
        return service_origin(endpoint, allow_private=allow_private, trusted=trusted)
    except UnsafeUrl as err:
        raise ResolveError(ResolveProblem.UNSAFE_ENDPOINT, str(err)) from err


def document_url(did: str, plc_url: str, *, allow_private: bool) -> tuple[str, bool]:
    """Where the DID document of ``did`` is, and whether that host is untrusted (guarded fetch)."""
    try:
        url, guarded = did_document_url(did, plc_url, allow_private=allow_private)
        if guarded:
            url = str(outbound_url(url, allow_private=allow_private))
    except (DidDocError, UnsafeUrl) as err:
        raise ResolveError(ResolveProblem.UNSUPPORTED_DID, str(err)) from err
    return url, guarded


def _problem_of(err: FetchError) -> ResolveProblem:
    if err.retriable:
        return ResolveProblem.UNAVAILABLE
    if err.problem in (FetchProblem.UNSAFE_URL, FetchProblem.PRIVATE_ADDRESS):
        return ResolveProblem.UNSAFE_ENDPOINT
    if err.problem is FetchProblem.STATUS:
        return ResolveProblem.NOT_FOUND
    return ResolveProblem.BAD_DOCUMENT


class DidResolver:
    """PDS origins of DIDs, cached; one instance per process, built by the composition root."""

    def __init__(
        self,
        outbound: Outbound,
        plc_url: str,
        *,
        trusted: frozenset[Origin] = frozenset(),
        ttl: float = 3600.0,
        failure_ttl: float = 60.0,
        timeout: float = 5.0,
        max_entries: int = 50_000,
    ) -> None:
        self._outbound = outbound
        self._plc_url = plc_url
        self._trusted = trusted
        self._ttl = ttl
        self._failure_ttl = failure_ttl
        self._timeout = timeout
        self._max_entries = max_entries
        self._cache: OrderedDict[str, tuple[float, Origin | ResolveError]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[Origin | ResolveError]] = {}

    async def pds(self, did: str) -> Origin:
        """The PDS origin of ``did``; raise :class:`ResolveError`."""
        cached = self._cache.get(did)
        if cached is not None and cached[0] > time.monotonic():
            self._cache.move_to_end(did)
            return self._unwrap(cached[1])
        pending = self._pending.get(did)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup(did))
            self._pending[did] = pending
            pending.add_done_callback(lambda done: self._forget(did, done))
        # shield: one caller going away must not cancel the lookup the others wait on.
        return self._unwrap(await asyncio.shield(pending))

    def _forget(self, did: str, done: asyncio.Future[Origin | ResolveError]) -> None:
        if self._pending.get(did) is done:
            del self._pending[did]

    @staticmethod
    def _unwrap(answer: Origin | ResolveError) -> Origin:
        if isinstance(answer, ResolveError):
            raise answer
        return answer

    async def _lookup(self, did: str) -> Origin | ResolveError:
        answer: Origin | ResolveError
        try:
            answer = await self._resolve(did)
            expires = time.monotonic() + self._ttl
        except ResolveError as err:
            answer = err
            # A directory that was down is asked again soon; a bad document waits out failure_ttl.
            expires = time.monotonic() + (min(self._failure_ttl, 5.0) if err.retriable else self._failure_ttl)
        self._cache[did] = (expires, answer)
        self._cache.move_to_end(did)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
        return answer

    async def _resolve(self, did: str) -> Origin:
        allow_private = self._outbound.allow_private
        url, guarded = document_url(did, self._plc_url, allow_private=allow_private)
        try:
            body = await self._outbound.get_bytes(
                url, guarded=guarded, max_bytes=_MAX_DOCUMENT, time_limit=self._timeout
            )
        except FetchError as err:
            raise ResolveError(_problem_of(err), str(err)) from err
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as err:
            raise ResolveError(ResolveProblem.BAD_DOCUMENT, "not JSON") from err
        origin = pds_origin(did, document, allow_private=allow_private, trusted=self._trusted)
        if origin not in self._trusted:
            # The origin's name passed; its addresses must too, since a browser is sent there.
            try:
                await self._outbound.require_public(origin.host, time_limit=self._timeout)
            except FetchError as err:
                raise ResolveError(_problem_of(err), str(err)) from err
        return origin
