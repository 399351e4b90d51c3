"""Per-client request limits for the public API: a rate per address, and bounds on what a request may
carry. A plain ASGI middleware (see :class:`api.app.RouteMetrics` for why not BaseHTTPMiddleware).

- **Rate.** A token bucket per client address (``rate`` requests a second, bursts up to ``burst``).
  A client over it gets 429 ``RateLimitExceeded`` with ``Retry-After``, before any query runs. The
  buckets live in a bounded LRU, so a flood of addresses cannot grow memory: an evicted client starts
  again with a full bucket. Behind a proxy the address is the one the server was told to trust
  (uvicorn's ``--forwarded-allow-ips``); health, readiness and metrics are never limited.
- **Size.** A query string over ``max_query_bytes`` gets 414; a body declared or streamed over
  ``max_body_bytes`` gets 413 (the reads take no body; the admin procedures take small JSON).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

import orjson
from prometheus_client import CollectorRegistry, Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import PayloadTooLarge

_EXEMPT = frozenset({"/health", "/ready", "/metrics"})


class _Bucket:
    __slots__ = ("at", "tokens")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at


class RateLimiter:
    """Token buckets per key (pure: the clock is passed in)."""

    def __init__(self, rate: float, burst: int, max_clients: int = 100_000) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._max = max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """Spend one token of ``key``: 0 when allowed, else the seconds until one is there."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self._burst, now)
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.at) * self._rate)
            bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self._rate


def _error(status: int, error: str, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> list[Message]:
    body = orjson.dumps({"error": error, "message": message})
    return [
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        },
        {"type": "http.response.body", "body": body},
    ]


class RequestLimits:
    """The ASGI middleware applying the rate and size limits (``rate`` 0: no rate limit)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        rate: float,
        burst: int,
        max_query_bytes: int,
        max_body_bytes: int,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self._limiter = RateLimiter(rate, burst) if rate > 0 else None
        self._max_query = max_query_bytes
        self._max_body = max_body_bytes
        self._clock = clock
        self.refused = Counter(
            "plyr_api_limited", "Requests refused by a limit, by which", ["limit"], registry=registry
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _EXEMPT:
            await self.app(scope, receive, send)
            return
        refusal = self._refuse(scope)
        if refusal is not None:
            for message in refusal:
                await send(message)
            return
        await self.app(scope, self._bounded(receive), send)

    def _refuse(self, scope: Scope) -> list[Message] | None:
        if len(scope.get("query_string", b"")) > self._max_query:
            self.refused.labels("query_size").inc()
            return _error(414, "InvalidRequest", f"query string over {self._max_query} bytes")
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self._max_body:
                self.refused.labels("body_size").inc()
                return _error(413, "PayloadTooLarge", f"request body over {self._max_body} bytes")
        if self._limiter is not None:
            client = scope.get("client")
            wait = self._limiter.take(client[0] if client else "unknown", self._clock())
            if wait > 0:
                self.refused.labels("rate").inc()
                retry = str(max(1, math.ceil(wait))).encode()
                return _error(
                    429, "RateLimitExceeded", "too many requests from this address", ((b"retry-after", retry),)
                )
        return None

    def _bounded(self, receive: Receive) -> Receive:
        """``receive`` that refuses a body streamed past the limit (no content-length, or a lying one):
        the error reaches the app's XRPC error handler as a 413."""
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self._max_body:
                    self.refused.labels("body_size").inc()
                    raise PayloadTooLarge(f"request body over {self._max_body} bytes")
            return message

        return bounded
