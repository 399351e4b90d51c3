"""Backpressure for the public API: a bound on requests in flight and a deadline on each, so an
overloaded replica or a slow or unreachable database gives clients a fast, clear 503 instead of a
queue that grows until they time out.

- **In flight.** At most ``max_in_flight`` requests are being answered at once; one more is refused at
  once with 503 ``Unavailable`` and ``Retry-After: 1``, before it costs a query. Past that bound every
  extra request would only wait for a pooled connection behind the others and miss its deadline.
- **Deadline.** A request not answered within ``seconds`` (waiting for a pooled connection included)
  is cancelled and answered 503 ``Unavailable``. Postgres' own ``statement_timeout`` (set on the
  API's sessions by :func:`api.app.open_pool`) usually ends a slow statement first, on the server;
  this bound also covers the waits Postgres cannot see (the pool, a connect to a host that is down).
- **Database errors.** :data:`UNAVAILABLE_ERRORS` are what asyncpg raises when the database cannot
  answer now (connection refused or lost, statement cancelled by the timeout, too many connections,
  shutting down); the app answers them 503, never 500.

A plain ASGI middleware (see :class:`api.app.RouteMetrics` for why). Health, readiness, metrics and
the admin API (whose broker waits have their own bounds, api/admin.py) pass through; WebSockets too.
Refusals are counted in ``plyr_api_shed_total`` by reason (``in_flight``, ``deadline``).
"""

from __future__ import annotations

import asyncio

import asyncpg
import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.xrpc import ADMIN_NAMESPACE

_EXEMPT = frozenset({"/health", "/ready", "/metrics"})
_ADMIN = f"/xrpc/{ADMIN_NAMESPACE}"
RETRY_AFTER = "1"

# The database cannot answer now: trying again later may succeed (api/app.py answers these 503).
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.QueryCanceledError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InsufficientResourcesError,
    OSError,
    TimeoutError,
)


def unavailable(message: str) -> list[Message]:
    """The messages of a 503 ``Unavailable`` XRPC error with ``Retry-After``."""
    body = orjson.dumps({"error": "Unavailable", "message": message})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", RETRY_AFTER.encode()),
    ]
    return [
        {"type": "http.response.start", "status": 503, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]


class Backpressure:
    """The ASGI middleware bounding requests in flight and the time each may take."""

    def __init__(self, app: ASGIApp, *, seconds: float, max_in_flight: int, registry: CollectorRegistry) -> None:
        self.app = app
        self._seconds = seconds
        self._max = max_in_flight
        self._in_flight = 0
        self.shed = Counter(
            "plyr_api_shed", "Requests answered 503 by backpressure, by why", ["reason"], registry=registry
        )
        self.gauge = Gauge("plyr_api_in_flight", "Requests being answered now", registry=registry)
        self.gauge.set_function(lambda: self._in_flight)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in _EXEMPT or path.startswith(_ADMIN):
            await self.app(scope, receive, send)
            return
        if self._in_flight >= self._max:
            self.shed.labels("in_flight").inc()
            for message in unavailable(f"over {self._max} requests in flight; try again shortly"):
                await send(message)
            return
        started = False

        async def observe(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        self._in_flight += 1
        try:
            async with asyncio.timeout(self._seconds) as deadline:
                await self.app(scope, receive, observe)
        except TimeoutError:
            if not deadline.expired():
                raise
            self.shed.labels("deadline").inc()
            if not started:  # a response already begun cannot be replaced; the server closes it
                for message in unavailable(f"not answered within {self._seconds:g} s; try again shortly"):
                    await send(message)
        finally:
            self._in_flight -= 1
