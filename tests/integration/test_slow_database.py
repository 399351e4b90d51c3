"""A slow, saturated or unreachable Postgres: the API answers a clear 503 within its bounds, never hangs,
never answers wrong data, and answers correctly again once the database is back.

The shared Postgres server is never stopped. Slowness is a lock this test holds on a read-model table
(every statement touching it waits); an outage is a TCP proxy in front of the server that the test
cuts (closing every connection through it and refusing new ones) and restores on the same port; an
unreachable database at startup is a port nothing listens on. The read models are the real
projector's, built from the corpus of tests/integration/test_api.py. The app runs in process (httpx's
ASGI transport, the lifespan entered as a server would).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from prometheus_client import CollectorRegistry

from api.app import create_app
from api.settings import ApiSettings
from schemas.migrate import migrate
from tests.integration.test_api import LOCAL, corpus
from tests.integration.test_projector import project_all
from tests.services import free_port

pytestmark = pytest.mark.integration

SCHEMA = "slowdb_read"
GET_TRACK = "/xrpc/fm.plyr.index.getTrack"


@pytest.fixture(scope="module")
async def read_model(kafka_bootstrap: str, database_url: str) -> tuple[str, str]:
    """(database URL, a visible track's URI)."""
    events, tracks = corpus()
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool:
        async with pool.acquire() as conn:
            await migrate(conn, "read", SCHEMA)
        await pool.execute(f"INSERT INTO {SCHEMA}.artists (did, local_takedown) VALUES ($1, true)", LOCAL)
        await project_all(kafka_bootstrap, database_url, pool, f"test.slowdb.{uuid.uuid4().hex[:8]}", events, SCHEMA)
    return database_url, tracks["song"][0]


@contextlib.asynccontextmanager
async def serving(database_url: str, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = ApiSettings(schema_name=SCHEMA, rate_limit_per_second=0, pool_min=1, pool_max=2, **overrides)
    app = create_app(database_url, settings, CollectorRegistry())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as client,
    ):
        yield client


@contextlib.asynccontextmanager
async def locked(database_url: str, table: str) -> AsyncIterator[None]:
    """``table`` locked against every reader until the block ends."""
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute(f"LOCK TABLE {SCHEMA}.{table} IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await conn.close()


async def timed(client: httpx.AsyncClient, path: str, **params: str) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    r = await client.get(path, params=params)
    return r, time.perf_counter() - start


def unavailable(r: httpx.Response) -> str:
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "1"
    body = r.json()
    assert set(body) == {"error", "message"} and body["error"] == "Unavailable"
    return str(body["message"])


async def test_a_statement_blocked_by_a_lock_is_ended_by_postgres_and_answered_503(
    read_model: tuple[str, str],
) -> None:
    dsn, uri = read_model
    async with serving(dsn, statement_timeout_seconds=0.5, request_timeout_seconds=5) as client:
        before, _ = await timed(client, GET_TRACK, uri=uri)
        assert before.status_code == 200
        async with locked(dsn, "tracks"):
            r, took = await timed(client, GET_TRACK, uri=uri)
            assert "QueryCanceledError" in unavailable(r)
            assert 0.4 < took < 3, took
            # What does not touch the locked table still answers.
            assert (await client.get("/xrpc/fm.plyr.index.listArtists")).status_code == 200
        after, _ = await timed(client, GET_TRACK, uri=uri)
        assert after.status_code == 200 and after.json() == before.json()


async def test_past_the_request_deadline_the_request_is_cancelled_and_answered_503(
    read_model: tuple[str, str],
) -> None:
    dsn, uri = read_model
    async with serving(dsn, statement_timeout_seconds=60, request_timeout_seconds=0.5) as client:
        before, _ = await timed(client, GET_TRACK, uri=uri)
        async with locked(dsn, "tracks"):
            results = await asyncio.gather(*(timed(client, GET_TRACK, uri=uri) for _ in range(4)))
            for r, took in results:
                assert "within 0.5 s" in unavailable(r)
                # Two run their statement, two wait for a pooled connection: all bounded alike.
                assert 0.4 < took < 3, took
        # The cancelled statements left the pool usable: every connection answers again, correctly.
        again = await asyncio.gather(*(timed(client, GET_TRACK, uri=uri) for _ in range(4)))
        assert all(r.status_code == 200 and r.json() == before.json() for r, _ in again)


async def test_past_the_in_flight_bound_requests_are_refused_at_once(read_model: tuple[str, str]) -> None:
    dsn, uri = read_model
    async with serving(dsn, statement_timeout_seconds=60, request_timeout_seconds=30, max_in_flight=2) as client:
        async with locked(dsn, "tracks"):
            held = [asyncio.create_task(timed(client, GET_TRACK, uri=uri)) for _ in range(2)]
            await asyncio.sleep(0.3)
            r, took = await timed(client, GET_TRACK, uri=uri)
            assert "in flight" in unavailable(r) and took < 0.5
        for r, _ in await asyncio.gather(*held):
            assert r.status_code == 200 and r.json()["track"]["uri"] == uri


async def test_unreachable_at_startup_the_api_starts_not_ready_and_answers_503(read_model: tuple[str, str]) -> None:
    dsn, uri = read_model
    nowhere = urlunsplit(urlsplit(dsn)._replace(netloc=f"postgres@127.0.0.1:{free_port()}"))
    async with serving(nowhere, request_timeout_seconds=2) as client:
        assert (await client.get("/health")).status_code == 200
        ready = await client.get("/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
        assert ready.json()["reason"].startswith("database:")
        r, took = await timed(client, GET_TRACK, uri=uri)
        assert "cannot answer" in unavailable(r) and took < 3


class CuttableProxy:
    """A TCP proxy to Postgres that can be cut (every connection closed, new ones refused) and restored."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


async def test_a_database_outage_gives_503_and_not_ready_then_correct_answers_again(
    read_model: tuple[str, str],
) -> None:
    dsn, uri = read_model
    parts = urlsplit(dsn)
    proxy = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    through = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    try:
        async with serving(through, request_timeout_seconds=2) as client:
            before, _ = await timed(client, GET_TRACK, uri=uri)
            assert before.status_code == 200
            await proxy.cut()
            for _ in range(3):  # the pooled connections are dead, then connecting is refused
                r, took = await timed(client, GET_TRACK, uri=uri)
                unavailable(r)
                assert took < 3, took
            ready = await client.get("/ready")
            assert ready.status_code == 503 and ready.json()["reason"].startswith("database:")
            assert (await client.get("/health")).status_code == 200
            await proxy.start()
            after, _ = await timed(client, GET_TRACK, uri=uri)
            assert after.status_code == 200 and after.json() == before.json()
    finally:
        await proxy.cut()
