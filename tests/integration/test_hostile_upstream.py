"""The real ingester against an upstream that misbehaves between good frames, on the real broker.

The script (tests/fixtures/hostile_firehose.py) interleaves 120 good frames of a mixed corpus with
every kind of bad frame, a stall, a slow stretch, a text frame and an error frame. The ingester must
stay up, count each bad frame under its reason in its metrics, and put every event of the good frames
on the topic, once. Verification is off here (the corpus' commits are not signed by resolvable keys;
the hostile commits would otherwise be refused before their records are read).
"""

from __future__ import annotations

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from ingest import app
from ingest.cursor import PostgresCursorStore
from ingest.settings import IngestSettings
from schemas.envelope import RecordEvent
from tests.fixtures.hostile_firehose import HOSTILE, MAX_FRAME, HostileFirehoseServer, build_script
from tests.fixtures.kafka import consume_all
from tests.integration.test_ingest_live import platform, record_keys, running, wait_cursor
from tests.services import free_port

pytestmark = pytest.mark.integration


async def test_the_ingester_survives_a_hostile_upstream(
    kafka_bootstrap: str, database_url: str, topic: str, pool: asyncpg.Pool
) -> None:
    script, expected_ops, expected_other = build_script()
    registry = CollectorRegistry()
    plat = platform(kafka_bootstrap, database_url, topic)
    async with HostileFirehoseServer(script.entries) as server:
        settings = IngestSettings(
            upstreams=(server.url,),
            metrics_port=0,
            cursor_flush_interval_s=0.1,
            stall_timeout_s=1.5,
            max_frame_bytes=MAX_FRAME,
            plc_url=f"http://127.0.0.1:{free_port()}",
            verify_commits=False,
        )
        await app.open_cursor_store(pool)
        await PostgresCursorStore(pool).save(server.url, 0)
        async with running(plat, settings, registry) as task:
            await wait_cursor(pool, server.url, script.seq, timeout=90)
            assert not task.done(), "the ingester stopped"

    def sample(name: str, **labels: str) -> float:
        return registry.get_sample_value(f"plyr_ingest_{name}_total", {"upstream": server.url, **labels}) or 0.0

    drops = {reason: sample("drops", reason=reason) for reason in script.expected}
    assert drops == script.expected
    assert (
        sample("frames", kind="malformed") == script.expected["malformed_frame"] + script.expected["malformed_message"]
    )
    assert sample("frames", kind="unknown") == 1
    assert sample("error_frames", error="ConsumerTooSlow") == 1
    # The stall, the text frame, the error frame and the frame too large each cost a reconnect.
    assert sample("reconnects") >= 4
    events = await consume_all(kafka_bootstrap, topic, expect=len(expected_ops) + len(expected_other))
    keys = record_keys(events)
    assert sorted(keys) == sorted(expected_ops)  # every good record, once
    assert sorted((e.kind, e.did, e.seq) for e in events if not isinstance(e, RecordEvent)) == sorted(expected_other)
    assert all(e.did != HOSTILE for e in events)
