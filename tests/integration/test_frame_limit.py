"""A frame over INGEST_MAX_FRAME_BYTES: refused unread, counted, and stepped past; the frames after it
still arrive. Before, the ingester reconnected from the same cursor, the upstream sent the same frame
again, and the upstream was stuck for good (with the backoff growing to its cap)."""

from __future__ import annotations

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from ingest import app
from ingest.cursor import PostgresCursorStore
from ingest.errors import FrameTooLargeError
from ingest.firehose import subscribe
from ingest.settings import IngestSettings
from tests.fixtures.corpus import mixed_corpus
from tests.fixtures.firehose_server import FirehoseServer
from tests.fixtures.frames import Repo, Write, track_record
from tests.fixtures.kafka import consume_all
from tests.integration.test_ingest_live import platform, record_keys, running, wait_cursor
from tests.services import free_port

pytestmark = pytest.mark.integration

LIMIT = 64 * 1024


def _big_commit(seq: int) -> bytes:
    repo = Repo("did:plc:bigframebigframebigframeb")
    return repo.commit(
        [Write("create", "fm.plyr.track", "3kbig00000000", track_record("x" * 1000, pad="y" * LIMIT))], seq
    )


async def test_subscribe_names_a_frame_over_the_limit() -> None:
    async with FirehoseServer(frames=[(1, _big_commit(1))]) as server:
        with pytest.raises(FrameTooLargeError):
            async for _ in subscribe(server.url, 0, stall_timeout=5, max_frame_bytes=LIMIT):
                pass


async def test_a_frame_over_the_limit_is_counted_and_stepped_past(
    kafka_bootstrap: str, database_url: str, topic: str, pool: asyncpg.Pool
) -> None:
    before, after = mixed_corpus(10, plyr_share=0.5, seed=41), mixed_corpus(20, plyr_share=0.5, seed=42, start_seq=12)
    frames = [*before.frames, (11, _big_commit(11)), *after.frames]
    registry = CollectorRegistry()
    async with FirehoseServer(frames=frames) as server:
        settings = IngestSettings(
            upstreams=(server.url,),
            metrics_port=0,
            cursor_flush_interval_s=0.1,
            max_frame_bytes=LIMIT,
            plc_url=f"http://127.0.0.1:{free_port()}",
            verify_commits=False,
            resolve_identity=False,
        )
        await app.open_cursor_store(pool)
        await PostgresCursorStore(pool).save(server.url, 0)
        async with running(platform(kafka_bootstrap, database_url, topic), settings, registry):
            await wait_cursor(pool, server.url, frames[-1][0], timeout=30)
    labels = {"upstream": server.url, "reason": "frame_too_large"}
    assert registry.get_sample_value("plyr_ingest_drops_total", labels) == 1
    assert server.cursors_seen == [0, 11]  # reconnected one seq past the last frame read (10)
    expected = before.expected_ops + after.expected_ops
    others = before.expected_other + after.expected_other
    events = await consume_all(kafka_bootstrap, topic, expect=len(expected) + len(others))
    assert sorted(record_keys(events)) == sorted(expected)
