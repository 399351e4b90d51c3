"""kill -9 the ingester mid-stream, repeatedly: what reaches Kafka has no gap (duplicates allowed)."""

from __future__ import annotations

import asyncio
import os
import random
import signal

import asyncpg
import pytest

from ingest.app import open_cursor_store
from ingest.cursor import PostgresCursorStore
from schemas.envelope import RecordEvent
from tests.fixtures.corpus import mixed_corpus
from tests.fixtures.firehose_server import FirehoseServer
from tests.fixtures.kafka import consume_all
from tests.fixtures.processes import spawn_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_kill9_restart_leaves_no_gap(
    kafka_bootstrap: str, database_url: str, topic: str, pool: asyncpg.Pool
) -> None:
    corpus = mixed_corpus(1500, seed=11, plyr_share=0.3)
    rng = random.Random(11)
    async with FirehoseServer() as server:
        await open_cursor_store(pool)
        await PostgresCursorStore(pool).save(server.url, 0)
        env = {
            **os.environ,
            "PLYR_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "PLYR_DATABASE_URL": database_url,
            "PLYR_EVENTS_TOPIC": topic,
            "PLYR_TOPIC_PARTITIONS": "3",
            "INGEST_UPSTREAMS": server.url,
            "INGEST_METRICS_PORT": "0",
            "INGEST_CURSOR_FLUSH_INTERVAL_S": "0.05",
            # The corpus' commits are not signed by resolvable keys.
            "INGEST_VERIFY_COMMITS": "false",
        }

        async def publish() -> None:
            # ~1,500 frames/s in small bursts, so kills land mid-stream.
            for i, (seq, data) in enumerate(corpus.frames):
                await server.append(seq, data)
                if i % 15 == 0:
                    await asyncio.sleep(0.01)

        async def start() -> asyncio.subprocess.Process:
            return await spawn_cli("ingest", env=env)

        publisher = asyncio.create_task(publish())
        kills = 0
        proc = await start()
        while not publisher.done() or kills < 3:
            await asyncio.sleep(rng.uniform(0.3, 0.8))
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            kills += 1
            proc = await start()
        await publisher
        store = PostgresCursorStore(pool)
        async with asyncio.timeout(60):
            while (await store.load(server.url)).seq != corpus.frames[-1][0]:
                await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) in (0, -signal.SIGTERM)
    assert kills >= 3
    events = await consume_all(kafka_bootstrap, topic, expect=len(corpus.expected_ops))
    seen = {(e.did, f"{e.collection}/{e.rkey}", e.rev) for e in events if isinstance(e, RecordEvent)}
    missing = set(corpus.expected_ops) - seen
    assert not missing, f"{len(missing)} record events lost across {kills} kill -9s"
    assert seen == set(corpus.expected_ops)
