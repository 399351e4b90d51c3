"""Composition root of the read API: the pool, the XRPC queries, live events, health, metrics, CORS.

Errors leave as XRPC errors (status plus ``{"error", "message"}``); anything unexpected is logged and
answered 500 ``InternalServerError`` without internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import live, status, stream
from api.admin import AdminApi
from api.backpressure import RETRY_AFTER, UNAVAILABLE_ERRORS, Backpressure
from api.cache import SharedAnswers
from api.errors import XrpcError
from api.limits import RequestLimits
from api.queries import register_all
from api.responses import json_response
from api.search_words import SearchWords
from api.settings import ApiSettings
from runtime.logging import get_logger
from runtime.settings import PlatformSettings
from schemas.migrate import quote_schema

log = get_logger("api")
# FastAPI's native OpenTelemetry layer (newer FastAPI only): off, metrics are Prometheus' (RouteMetrics).
# With no provider configured it still asked the global providers on every request.
_NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}}
    if importlib.util.find_spec("fastapi.telemetry") is not None
    else {}
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(
            kind, encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to undo when a connection goes back to the pool: the API's reads never change session
    state (no SET, LISTEN, advisory lock or cursor outside a transaction), and asyncpg still rolls back
    an open transaction first. Its default reset is a round trip per request (``RESET ALL``,
    ``UNLISTEN *``, ...), which cost about a fifth of the API process's time under load."""


def open_pool(database_url: str, settings: ApiSettings, *, lazy: bool = False) -> asyncpg.Pool:
    """A pool reading ``settings.schema_name`` (pg_trgm's functions live in public). ``lazy``: no
    connection is opened until a request needs one (the database was unreachable at startup)."""
    return asyncpg.create_pool(
        database_url,
        min_size=0 if lazy else settings.pool_min,
        max_size=settings.pool_max,
        init=_init_connection,
        # A host that is down must not hold a request for asyncpg's default minute.
        timeout=settings.request_timeout_seconds,
        reset=_keep_session,
        # Short reads: no JIT, and no parallel workers (on a busy server they multiply CPU per query).
        # Postgres itself ends a statement that runs (or waits for a lock) past the timeout.
        server_settings={
            "search_path": f"{quote_schema(settings.schema_name)}, public",
            "jit": "off",
            "max_parallel_workers_per_gather": "0",
            "statement_timeout": str(max(1, round(settings.statement_timeout_seconds * 1000))),
        },
    )


async def _first_pool(database_url: str, settings: ApiSettings) -> asyncpg.Pool:
    """The pool; when the database cannot be reached at startup the API still starts, lazily
    connected, answering 503 and not ready until it can (a wrong password still stops startup)."""
    try:
        pool: asyncpg.Pool = await open_pool(database_url, settings)
    except UNAVAILABLE_ERRORS as err:
        log.warning("api_database_unreachable", error=type(err).__name__)
        pool = await open_pool(database_url, settings, lazy=True)
    return pool


class RouteMetrics:
    """Requests, latency and errors per route (the route's template, never the raw path).

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` costs a task and a stream per request,
    a large share of a sub-millisecond query's time.
    """

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter("plyr_api_requests", "Requests served", ["route", "status"], registry=registry)
        self.latency = Histogram(
            "plyr_api_request_seconds",
            "Time to answer",
            ["route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.errors = Counter("plyr_api_errors", "Responses with status >= 500", ["route"], registry=registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.requests.labels(route, str(status)).inc()
            self.latency.labels(route).observe(time.perf_counter() - start)
            if status >= 500:
                self.errors.labels(route).inc()


def create_app(
    database_url: str,
    settings: ApiSettings,
    registry: CollectorRegistry | None = None,
    *,
    platform: PlatformSettings | None = None,
) -> FastAPI:
    """The FastAPI app; the pool opens with the app's lifespan. With ``settings.admin_token`` the admin
    API is served too, and ``platform`` names its broker and topic."""
    registry = registry or CollectorRegistry()
    admin = None
    if settings.admin_token is not None:
        if platform is None:
            raise ValueError("the admin API needs the platform settings (broker and events topic)")
        admin = AdminApi(settings.admin_token.get_secret_value(), settings, platform, registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with await _first_pool(database_url, settings) as pool, contextlib.AsyncExitStack() as stack:
            app.state.pool = pool
            if admin is not None:
                await stack.enter_async_context(admin.producer)
            await stack.enter_async_context(
                SearchWords(
                    database_url,
                    settings.schema_name,
                    settings.search_words_refresh_seconds,
                    startup_wait=settings.request_timeout_seconds,
                )
            )
            # Everything built at startup (the app, its routes, the lexicons, the pool) lives as long as
            # the process: frozen out of the collector, a full collection no longer walks it (tens of
            # milliseconds, landing on whichever request allocated last).
            gc.collect()
            gc.freeze()
            log.info("api_start", schema=settings.schema_name, admin=admin is not None)
            try:
                yield
            finally:
                await app.state.feed_answers.aclose()
                await app.state.search_answers.aclose()

    app = FastAPI(
        title="plyr-index",
        description="The music index of the AT Protocol network: fm.plyr.* over XRPC.",
        version="1",
        lifespan=lifespan,
        **_NO_TELEMETRY,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.stream_redirects = stream.stream_metrics(registry)
    # At most 256 feed pages of up to 100 tracks (some 25 MB) and 2,000 search pages (24 KB each at
    # the default 50 results in the benchmark's mix: some 50 MB; about 100 MB if every page held 100). A
    # page asked often is put again each time it is recomputed, so it stays unless more than that many
    # others are asked in between. A page recomputed in the background gets the time a request would
    # have, and such computations take at most half the pool between them.
    timeout, most = settings.request_timeout_seconds, max(1, settings.pool_max // 2)
    app.state.feed_answers = SharedAnswers[tuple[object, ...], tuple[bytes, str]](
        settings.feed_cache_seconds, 256, refresh_timeout=timeout, max_refreshing=most
    )
    app.state.search_answers = SharedAnswers[tuple[object, ...], tuple[bytes, str]](
        settings.search_cache_seconds, 2_000, refresh_timeout=timeout, max_refreshing=most
    )
    # Innermost: a request the limits refused costs no slot in flight.
    app.add_middleware(
        Backpressure,
        seconds=settings.request_timeout_seconds,
        max_in_flight=settings.max_in_flight,
        registry=registry,
    )
    # Inside RouteMetrics (added first): a refused request is counted there too, as unmatched (it is
    # refused before routing), and by reason in plyr_api_limited.
    app.add_middleware(
        RequestLimits,
        rate=settings.rate_limit_per_second,
        burst=settings.rate_limit_burst,
        max_query_bytes=settings.max_query_bytes,
        max_body_bytes=settings.max_body_bytes,
        registry=registry,
    )
    app.add_middleware(RouteMetrics, registry=registry)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "HEAD", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=["ETag", "Location"],
            max_age=600,
        )

    @app.exception_handler(XrpcError)
    async def xrpc_error(request: Request, err: XrpcError) -> Response:
        return json_response(err.body(), err.status, err.headers)

    async def database_unavailable(request: Request, err: Exception) -> Response:
        log.warning("api_database_unavailable", path=request.url.path, error=type(err).__name__)
        body = {"error": "Unavailable", "message": f"the database cannot answer now ({type(err).__name__})"}
        return json_response(body, 503, {"Retry-After": RETRY_AFTER})

    for kind in UNAVAILABLE_ERRORS:
        app.add_exception_handler(kind, database_unavailable)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> Response:
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return json_response({"error": "InvalidRequest", "message": f"{where}: {first.get('msg', 'invalid')}"}, 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> Response:
        if err.status_code == 404 and request.url.path.startswith("/xrpc/"):
            return json_response({"error": "MethodNotImplemented", "message": "no such method"}, 501)
        name = "NotFound" if err.status_code == 404 else "InvalidRequest"
        return json_response({"error": name, "message": str(err.detail)}, err.status_code)

    @app.exception_handler(Exception)
    async def crash(request: Request, err: Exception) -> Response:
        log.exception("api_error", path=request.url.path)
        return json_response({"error": "InternalServerError", "message": "internal error"}, 500)

    router = APIRouter()
    register_all(router)
    app.include_router(router)
    app.include_router(live.router)
    app.include_router(stream.router)
    if admin is not None:
        app.include_router(admin.router)
    _add_operational(app, registry, settings)
    return app


def _add_operational(app: FastAPI, registry: CollectorRegistry, settings: ApiSettings) -> None:
    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/ready", include_in_schema=False)
    async def ready(request: Request) -> Response:
        """Ready when the database answers and a projector beat recently with a lag under the limit."""
        try:
            async with asyncio.timeout(settings.request_timeout_seconds):
                code, body = await status.readiness(
                    request.app.state.pool, settings.schema_name, settings.ready_max_lag_seconds
                )
        except UNAVAILABLE_ERRORS as err:
            code, body = 503, {"status": "unavailable", "reason": f"database: {type(err).__name__}"}
        return json_response(body, code)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
