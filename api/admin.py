"""The admin API: operators' XRPC methods (``fm.plyr.index.admin.*``), mounted only when ``API_ADMIN_TOKEN``
is set (:func:`api.app.create_app`).

- Auth: ``Authorization: Bearer <token>``, compared in constant time (the SHA-256 digests of both, with
  :func:`hmac.compare_digest`, so neither the content nor the length leaks through timing). An address
  with :data:`MAX_FAILURES` failed attempts in the last :data:`FAILURE_WINDOW_S` seconds is answered
  429 with ``Retry-After`` without looking at what it sent, until the oldest failure ages out: a
  token cannot be guessed faster than that. Failures are counted by reason
  (``plyr_api_admin_auth_failures_total``).
- ``takedownRepo`` / ``restoreRepo`` put an operator's moderation event on the log (keyed by the DID,
  like everything else), so the projector applies it in order and a replay keeps it; the answer waits
  for the broker's acknowledgement and names where the event is.
- ``takedownRecord`` / ``restoreRecord`` do the same for one record (named by its AT-URI with the repo's
  DID): the projector holds its rows aside until the restore.
- ``requestBackfill`` / ``requestResync`` queue the repo in ``plyr_ingest.repos`` for the ingester's
  sync worker.
- ``listDeadLetters`` pages the dead letters; ``getStatus`` is what ``plyr-index status`` shows.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, Self

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPBearer
from prometheus_client import CollectorRegistry, Counter

from api import status
from api.cursor import decode, encode
from api.errors import AuthenticationRequired, InvalidRequest, RateLimitExceeded, Unavailable
from api.settings import ApiSettings
from api.xrpc import ADMIN_NAMESPACE, Params, add_procedure, add_query
from runtime.logging import get_logger
from runtime.settings import PlatformSettings
from schemas.codec import encode as encode_event
from schemas.envelope import ModerationAction, ModerationEvent, Source
from schemas.ids import parse_record_uri
from schemas.topics import key_for

log = get_logger("api.admin")

MAX_FAILURES = 5
FAILURE_WINDOW_S = 60.0
# Addresses tracked at once; beyond, the one failing longest ago is forgotten first.
MAX_TRACKED = 10_000

# The contract of ingest/repo_state.py (PostgresRepoStateStore.request) on plyr_ingest.repos
# (schemas/sql/ingest/0002_repos.sql): add the repo, or set its sync state and reason, and touch
# updated_at; the ingester's sync worker takes every row that is not synchronized, oldest first. Written
# here because the API may not import ingest.
_REQUEST_SYNC = (
    f"INSERT INTO {status.INGEST_SCHEMA}.repos (did, sync_state, reason) VALUES ($1, $2, $3)"
    " ON CONFLICT (did) DO UPDATE SET sync_state = EXCLUDED.sync_state, reason = EXCLUDED.reason, updated_at = now()"
)
# The admin methods' own answers, added to the OpenAPI operations.
_RESPONSES = {
    "401": {"description": "AuthenticationRequired: no bearer token, or a wrong one"},
    "429": {"description": "RateLimitExceeded: too many failed attempts from this address (Retry-After)"},
    "503": {"description": "Unavailable: the broker or the ingester's tables cannot be used"},
}


class AuthFailure(StrEnum):
    """Why an admin request was refused (closed: a metric label)."""

    MISSING = "missing_token"
    WRONG = "wrong_token"
    LIMITED = "rate_limited"


class FailureLimiter:
    """Failed attempts per client address in a sliding window (pure; the clock is injected)."""

    def __init__(
        self,
        limit: int = MAX_FAILURES,
        window: float = FAILURE_WINDOW_S,
        max_tracked: int = MAX_TRACKED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window = window
        self._max = max_tracked
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again, or None when it may now."""
        now = self._clock()
        times = self._recent(client, now)
        if times is None or len(times) < self._limit:
            return None
        return times[-self._limit] + self._window - now

    def failed(self, client: str) -> None:
        """Count a failed attempt of ``client``."""
        now = self._clock()
        times = self._recent(client, now) or deque(maxlen=self._limit)
        times.append(now)
        self._failures[client] = times
        self._failures.move_to_end(client)
        while len(self._failures) > self._max:
            self._failures.popitem(last=False)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class AdminAuth:
    """The dependency every admin route runs first: the bearer token, under the failure limit."""

    def __init__(self, token: str, failures: Counter, limiter: FailureLimiter | None = None) -> None:
        self._digest = _digest(token)
        self._failures = failures
        self._limiter = limiter or FailureLimiter()

    async def __call__(self, request: Request) -> None:
        client = request.client.host if request.client is not None else "unknown"
        wait = self._limiter.retry_after(client)
        if wait is not None:
            self._failures.labels(AuthFailure.LIMITED.value).inc()
            seconds = max(math.ceil(wait), 1)
            raise RateLimitExceeded(
                f"too many failed attempts; try again in {seconds} s", headers={"Retry-After": str(seconds)}
            )
        scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self._refuse(client, AuthFailure.MISSING, "a bearer token is required")
        if not hmac.compare_digest(_digest(token.strip()), self._digest):
            self._refuse(client, AuthFailure.WRONG, "the token is not valid")

    def _refuse(self, client: str, reason: AuthFailure, message: str) -> None:
        self._limiter.failed(client)
        self._failures.labels(reason.value).inc()
        log.warning("admin_auth_failed", client=client, reason=reason.value)
        raise AuthenticationRequired(message, headers={"WWW-Authenticate": 'Bearer realm="plyr-index admin"'})


class EventProducer:
    """A small producer of operators' events on the log (an async context manager).

    It starts with the app but does not hold the API up: if the broker cannot be reached then, it is
    started again on first use, and a broker that cannot take the event is a 503 for that request only.
    Idempotence only when ``PLYR_KAFKA_IDEMPOTENCE=true``: a repeated takedown is harmless.
    """

    def __init__(self, platform: PlatformSettings) -> None:
        self._platform = platform
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        try:
            await self._start(deadline=5)
        except Unavailable as err:
            log.warning("admin_producer_not_started", error=err.message)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def _start(self, deadline: float = 15) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is not None:
                return self._producer
            compression = self._platform.kafka_compression
            producer = AIOKafkaProducer(
                bootstrap_servers=self._platform.kafka_bootstrap,
                acks="all",
                enable_idempotence=self._platform.kafka_idempotence is True,
                compression_type=None if compression == "none" else compression,
                request_timeout_ms=10_000,
            )
            try:
                async with asyncio.timeout(deadline):
                    await producer.start()
            except (KafkaError, TimeoutError, OSError) as err:
                await producer.stop()
                raise Unavailable(f"the broker cannot be reached: {type(err).__name__}") from err
            self._producer = producer
            return producer

    async def send(self, event: ModerationEvent) -> tuple[int, int]:
        """Put ``event`` on the log; (partition, offset) once the broker acknowledged it."""
        producer = await self._start()
        try:
            async with asyncio.timeout(30):
                meta = await producer.send_and_wait(
                    self._platform.events_topic,
                    value=encode_event(event),
                    key=key_for(event.did),
                    headers=[("kind", event.kind.encode())],
                )
        except (KafkaError, TimeoutError) as err:
            raise Unavailable(f"the broker did not take the event: {type(err).__name__}") from err
        return int(meta.partition), int(meta.offset)


class AdminApi:
    """The admin routes, their auth and their producer, built by :func:`api.app.create_app`."""

    def __init__(self, token: str, settings: ApiSettings, platform: PlatformSettings, registry: CollectorRegistry):
        failures = Counter(
            "plyr_api_admin_auth_failures",
            "Admin API requests refused, by reason (missing_token, wrong_token, rate_limited)",
            ["reason"],
            registry=registry,
        )
        for reason in AuthFailure:
            failures.labels(reason.value)
        self.auth = AdminAuth(token, failures)
        self.producer = EventProducer(platform)
        self._settings = settings
        self._platform = platform
        self.router = APIRouter()
        deps = [Depends(self.auth), Depends(HTTPBearer(auto_error=False, scheme_name="adminToken"))]
        ns = ADMIN_NAMESPACE
        for name, action in (("takedownRepo", ModerationAction.TAKEDOWN), ("restoreRepo", ModerationAction.RESTORE)):
            add_procedure(self.router, ns + name, self._moderate(action), dependencies=deps, responses=_RESPONSES)
        for name, action in (
            ("takedownRecord", ModerationAction.TAKEDOWN),
            ("restoreRecord", ModerationAction.RESTORE),
        ):
            add_procedure(
                self.router, ns + name, self._moderate_record(action), dependencies=deps, responses=_RESPONSES
            )
        add_procedure(
            self.router, ns + "requestBackfill", self._queue("backfilling"), dependencies=deps, responses=_RESPONSES
        )
        add_procedure(
            self.router, ns + "requestResync", self._queue("resyncing"), dependencies=deps, responses=_RESPONSES
        )
        add_query(
            self.router, ns + "listDeadLetters", self._dead_letters, "no-store", dependencies=deps, responses=_RESPONSES
        )
        add_query(self.router, ns + "getStatus", self._status, "no-store", dependencies=deps, responses=_RESPONSES)

    def _moderate(self, action: ModerationAction) -> Callable[[Request, Params], Any]:
        async def handler(request: Request, p: Params) -> dict[str, Any]:
            event = ModerationEvent(
                did=p["did"],
                upstream="operator:admin-api",
                time=datetime.now(UTC),
                source=Source.OPERATOR,
                action=action,
                reason=p.get("reason"),
            )
            partition, offset = await self.producer.send(event)
            log.info("admin_moderation", did=event.did, action=action.value, partition=partition, offset=offset)
            return {"did": event.did, "action": action.value, "partition": partition, "offset": offset}

        return handler

    def _moderate_record(self, action: ModerationAction) -> Callable[[Request, Params], Any]:
        async def handler(request: Request, p: Params) -> dict[str, Any]:
            uri = p["uri"]
            record = parse_record_uri(uri)
            if record is None:
                raise InvalidRequest(f"{uri!r} does not name a record by its repo's DID (at://DID/COLLECTION/RKEY)")
            did, collection, rkey = record
            event = ModerationEvent(
                did=did,
                upstream="operator:admin-api",
                time=datetime.now(UTC),
                source=Source.OPERATOR,
                action=action,
                reason=p.get("reason"),
                collection=collection,
                rkey=rkey,
            )
            partition, offset = await self.producer.send(event)
            log.info("admin_moderation", uri=uri, action=action.value, partition=partition, offset=offset)
            return {"uri": uri, "action": action.value, "partition": partition, "offset": offset}

        return handler

    def _queue(self, state: str) -> Callable[[Request, Params], Any]:
        async def handler(request: Request, p: Params) -> dict[str, Any]:
            try:
                await request.app.state.pool.execute(_REQUEST_SYNC, p["did"], state, "operator")
            except asyncpg.UndefinedTableError:
                raise Unavailable(
                    f"no {status.INGEST_SCHEMA}.repos in this database: run `plyr-index migrate`"
                ) from None
            log.info("admin_sync_requested", did=p["did"], state=state)
            return {"did": p["did"], "syncState": state}

        return handler

    async def _dead_letters(self, request: Request, p: Params) -> dict[str, Any]:
        after = decode("deadLetters", p["cursor"], (int,))
        before = None if after is None else after[0]
        assert before is None or isinstance(before, int)
        limit = p["limit"]
        rows = await status.dead_letters_page(
            request.app.state.pool, self._settings.schema_name, limit=limit + 1, reason=p["reason"], before=before
        )
        body: dict[str, Any] = {"deadLetters": rows[:limit]}
        if len(rows) > limit:
            body["cursor"] = encode("deadLetters", rows[limit - 1]["id"])
        return body

    async def _status(self, request: Request, p: Params) -> dict[str, Any]:
        pool = request.app.state.pool
        settings = self._settings

        async def itself() -> dict[str, Any]:
            code, body = await status.readiness(pool, settings.schema_name, settings.ready_max_lag_seconds)
            out = {"url": settings.public_url, "health": "ok", "ready": str(body["status"])}
            if code != 200 and body.get("reason"):
                out["detail"] = str(body["reason"])
            return out

        return await status.collect(
            pool,
            None,
            schema=settings.schema_name,
            bootstrap=self._platform.kafka_bootstrap,
            topic=self._platform.events_topic,
            api=itself,
        )
