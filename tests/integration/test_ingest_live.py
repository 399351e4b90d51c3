"""Live ingest against a local firehose server, the real tansu broker and the real Postgres."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import asyncpg
import orjson
import pytest
from prometheus_client import CollectorRegistry

from ingest import app
from ingest.capture import write_frames
from ingest.cursor import PostgresCursorStore
from ingest.settings import IngestSettings
from runtime.settings import PlatformSettings
from schemas.codec import decode
from schemas.envelope import RecordEvent
from tests.fixtures.corpus import mixed_corpus
from tests.fixtures.firehose_server import FirehoseServer
from tests.fixtures.kafka import consume_all
from tests.services import free_port

pytestmark = pytest.mark.integration


def platform(bootstrap: str, database_url: str, topic: str) -> PlatformSettings:
    return PlatformSettings(
        kafka_bootstrap=bootstrap,
        database_url=database_url,
        events_topic=topic,
        topic_partitions=3,
        kafka_compression="zstd",
    )


def ingest_settings(*upstreams: str) -> IngestSettings:
    # Identity resolution stays on, against a PLC directory that refuses connections: every #identity
    # goes through the background resolution and out unverified, without the network. The corpus'
    # commits are not signed by resolvable keys: verification is off here (tests/integration/
    # test_verify_live.py runs it on signed repos).
    return IngestSettings(
        upstreams=upstreams,
        metrics_port=0,
        cursor_flush_interval_s=0.1,
        stall_timeout_s=5,
        plc_url=f"http://127.0.0.1:{free_port()}",
        verify_commits=False,
    )


@contextlib.asynccontextmanager
async def running(
    plat: PlatformSettings, settings: IngestSettings, registry: CollectorRegistry | None = None
) -> AsyncIterator[asyncio.Task[int]]:
    task = asyncio.create_task(app.run(plat, settings, out=sys.stdout.buffer, registry=registry))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_cursor(pool: asyncpg.Pool, upstream: str, seq: int, timeout: float = 15) -> None:
    store = PostgresCursorStore(pool)
    async with asyncio.timeout(timeout):
        while (await store.load(upstream)).seq != seq:
            await asyncio.sleep(0.05)


def record_keys(events: Sequence[object]) -> list[tuple[str, str, str]]:
    return [(e.did, f"{e.collection}/{e.rkey}", e.rev) for e in events if isinstance(e, RecordEvent)]


async def test_live_ingest_reconnects_stores_cursor_and_resumes(
    kafka_bootstrap: str, database_url: str, topic: str, pool: asyncpg.Pool
) -> None:
    corpus = mixed_corpus(300, seed=3)
    first, second = corpus.frames[:200], corpus.frames[200:]
    plat = platform(kafka_bootstrap, database_url, topic)
    # Connections drop every 37 frames: the ingester must reconnect from its cursor each time.
    async with FirehoseServer(frames=list(first), drop_every=37) as server:
        settings = ingest_settings(server.url)
        # Start from seq 0 rather than the live head.
        await app.open_cursor_store(pool)
        await PostgresCursorStore(pool).save(server.url, 0)
        async with running(plat, settings):
            await wait_cursor(pool, server.url, first[-1][0])
        assert server.connections >= 200 // 37
        for seq, data in second:
            await server.append(seq, data)
        async with running(plat, settings):
            await wait_cursor(pool, server.url, second[-1][0])
        # The second run resumed exactly after the stored cursor.
        assert first[-1][0] in server.cursors_seen
    events = await consume_all(kafka_bootstrap, topic, expect=len(corpus.expected_ops) + len(corpus.expected_other))
    assert sorted(record_keys(events)) == sorted(corpus.expected_ops)  # nothing lost, nothing doubled
    others = sorted((e.kind, e.did, e.seq) for e in events if not isinstance(e, RecordEvent))
    assert others == sorted(corpus.expected_other)
    # Per-repo order on the log: revs never go backwards within a partition key.
    last: dict[str, str] = {}
    for e in events:
        if isinstance(e, RecordEvent):
            assert e.rev >= last.get(e.did, ""), "a repo's events arrived out of order"
            last[e.did] = e.rev


async def test_two_upstreams_produce_each_event_once(
    kafka_bootstrap: str, database_url: str, topic: str, pool: asyncpg.Pool
) -> None:
    corpus = mixed_corpus(150, seed=4)
    plat = platform(kafka_bootstrap, database_url, topic)
    registry = CollectorRegistry()
    async with (
        FirehoseServer(frames=list(corpus.frames)) as a,
        FirehoseServer(frames=list(corpus.frames)) as b,
    ):
        await app.open_cursor_store(pool)
        for s in (a, b):
            await PostgresCursorStore(pool).save(s.url, 0)
        async with running(plat, ingest_settings(a.url, b.url), registry):
            await wait_cursor(pool, a.url, corpus.frames[-1][0])
            await wait_cursor(pool, b.url, corpus.frames[-1][0])
    events = await consume_all(kafka_bootstrap, topic, expect=len(corpus.expected_ops))
    assert sorted(record_keys(events)) == sorted(corpus.expected_ops)
    dupes = sum(registry.get_sample_value("plyr_ingest_duplicates_total", {"upstream": u}) or 0 for u in (a.url, b.url))
    assert dupes == len(corpus.expected_ops) + len(corpus.expected_other)
    # Both upstreams see fm.plyr.* (an upstream gone blind would show zero here).
    for u in (a.url, b.url):
        assert registry.get_sample_value("plyr_ingest_frames_total", {"upstream": u, "kind": "commit"})


async def test_future_cursor_halts_the_upstream_until_an_operator_resumes(
    kafka_bootstrap: str, database_url: str, topic: str, pool: asyncpg.Pool
) -> None:
    corpus = mixed_corpus(20, seed=5)
    plat = platform(kafka_bootstrap, database_url, topic)
    async with FirehoseServer(frames=list(corpus.frames)) as server:
        await app.open_cursor_store(pool)
        store = PostgresCursorStore(pool)
        await store.save(server.url, 10_000)  # a cursor from another host
        code = await asyncio.wait_for(app.run(plat, ingest_settings(server.url), out=sys.stdout.buffer), 30)
        assert code == 1
        state = await store.load(server.url)
        assert state.halted is not None and "FutureCursor" in state.halted and state.seq == 10_000
        # Restarting does not silently resume it.
        assert await asyncio.wait_for(app.run(plat, ingest_settings(server.url), out=sys.stdout.buffer), 30) == 1
        assert server.connections == 1
        await app.resume_upstreams(plat, [server.url], live=False)
        state = await store.load(server.url)
        assert state.halted is None and state.seq == 10_000


async def test_outdated_cursor_is_counted_and_ingest_goes_on(
    kafka_bootstrap: str, database_url: str, topic: str, pool: asyncpg.Pool
) -> None:
    corpus = mixed_corpus(40, seed=6, start_seq=500)
    plat = platform(kafka_bootstrap, database_url, topic)
    registry = CollectorRegistry()
    async with FirehoseServer(frames=list(corpus.frames), oldest_retained=500) as server:
        await app.open_cursor_store(pool)
        await PostgresCursorStore(pool).save(server.url, 3)
        async with running(plat, ingest_settings(server.url), registry):
            await wait_cursor(pool, server.url, corpus.frames[-1][0])
    assert registry.get_sample_value("plyr_ingest_cursor_gaps_total", {"upstream": server.url}) == 1
    events = await consume_all(kafka_bootstrap, topic, expect=len(corpus.expected_ops))
    assert sorted(record_keys(events)) == sorted(corpus.expected_ops)


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "plyr_index", *args],
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_jsonl_from_capture_file(tmp_path: Path) -> None:
    corpus = mixed_corpus(120, seed=7)
    cap = tmp_path / "capture.bin.zst"
    write_frames(cap, [f for _, f in corpus.frames] + [b"\x00garbage"])
    result = _cli("ingest", "--from-file", str(cap), "--to", "jsonl")
    assert result.returncode == 0, result.stderr.decode()
    events = [decode(line) for line in result.stdout.splitlines()]
    assert sorted(record_keys(events)) == sorted(corpus.expected_ops)
    assert all(e.upstream == "file:capture.bin.zst" for e in events)
    # The garbage frame was counted and logged, not fatal.
    logs = [orjson.loads(line) for line in result.stderr.splitlines() if line.startswith(b"{")]
    assert any(entry.get("event") == "frame_dropped" and entry.get("reason") == "malformed_frame" for entry in logs)
    # Only the track collection: narrower filter, fewer identity-free events.
    narrow = _cli("ingest", "--from-file", str(cap), "--to", "jsonl", "--collections", "fm.plyr.like")
    assert [decode(line).kind for line in narrow.stdout.splitlines()].count("record") == 0


@pytest.mark.parametrize(
    ("env", "args", "named"),
    [
        ({"INGEST_STALL_TIMEOUT_S": "-1"}, [], "INGEST_STALL_TIMEOUT_S"),
        ({}, ["--collections", "fm..bad"], "INGEST_COLLECTIONS"),
        ({}, ["--upstream", "ftp://x"], "INGEST_UPSTREAMS"),
        ({"PLYR_KAFKA_COMPRESSION": "brotli"}, [], "PLYR_KAFKA_COMPRESSION"),
    ],
)
def test_a_bad_setting_stops_startup_and_is_named(env: dict[str, str], args: list[str], named: str) -> None:
    result = _cli("ingest", *args, env=env, timeout=30)
    assert result.returncode == 2
    assert named in result.stderr.decode()
