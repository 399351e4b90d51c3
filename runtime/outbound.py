"""Outbound HTTP for hosts named by untrusted data (did:web hosts, handles, PDS endpoints), and for
the operator's own upstreams (the PLC directory).

Two aiohttp sessions:
- ``trusted``: hosts from settings; no redirects followed.
- ``guarded``: every URL, including each redirect target, passes :func:`runtime.urls.outbound_url`
  before it is requested, and DNS answers are filtered to public addresses, so a public name that
  resolves to 10.0.0.1 or 127.0.0.1 is refused too (SSRF). ``allow_private`` (local development
  and tests) turns both checks off; a ``dns`` resolver given is still used for the guarded session.

Every fetch has a deadline and a byte limit enforced while reading, so a slow or endless upstream
costs at most that. Failures come out as :class:`FetchError` with a closed :class:`FetchProblem`
that says whether trying again later can help; a non-2xx answer also carries its ``Retry-After``
(seconds, from either header form) and the first KB of its body (an XRPC ``{"error": ...}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from enum import StrEnum
from types import TracebackType
from typing import Self
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from runtime.urls import UnsafeUrl, UrlProblem, is_public_ip, outbound_url

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
_CHUNK = 64 * 1024
# How much of a non-2xx body is kept for the caller (an XRPC error body is a few dozen bytes).
_ERROR_BODY = 1024


class FetchProblem(StrEnum):
    """Why a fetch failed (closed set: log field and metric label)."""

    UNSAFE_URL = "unsafe_url"
    PRIVATE_ADDRESS = "private_address"
    STATUS = "status"
    TOO_LARGE = "too_large"
    TIMEOUT = "timeout"
    NETWORK = "network"
    REDIRECTS = "redirects"


class FetchError(Exception):
    """A fetch that did not give the body; ``retriable`` says whether a later attempt may succeed."""

    def __init__(
        self,
        problem: FetchProblem,
        detail: str,
        status: int | None = None,
        *,
        retry_after: float | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(f"{problem}: {detail}")
        self.problem = problem
        self.status = status
        # Seconds the server asked us to wait (Retry-After on a 429 or 503); None when it did not say.
        self.retry_after = retry_after
        # The start of a non-2xx answer's body, at most 1 KB.
        self.body = body

    @property
    def retriable(self) -> bool:
        """Timeouts, network errors, 5xx and 429 may pass later; the rest will not."""
        if self.problem is FetchProblem.STATUS:
            return self.status is not None and (self.status >= 500 or self.status == 429)
        return self.problem in (FetchProblem.TIMEOUT, FetchProblem.NETWORK)


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """A ``Retry-After`` header as seconds from now (delta-seconds or an HTTP date); None if absent or
    unreadable. A date in the past is 0."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


class PrivateAddressError(OSError):
    """A name resolved only to addresses that are not public."""


class PublicOnlyResolver(AbstractResolver):
    """DNS answers limited to public unicast addresses."""

    def __init__(self, inner: AbstractResolver) -> None:
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The public addresses of ``host``; raise :class:`PrivateAddressError` if there are none."""
        answers = await self._inner.resolve(host, port, family)
        public = [a for a in answers if is_public_ip(ipaddress.ip_address(a["host"]))]
        if not public:
            raise PrivateAddressError(f"{host} resolves to no public address")
        return public

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._inner.close()


class Outbound:
    """The two sessions; an async context manager, closed once."""

    def __init__(
        self, *, allow_private: bool, user_agent: str = "plyr-index", dns: AbstractResolver | None = None
    ) -> None:
        self.allow_private = allow_private
        self._dns = dns
        self._user_agent = user_agent
        self._trusted: aiohttp.ClientSession | None = None
        self._guarded: aiohttp.ClientSession | None = None
        self._closed = False

    async def __aenter__(self) -> Self:
        if self._closed or self._trusted is not None:
            raise RuntimeError("Outbound can be entered once")
        headers = {"User-Agent": self._user_agent}
        self._trusted = aiohttp.ClientSession(headers=headers)
        # Allowing private hosts drops the public-only filter, not a resolver the caller chose (a test
        # pointing names at its loopback server).
        resolver = self._dns if self.allow_private else PublicOnlyResolver(self._dns or DefaultResolver())
        self._guarded = aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver), headers=headers)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def require_public(self, host: str, *, time_limit: float = 5.0) -> None:
        """Check that every address ``host`` resolves to is public (skipped when private hosts are
        allowed). For a URL that someone else will fetch, such as a redirect a browser follows, where
        the guarded session's resolver cannot stand between: one private answer is enough to refuse.
        Raises :class:`FetchError` (``private_address``, or ``network``/``timeout`` when DNS fails)."""
        if self.allow_private:
            return
        with contextlib.suppress(ValueError):
            if not is_public_ip(ipaddress.ip_address(host.strip("[]"))):
                raise FetchError(FetchProblem.PRIVATE_ADDRESS, f"{host} is not a public address")
            return
        resolver = self._dns or DefaultResolver()
        try:
            async with asyncio.timeout(time_limit):
                answers = await resolver.resolve(host, 443, socket.AF_UNSPEC)
        except TimeoutError as err:
            raise FetchError(FetchProblem.TIMEOUT, f"resolving {host} took over {time_limit}s") from err
        except OSError as err:
            raise FetchError(FetchProblem.NETWORK, f"cannot resolve {host}: {err}") from err
        finally:
            if self._dns is None:
                await resolver.close()
        private = sorted({a["host"] for a in answers if not is_public_ip(ipaddress.ip_address(a["host"]))})
        if private or not answers:
            raise FetchError(FetchProblem.PRIVATE_ADDRESS, f"{host} resolves to {', '.join(private) or 'nothing'}")

    async def aclose(self) -> None:
        """Close both sessions (idempotent)."""
        self._closed = True
        for session in (self._trusted, self._guarded):
            if session is not None:
                await session.close()
        self._trusted = self._guarded = None

    async def get_bytes(self, url: str, *, guarded: bool, max_bytes: int, time_limit: float) -> bytes:
        """The body of a 2xx GET of ``url``, at most ``max_bytes``."""
        body = bytearray()
        await self.fetch(url, guarded=guarded, max_bytes=max_bytes, time_limit=time_limit, sink=body.extend)
        return bytes(body)

    async def fetch(
        self, url: str, *, guarded: bool, max_bytes: int, time_limit: float, sink: Callable[[bytes], None]
    ) -> int:
        """GET ``url`` and feed the body to ``sink`` chunk by chunk; returns the byte count.

        Raises :class:`FetchError`; a partial body may have reached ``sink`` before a failure."""
        session = self._guarded if guarded else self._trusted
        if session is None:
            raise RuntimeError("Outbound is not open")
        try:
            async with asyncio.timeout(time_limit):
                return await self._follow(session, url, guarded, max_bytes, sink)
        except TimeoutError:
            raise FetchError(FetchProblem.TIMEOUT, f"no complete answer within {time_limit}s") from None
        except aiohttp.ClientConnectorError as err:
            if isinstance(err.os_error, PrivateAddressError):
                raise FetchError(FetchProblem.PRIVATE_ADDRESS, str(err.os_error)) from err
            raise FetchError(FetchProblem.NETWORK, type(err).__name__) from err
        except (aiohttp.ClientError, OSError) as err:
            raise FetchError(FetchProblem.NETWORK, type(err).__name__) from err

    async def _follow(
        self, session: aiohttp.ClientSession, url: str, guarded: bool, max_bytes: int, sink: Callable[[bytes], None]
    ) -> int:
        current = url
        for _ in range(_MAX_REDIRECTS + 1):
            if guarded:
                current = self._check(current)
            async with session.get(current, allow_redirects=False) as resp:
                if resp.status in _REDIRECTS and guarded:
                    location = resp.headers.get("Location")
                    if not location:
                        raise FetchError(FetchProblem.STATUS, "redirect without Location", resp.status)
                    current = urljoin(current, location)
                    continue
                if not 200 <= resp.status < 300:
                    raise FetchError(
                        FetchProblem.STATUS,
                        f"HTTP {resp.status}",
                        resp.status,
                        retry_after=retry_after_seconds(resp.headers.get("Retry-After")),
                        body=await resp.content.read(_ERROR_BODY),
                    )
                if resp.content_length is not None and resp.content_length > max_bytes:
                    raise FetchError(FetchProblem.TOO_LARGE, f"Content-Length {resp.content_length} > {max_bytes}")
                size = 0
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise FetchError(FetchProblem.TOO_LARGE, f"body over {max_bytes} bytes")
                    sink(chunk)
                return size
        raise FetchError(FetchProblem.REDIRECTS, f"more than {_MAX_REDIRECTS} redirects")

    def _check(self, url: str) -> str:
        try:
            return str(outbound_url(url, allow_private=self.allow_private))
        except UnsafeUrl as err:
            problem = FetchProblem.PRIVATE_ADDRESS if err.problem is UrlProblem.PRIVATE else FetchProblem.UNSAFE_URL
            raise FetchError(problem, str(err)) from err
