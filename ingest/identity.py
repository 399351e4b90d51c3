"""Identity resolution (I/O): DID documents and handles, cached, behind :class:`IdentityResolver`.

Spec: atproto.com/specs/did, atproto.com/specs/handle.

- DID documents: ``did:plc`` from the configured PLC directory (operator config: the trusted
  session), ``did:web`` from ``https://<host>/.well-known/did.json`` (an untrusted host: the guarded
  session of :mod:`runtime.outbound`, so no private addresses, bounded size and time). What a
  document says is read by :mod:`schemas.diddoc`.
- Handles → DID: DNS TXT ``_atproto.<handle>`` with exactly one ``did=<did>`` value (dnspython's
  async resolver; the nameservers can be overridden for tests and private deployments), else
  ``GET https://<handle>/.well-known/atproto-did`` on the guarded session (first line of the body).
- :meth:`AtprotoIdentityResolver.verify_identity`: a handle is valid only if the DID document claims
  it (first ``at://`` alias) *and* it resolves back to the same DID; anything else is shown as
  invalid (atproto's ``handle.invalid``). The handle of a frame is never trusted. The PDS origin (safe
  to contact) and the signing key come from the DID document.
- Answers are cached (:class:`~ingest.lookup_cache.LookupCache`): bounded LRU, TTL, failures for a
  shorter time, one lookup shared by concurrent callers. :meth:`invalidate` (on ``#identity``) drops a
  DID's document and its handle's answer; a handle answer older than the document that claims it is
  not used.
- With private hosts allowed (local development and tests), well-known URLs use plain http, as the
  reference PDS serves on loopback without TLS.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.resolver

from ingest.errors import HandleProblem, IdentityError, IdentityProblem, IdentityUnavailableError
from ingest.lookup_cache import Cached, LookupCache, unwrap
from runtime.logging import get_logger
from runtime.outbound import FetchError, FetchProblem, Outbound
from runtime.urls import UnsafeUrl, service_origin
from schemas.diddoc import DidDocError, DidDocument, document_url, load_did_document
from schemas.ids import is_did, is_handle

log = get_logger("ingest.identity")

_MAX_DOCUMENT = 64 * 1024
# A DID is at most 2 KB (atproto.com/specs/did); the body may carry a newline and some slack.
_MAX_WELL_KNOWN = 4 * 1024
# Names that never resolve publicly; atproto says not to look them up (specs/handle, "Additional
# Non-Syntax Restrictions"). ".test" stays allowed: tests and local development use it.
_RESERVED_TLDS = frozenset({"alt", "arpa", "example", "internal", "invalid", "local", "localhost", "onion"})


@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    """What a DID's identity is now, from its DID document and its handle's resolution."""

    did: str
    # The handle the DID document claims (lower case), valid or not; None when it claims none.
    handle: str | None
    handle_valid: bool
    # Why the handle is not valid; None when it is.
    handle_problem: HandleProblem | None
    # The PDS origin, checked safe to contact; None when the document names none (or an unsafe one).
    pds: str | None
    # The #atproto Multikey as a multibase string; None when the document has none.
    signing_key: str | None


class IdentityResolver(Protocol):
    """DID documents and handles; raises :class:`~ingest.errors.IdentityError`."""

    async def resolve_did(self, did: str) -> DidDocument:
        """The document of ``did``."""
        ...

    async def resolve_handle(self, handle: str) -> str | None:
        """The DID ``handle`` names, or None when it names none."""
        ...

    async def verify_identity(self, did: str) -> VerifiedIdentity:
        """The document's facts, with the handle valid only if it resolves back to ``did``."""
        ...

    def invalidate(self, did: str) -> None:
        """Forget what is cached about ``did`` (its identity changed)."""
        ...


def dns_resolver(nameservers: Sequence[tuple[str, int]] = ()) -> dns.asyncresolver.Resolver:
    """The DNS resolver: the system's (``/etc/resolv.conf``), or exactly ``nameservers``."""
    if nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port) for host, port in nameservers]
        return resolver
    try:
        return dns.asyncresolver.Resolver()
    except dns.resolver.NoResolverConfiguration:
        # No nameserver configured: every TXT lookup fails as unavailable and HTTPS still works.
        log.warning("dns_not_configured")
        return dns.asyncresolver.Resolver(configure=False)


def _document_problem(err: FetchError) -> IdentityError:
    if err.retriable:
        return IdentityUnavailableError(str(err))
    if err.problem in (FetchProblem.UNSAFE_URL, FetchProblem.PRIVATE_ADDRESS):
        return IdentityError(IdentityProblem.UNSUPPORTED_DID, str(err))
    if err.problem is FetchProblem.STATUS:
        return IdentityError(IdentityProblem.NOT_FOUND, str(err))
    return IdentityError(IdentityProblem.BAD_DOCUMENT, str(err))


def resolvable_handle(handle: str) -> bool:
    """Whether ``handle`` (lower case) may be looked up at all: valid syntax, not a reserved name."""
    return is_handle(handle) and handle.rsplit(".", 1)[-1] not in _RESERVED_TLDS


def well_known_did(body: bytes) -> str | None:
    """The DID a ``/.well-known/atproto-did`` body names: its first line, trimmed."""
    first = body.decode("utf-8", errors="replace").split("\n", 1)[0].strip()
    return first if is_did(first) else None


def txt_did(values: Sequence[bytes]) -> str | None:
    """The DID named by ``_atproto`` TXT values: exactly one ``did=`` value must name a DID, or none counts."""
    dids = {value[4:].decode("ascii", errors="replace") for value in values if value.startswith(b"did=")}
    if len(dids) != 1:
        return None
    did = dids.pop()
    return did if is_did(did) else None


class AtprotoIdentityResolver:
    """The resolver on the network; an async context manager whose close cancels lookups in flight."""

    def __init__(
        self,
        outbound: Outbound,
        dns: dns.asyncresolver.Resolver,
        *,
        plc_url: str,
        max_entries: int = 100_000,
        ttl: float = 3600.0,
        failure_ttl: float = 60.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._outbound = outbound
        self._dns = dns
        self._plc_url = plc_url
        self._timeout = timeout
        self._documents: LookupCache[str, DidDocument] = LookupCache(
            max_entries=max_entries, ttl=ttl, failure_ttl=failure_ttl, clock=clock
        )
        self._handles: LookupCache[str, str | None] = LookupCache(
            max_entries=max_entries, ttl=ttl, failure_ttl=failure_ttl, clock=clock
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Cancel the lookups in flight (idempotent)."""
        self._documents.cancel_pending()
        self._handles.cancel_pending()

    async def resolve_did(self, did: str) -> DidDocument:
        """The document of ``did``, cached; raise :class:`~ingest.errors.IdentityError`."""
        return unwrap(await self._documents.get(did, lambda: self._fetch_document(did)))

    async def resolve_handle(self, handle: str) -> str | None:
        """The DID ``handle`` names (DNS TXT, then HTTPS), cached; None when it names none.

        Raises :class:`~ingest.errors.IdentityUnavailableError` when neither method answered."""
        return unwrap(await self._handle_entry(handle.lower(), None))

    async def verify_identity(self, did: str) -> VerifiedIdentity:
        """The identity of ``did``; raise :class:`~ingest.errors.IdentityError` without a document."""
        entry = await self._documents.get(did, lambda: self._fetch_document(did))
        document = unwrap(entry)
        problem = await self._check_handle(document, not_before=entry.started)
        return VerifiedIdentity(
            did=did,
            handle=document.handle,
            handle_valid=problem is None,
            handle_problem=problem,
            pds=self._pds(document),
            signing_key=document.signing_key,
        )

    def invalidate(self, did: str) -> None:
        """Forget the document of ``did`` and the answer for the handle it claimed."""
        document = self._documents.peek(did)
        self._documents.invalidate(did)
        if document is not None and document.handle is not None:
            self._handles.invalidate(document.handle)

    async def _check_handle(self, document: DidDocument, *, not_before: float) -> HandleProblem | None:
        handle = document.handle
        if handle is None:
            return HandleProblem.NONE_CLAIMED
        if not resolvable_handle(handle):
            return HandleProblem.NOT_RESOLVABLE
        try:
            named = unwrap(await self._handle_entry(handle, not_before))
        except IdentityUnavailableError:
            return HandleProblem.UNAVAILABLE
        if named is None:
            return HandleProblem.NO_RECORD
        return None if named == document.did else HandleProblem.OTHER_DID

    async def _handle_entry(self, handle: str, not_before: float | None) -> Cached[str | None]:
        return await self._handles.get(handle, lambda: self._lookup_handle(handle), not_before=not_before)

    def _pds(self, document: DidDocument) -> str | None:
        if document.pds is None:
            return None
        try:
            return str(service_origin(document.pds, allow_private=self._outbound.allow_private))
        except UnsafeUrl as err:
            log.debug("pds_endpoint_refused", did=document.did, problem=err.problem.value)
            return None

    async def _fetch_document(self, did: str) -> DidDocument:
        try:
            url, guarded = document_url(did, self._plc_url, allow_private=self._outbound.allow_private)
        except DidDocError as err:
            raise IdentityError(IdentityProblem.UNSUPPORTED_DID, str(err)) from err
        try:
            body = await self._outbound.get_bytes(
                url, guarded=guarded, max_bytes=_MAX_DOCUMENT, time_limit=self._timeout
            )
        except FetchError as err:
            raise _document_problem(err) from err
        try:
            return load_did_document(did, body)
        except DidDocError as err:
            raise IdentityError(IdentityProblem.BAD_DOCUMENT, str(err)) from err

    async def _lookup_handle(self, handle: str) -> str | None:
        if not resolvable_handle(handle):
            return None
        by_dns, dns_answered = await self._dns_did(handle)
        if by_dns is not None:
            return by_dns
        by_https, https_answered = await self._https_did(handle)
        if by_https is not None:
            return by_https
        if not (dns_answered and https_answered):
            # One method could not be asked: the handle may still be valid through it.
            raise IdentityUnavailableError(f"{handle}: DNS answered {dns_answered}, HTTPS answered {https_answered}")
        return None

    async def _dns_did(self, handle: str) -> tuple[str | None, bool]:
        """(the DID from DNS TXT, whether DNS answered at all)."""
        try:
            answer = await self._dns.resolve(f"_atproto.{handle}", "TXT", lifetime=self._timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.name.NameTooLong):
            return None, True
        except dns.exception.DNSException as err:
            log.debug("handle_dns_failed", handle=handle, error=type(err).__name__)
            return None, False
        values = [b"".join(rdata.strings) for rdata in answer if hasattr(rdata, "strings")]
        return txt_did(values), True

    async def _https_did(self, handle: str) -> tuple[str | None, bool]:
        """(the DID from the well-known URL, whether the host answered at all)."""
        scheme = "http" if self._outbound.allow_private else "https"
        try:
            body = await self._outbound.get_bytes(
                f"{scheme}://{handle}/.well-known/atproto-did",
                guarded=True,
                max_bytes=_MAX_WELL_KNOWN,
                time_limit=self._timeout,
            )
        except FetchError as err:
            log.debug("handle_https_failed", handle=handle, problem=err.problem.value)
            return None, not err.retriable
        return well_known_did(body), True
