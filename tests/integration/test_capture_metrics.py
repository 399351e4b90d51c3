"""``plyr-index capture`` records frames byte for byte; the Prometheus endpoint serves the counters."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from ingest.app import Ingester
from ingest.capture import read_frames
from ingest.dedupe import Deduper
from ingest.metrics import IngestMetrics
from ingest.producer import JsonlSink
from runtime.metrics import MetricsServer
from schemas.ids import CollectionFilter
from tests.fixtures.corpus import mixed_corpus
from tests.fixtures.firehose_server import FirehoseServer
from tests.fixtures.processes import spawn_cli

pytestmark = pytest.mark.integration


async def run_capture(*args: str) -> tuple[int | None, bytes]:
    """Run ``plyr-index capture ARGS``; return its exit code and stderr."""
    proc = await spawn_cli("capture", *args, capture_stderr=True)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, err


@pytest.mark.parametrize("name", ["cap.bin", "cap.bin.zst"])
async def test_capture_cli_records_frames_byte_for_byte(tmp_path: Path, name: str) -> None:
    corpus = mixed_corpus(60, seed=8)
    out = tmp_path / name
    async with FirehoseServer(frames=list(corpus.frames)) as server:
        code, err = await run_capture("--upstream", server.url, "--out", str(out), "--cursor", "0", "--limit", "50")
    assert code == 0, err.decode()
    assert list(read_frames(out)) == [f for _, f in corpus.frames[:50]]


async def test_capture_cli_reports_an_unreachable_upstream(tmp_path: Path) -> None:
    code, err = await run_capture("--upstream", "ws://127.0.0.1:9", "--out", str(tmp_path / "x.bin"), "--limit", "1")
    assert code == 1 and b"cannot connect" in err


async def test_metrics_endpoint_serves_ingest_counters(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    with (tmp_path / "out.jsonl").open("wb") as out:
        sink = JsonlSink(out)
        ingester = Ingester(sink, CollectionFilter.parse("fm.plyr.*"), metrics, Deduper())
        corpus = mixed_corpus(30, seed=9)
        for _, data in corpus.frames:
            await ingester.handle("relay.test", data, None)
        await ingester.handle("relay.test", b"\x00not a frame", None)
    async with MetricsServer(registry, "127.0.0.1", 0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /metrics HTTP/1.0\r\n\r\n")
        await writer.drain()
        body = (await reader.read()).decode()
        writer.close()
    assert body.startswith("HTTP/1.0 200 OK")
    assert 'plyr_ingest_frames_total{kind="commit",upstream="relay.test"}' in body
    assert 'plyr_ingest_drops_total{reason="malformed_frame",upstream="relay.test"} 1.0' in body
    tracks = sum(1 for did, path, _ in corpus.expected_ops if path.startswith("fm.plyr.track/"))
    series = 'plyr_ingest_events_total{collection="fm.plyr.track",kind="record",upstream="relay.test"}'
    assert f"{series} {tracks}.0" in body
