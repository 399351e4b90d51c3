"""Freshness: a record written on a real PDS → visible in the API; p50 and p99 over many writes.

    python -m bench.freshness [--writes 200] [--warmup 10] [--poll-ms 5] [--max-gap-ms 500]

Runs Bluesky's reference PDS with an in-memory PLC (the npm install cached by tests/fixtures/pds.py),
the embedded tansu broker, a fresh database on the local Postgres (``PLYR_BENCH_PG``, default the
server at 127.0.0.1:5432; dropped at the end), and the pipeline as the processes an operator runs
(``plyr-index ingest`` following the PDS's ``subscribeRepos`` with commit verification on,
``plyr-index project``, ``plyr-index serve``; tests/fixtures/pipeline.py).

One account writes ``fm.plyr.track`` records one after another (``createRecord``, each after a random
pause of up to ``--max-gap-ms``, so writes land at any phase of the consumers' fetch cycles); after
each, the track's ``getTrack`` is polled every ``--poll-ms`` until it answers 200.
Each latency runs from the PDS's answer to ``createRecord`` (the commit is durable and sequenced) to
the first 200. Side by side, over the same writes: the floor, when the same commit reaches a plain
``subscribeRepos`` subscriber of the PDS in this process (what no index can beat). The goal is a p99
under one second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import websockets
from aiokafka import AIOKafkaConsumer

from ingest.frames import MessageFrame, decode_frame
from runtime.services import start_broker
from schemas.codec import decode
from schemas.envelope import RecordEvent
from tests.fixtures.pds import local_pds
from tests.fixtures.pds_client import PdsClient, handle_dns
from tests.fixtures.pipeline import Pipeline, PipelineConfig

PG_ADMIN = os.environ.get("PLYR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A new database on the bench's Postgres server, dropped afterwards."""
    name = f"plyr_bench_freshness_{os.getpid()}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


class FirehoseWatch:
    """A plain subscriber of the PDS's firehose: when each record path's commit arrived."""

    def __init__(self, url: str) -> None:
        self._url = f"{url}/xrpc/com.atproto.sync.subscribeRepos"
        self.arrived: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with websockets.connect(self._url, max_size=None) as ws:
            async for data in ws:
                at = time.perf_counter()
                frame = decode_frame(data if isinstance(data, bytes) else data.encode())
                if isinstance(frame, MessageFrame) and frame.t == "#commit":
                    for op in frame.body.get("ops") or ():
                        self.arrived[str(op.get("path"))] = at

    async def __aenter__(self) -> FirehoseWatch:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0.2)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await self._task


class LogWatch:
    """A plain consumer of the event topic: when each record's event could be read from the log."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        # A short fetch wait: the embedded broker answers a fetch only when its wait runs out, even once
        # data came in, so with the default 500 ms this would time the broker's wait, not the ingester.
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=10,
        )
        self.arrived: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async for message in self._consumer:
            event = decode(message.value or b"")
            if isinstance(event, RecordEvent):
                self.arrived.setdefault(f"{event.collection}/{event.rkey}", time.perf_counter())

    async def __aenter__(self) -> LogWatch:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()


async def measure(args: argparse.Namespace, workdir: Path) -> None:
    print(f"starting the PDS, the broker and the pipeline under {workdir} ...", flush=True)
    broker = start_broker(workdir / "tansu.log")
    try:
        with local_pds(workdir / "pds") as pds:
            async with (
                fresh_database() as database_url,
                httpx.AsyncClient(base_url=pds.url, timeout=30) as http,
            ):
                client = PdsClient(http, pds.admin_password)
                async with handle_dns(client) as dns:
                    config = PipelineConfig(
                        database_url=database_url,
                        kafka_bootstrap=broker.bootstrap,
                        topic=f"bench.freshness.{uuid.uuid4().hex[:8]}",
                        schema="bench_freshness",
                        upstream=pds.firehose,
                        plc_url=pds.plc_url,
                        dns=dns,
                    )
                    async with (
                        Pipeline(config, workdir / "pipeline", dict(os.environ)) as pipeline,
                        httpx.AsyncClient(base_url=config.api_url, timeout=30) as api,
                        FirehoseWatch(pds.firehose) as watch,
                        LogWatch(broker.bootstrap, config.topic) as log,
                    ):
                        await run_writes(args, client, api, pipeline, watch, log)
    finally:
        broker.stop()


async def run_writes(
    args: argparse.Namespace,
    client: PdsClient,
    api: httpx.AsyncClient,
    pipeline: Pipeline,
    watch: FirehoseWatch,
    log: LogWatch,
) -> None:
    account = await client.create_account(f"fresh-{uuid.uuid4().hex[:6]}.test")
    poll = args.poll_ms / 1000
    visible: list[float] = []
    floor: list[float] = []
    logged: list[float] = []
    own: list[float] = []  # from the commit on the firehose to visible: the index's own share
    total = args.warmup + args.writes
    rng = random.Random(args.seed)
    for i in range(total):
        # A random pause, so writes land at any phase of the consumers' fetch cycles.
        await asyncio.sleep(rng.uniform(0, args.max_gap_ms / 1000))
        record = {
            "$type": "fm.plyr.track",
            "title": f"freshness {i}",
            "artist": "bench",
            "fileType": "mp3",
            "audioUrl": f"https://cdn.example.com/{i}.mp3",
            "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        ref = await client.create_record(account, "fm.plyr.track", record)
        written = time.perf_counter()
        deadline = written + args.timeout
        while (await api.get("/xrpc/fm.plyr.index.getTrack", params={"uri": ref.uri})).status_code != 200:
            if time.perf_counter() > deadline:
                pipeline.check_alive()
                raise SystemExit(f"write {i} not visible after {args.timeout}s\n{pipeline.log('ingest')}")
            await asyncio.sleep(poll)
        seen = time.perf_counter()
        if i >= args.warmup:
            visible.append(seen - written)
            path = f"fm.plyr.track/{ref.rkey}"
            if path in watch.arrived:
                floor.append(max(0.0, watch.arrived[path] - written))
                own.append(seen - max(watch.arrived[path], written))
            if path in log.arrived:
                logged.append(max(0.0, log.arrived[path] - written))
        if (i + 1) % 50 == 0:
            print(f"  {i + 1}/{total} writes", flush=True)
    report(args, visible, {"floor": floor, "logged": logged, "own": own})


def report(args: argparse.Namespace, visible: list[float], stages: dict[str, list[float]]) -> None:
    def row(name: str, values: list[float]) -> str:
        ms = [v * 1000 for v in values]
        return (
            f"| {name} | {len(ms)} | {percentile(ms, 50):.0f} ms | {percentile(ms, 90):.0f} ms"
            f" | {percentile(ms, 99):.0f} ms | {max(ms):.0f} ms | {statistics.fmean(ms):.0f} ms |"
        )

    print()
    print(
        f"freshness over {len(visible)} sequential writes (after {args.warmup} warm-up), random pauses"
        f" up to {args.max_gap_ms:.0f} ms, polling every {args.poll_ms} ms"
    )
    print("| path | writes | p50 | p90 | p99 | max | mean |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    if stages["floor"]:
        print(row("floor: the commit on the PDS firehose", stages["floor"]))
    if stages["logged"]:
        print(row("its event on the log (a consumer polling every 10 ms)", stages["logged"]))
    print(row("plyr-index: getTrack answers 200", visible))
    if stages["own"]:
        print(row("plyr-index's own share (from the commit on the firehose)", stages["own"]))
    p99 = percentile(visible, 99)
    print(f"goal p99 < 1 s: {'met' if p99 < 1 else 'not met'} ({p99 * 1000:.0f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--poll-ms", type=float, default=5.0)
    parser.add_argument("--max-gap-ms", type=float, default=500.0, help="random pause before each write, up to")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a write may take to show")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="plyr-freshness-") as tmp:
        asyncio.run(measure(args, Path(tmp)))


if __name__ == "__main__":
    main()
