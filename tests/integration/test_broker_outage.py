"""A broker outage while the API runs: the admin API's takedowns answer a clear 503 within their bounds
and put nothing anywhere, the public reads keep answering from Postgres, and once the broker is back
(on the same address) a takedown goes through again and is the only event on the new log.

The broker is a tansu process of this test's own (memory storage) on a fixed port, killed and started
again; the app runs in process (httpx's ASGI transport, the lifespan entered as a server would).
tests/integration/test_operators.py covers an API started with no broker at all.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry

from api.app import create_app
from api.settings import ApiSettings
from ingest.producer import ensure_topic
from runtime.services import Broker, free_port, tansu_binary, wait_for_port
from runtime.settings import PlatformSettings
from schemas.migrate import migrate

pytestmark = pytest.mark.integration

SCHEMA = "broker_outage_read"
TOKEN = "test-admin-token-outage-0123"
DID = "did:plc:outageartistaaaaaaaaaaaa"
TAKEDOWN = "/xrpc/fm.plyr.index.admin.takedownRepo"


def tansu_on(port: int) -> Broker:
    """tansu with memory storage on ``port`` (the same address across a restart)."""
    url = f"tcp://127.0.0.1:{port}"
    command = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url]
    command += ["--storage-engine", "memory://tansu/"]
    env = {**os.environ, "RUST_LOG": "warn"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_for_port(port)
    return Broker(process, port)


async def events_on(bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        got = await consumer.getmany(timeout_ms=3000)
        return [m.key or b"" for batch in got.values() for m in batch]
    finally:
        await consumer.stop()


async def test_takedowns_during_a_broker_outage_answer_503_and_work_again_after(
    database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    async with pool.acquire() as conn:
        await migrate(conn, "read", SCHEMA)
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = tansu_on(port)
    try:
        await ensure_topic(bootstrap, topic, 1)
        platform = PlatformSettings(kafka_bootstrap=bootstrap, database_url=database_url, events_topic=topic)
        settings = ApiSettings(schema_name=SCHEMA, admin_token=TOKEN, rate_limit_per_second=0)
        app = create_app(database_url, settings, CollectorRegistry(), platform=platform)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t", timeout=120) as client,
        ):
            first = await client.post(TAKEDOWN, json={"did": DID}, headers=auth)
            assert first.status_code == 200, first.text
            rows_before = await pool.fetch(f"SELECT * FROM {SCHEMA}.artists ORDER BY did")

            broker.stop()
            start = time.perf_counter()
            down = await client.post(TAKEDOWN, json={"did": DID, "reason": "while down"}, headers=auth)
            took = time.perf_counter() - start
            assert down.status_code == 503 and down.json()["error"] == "Unavailable", down.text
            assert took < 45, took  # the producer's bounds (api/admin.py), never a hang
            # Reads do not need the broker; the failed takedown changed nothing locally.
            assert (await client.get("/xrpc/fm.plyr.index.getTotals")).status_code == 200
            assert await pool.fetch(f"SELECT * FROM {SCHEMA}.artists ORDER BY did") == rows_before

            broker = tansu_on(port)
            await ensure_topic(bootstrap, topic, 1)
            deadline = time.monotonic() + 60
            while True:  # the producer reconnects on its own schedule; each try is bounded
                again = await client.post(TAKEDOWN, json={"did": DID, "reason": "back"}, headers=auth)
                if again.status_code == 200 or time.monotonic() > deadline:
                    break
                assert again.status_code == 503, again.text
                await asyncio.sleep(0.5)
            assert again.status_code == 200, again.text
        # The new log (memory storage starts empty) holds the takedown made after the outage, once.
        assert await events_on(bootstrap, topic) == [DID.encode()]
    finally:
        broker.stop()
