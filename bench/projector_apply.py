"""Projector benchmark: apply a log of mixed events from the broker into Postgres.

    python -m bench.projector_apply [--events N] [--naive-events M] [--partitions P] [--lanes L] [--one-lane]
                                    [--server local|write-heavy]

Builds a log of N mixed events (track creates/updates/deletes, likes, comments, lists, profiles,
account changes) on a fresh topic of a tansu broker started here, then, side by side in the same run:
- plyr-index: ``projector.store.Store`` fed by one consumer through the projector's
  ``CommitPipeline`` (batch N+1 prepared while batch N commits, on the projector's default number of
  commit lanes), one transaction per poll and lane (up to 5,000 events) with the offsets; with
  ``--one-lane`` also on a single lane;
- naive: the same SQL, committing each event in its own transaction (run over the first M events,
  since at its rate the whole log would take too long), once with plyr-index's asynchronous commit and
  once with Postgres' default durable commit (what a straightforward projector runs with);
- replay: ``plyr-index replay``'s path (``projector.app.rebuild``) over the same log, with the swap.
Prints events/s for each and the ratio. Uses the Postgres at PLYR_BENCH_PG (default the local server),
in a database ``plyr_bench`` it recreates; ``--server write-heavy`` instead starts an embedded
PostgreSQL with ``runtime.embedded_pg.WRITE_HEAVY`` (shared buffers and checkpoint spacing for a write
load) on a fresh data directory, removed afterwards, and runs every path there.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ingest.producer import ensure_topic
from projector.app import open_store, rebuild
from projector.pipeline import CommitPipeline
from projector.prepare import LogMessage
from projector.settings import ProjectorSettings
from projector.store import Store
from projector.validate import RecordValidator
from runtime.embedded_pg import WRITE_HEAVY, start_embedded
from runtime.gc_tuning import tune_for_batches
from runtime.settings import PlatformSettings
from schemas.codec import encode
from schemas.envelope import Event
from schemas.topics import key_for
from tests.fixtures import events as ev
from tests.services import start_broker

ADMIN = os.environ.get("PLYR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def log_of(n: int, seed: int = 7) -> list[Event]:
    """n mixed events over 20,000 artists and listeners."""
    rng = random.Random(seed)
    dids = [f"did:plc:bench{i:019d}" for i in range(20_000)]
    tracks: list[tuple[str, str]] = []
    out: list[Event] = []
    for i in range(1, n + 1):
        did = rng.choice(dids)
        roll = rng.random()
        e: Event
        if roll < 0.25 or len(tracks) < 10:
            rec = ev.track(f"track {i}", duration=rng.randrange(60, 600), album=f"album {i % 500}")
            e = ev.put(did, "fm.plyr.track", f"3t{i:011d}", i, rec)
            tracks.append((e.uri, e.cid or ""))
        elif roll < 0.30:
            u, _ = rng.choice(tracks)
            parts = u[5:].split("/")
            e = ev.put(parts[0], "fm.plyr.track", parts[2], i, ev.track(f"renamed {i}"), create=False)
        elif roll < 0.33:
            u, _ = rng.choice(tracks)
            parts = u[5:].split("/")
            e = ev.delete(parts[0], "fm.plyr.track", parts[2], i)
        elif roll < 0.75:
            u, c = rng.choice(tracks)
            e = ev.put(did, "fm.plyr.like", f"3l{i:011d}", i, ev.like(u, c))
        elif roll < 0.78:
            e = ev.delete(did, "fm.plyr.like", f"3l{rng.randrange(1, i):011d}", i)
        elif roll < 0.90:
            u, c = rng.choice(tracks)
            e = ev.put(did, "fm.plyr.comment", f"3c{i:011d}", i, ev.comment(u, c, f"nice {i}", rng.randrange(300_000)))
        elif roll < 0.96:
            e = ev.put(did, "fm.plyr.list", f"3p{i:011d}", i, ev.playlist(f"mix {i}", rng.sample(tracks, 5)))
        elif roll < 0.99:
            e = ev.put(
                did,
                "fm.plyr.actor.profile",
                "self",
                i,
                {"$type": "fm.plyr.actor.profile", "bio": f"bio {i}", "createdAt": "2026-01-01T00:00:00Z"},
            )
        else:
            e = ev.account(did, i, rng.random() < 0.7, None)
        out.append(e)
    return out


async def produce(bootstrap: str, topic: str, events: list[Event], partitions: int) -> None:
    await ensure_topic(bootstrap, topic, partitions)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1 << 20, compression_type="zstd"
    )
    await producer.start()
    try:
        futures = []
        for e in events:
            futures.append(await producer.send(topic, encode(e), key=key_for(e.did)))
            if len(futures) >= 20_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def consume_into(store: Store, bootstrap: str, topic: str, total: int, *, batch: int, lanes: int = 1) -> float:
    """Feed the whole topic to ``store`` in polls of up to ``batch``; return events/s."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
    )
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or set())]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        done = 0
        pipeline = CommitPipeline(store, lanes)
        start = time.perf_counter()
        while done < total:
            polled = await consumer.getmany(timeout_ms=1000, max_records=batch)
            messages = [LogMessage(tp.partition, m.offset, m.value or b"") for tp, ms in polled.items() for m in ms]
            if batch == 1:
                for m in messages:
                    await store.apply([m])
            elif messages:
                await pipeline.submit(messages)
            done += len(messages)
        await pipeline.flush()
        return total / (time.perf_counter() - start)
    finally:
        await consumer.stop()


async def main_async(server: str, n: int, naive_n: int, partitions: int, lanes: int, one_lane: bool) -> None:
    admin = await asyncpg.connect(server)
    await admin.execute("DROP DATABASE IF EXISTS plyr_bench WITH (FORCE)")
    await admin.execute("CREATE DATABASE plyr_bench")
    await admin.close()
    dsn = server.rsplit("/", 1)[0] + "/plyr_bench"
    broker = start_broker()
    try:
        t = time.perf_counter()
        events = log_of(n)
        naive_events = events[:naive_n]
        await produce(broker.bootstrap, "bench.full", events, partitions)
        await produce(broker.bootstrap, "bench.naive", naive_events, partitions)
        print(f"log: {n:,} events ({partitions} partitions) built and produced in {time.perf_counter() - t:.0f} s")
        async with asyncpg.create_pool(dsn, min_size=1, max_size=lanes + 2) as pool:
            ours = await consume_into(
                await open_store(pool, "bench_ours", "bench.full"),
                broker.bootstrap,
                "bench.full",
                n,
                batch=5000,
                lanes=lanes,
            )
            single = None
            if one_lane:
                single_store = await open_store(pool, "bench_one_lane", "bench.full")
                single = await consume_into(single_store, broker.bootstrap, "bench.full", n, batch=5000)
            naive = await consume_into(
                await open_store(pool, "bench_naive", "bench.naive"), broker.bootstrap, "bench.naive", naive_n, batch=1
            )
            await open_store(pool, "bench_naive_durable", "bench.naive")  # migrate
            durable = Store(pool, "bench_naive_durable", RecordValidator(), "bench.naive", wait_for_flush=True)
            naive_durable = await consume_into(durable, broker.bootstrap, "bench.naive", naive_n, batch=1)
        plat = PlatformSettings(kafka_bootstrap=broker.bootstrap, database_url=dsn, events_topic="bench.full")
        result = await rebuild(plat, ProjectorSettings(schema_name="bench_ours", metrics_port=0, commit_lanes=lanes))
        replay = result.events / result.seconds
        print(f"{'path':<60}{'events/s':>10}")
        print(f"{f'plyr-index ({lanes} commit lanes, a transaction per poll and lane)':<60}{ours:>10,.0f}")
        if single is not None:
            print(f"{'plyr-index (one commit lane)':<60}{single:>10,.0f}")
        first = f"first {naive_n:,}"
        print(f"{'naive, async commit (a transaction per event, ' + first + ')':<60}{naive:>10,.0f}")
        print(f"{'naive, default durable commit (' + first + ')':<60}{naive_durable:>10,.0f}")
        print(f"{'replay (rebuild from offset 0 + swap)':<60}{replay:>10,.0f}")
        print(f"ratio plyr-index / naive with async commit: {ours / naive:.1f}x")
        print(f"ratio plyr-index / naive with durable commit: {ours / naive_durable:.1f}x")
    finally:
        broker.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--naive-events", type=int, default=20_000)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--lanes", type=int, default=ProjectorSettings().commit_lanes, help="commit lanes")
    p.add_argument("--one-lane", action="store_true", help="also run plyr-index on a single commit lane")
    p.add_argument(
        "--server",
        choices=("local", "write-heavy"),
        default="local",
        help="the Postgres at PLYR_BENCH_PG, or an embedded one tuned for writes (runtime.embedded_pg.WRITE_HEAVY)",
    )
    args = p.parse_args()
    # As the projector and replay processes do at start (plyr-index project / replay).
    tune_for_batches()

    def run(server: str) -> None:
        asyncio.run(main_async(server, args.events, args.naive_events, args.partitions, args.lanes, args.one_lane))

    if args.server == "local":
        run(ADMIN)
        return 0
    scratch = Path(tempfile.mkdtemp(prefix="plyr-bench-pg-"))
    embedded = start_embedded(scratch / "postgres", scratch / "postgres.log", WRITE_HEAVY)
    try:
        print(f"server: embedded PostgreSQL 18 with {', '.join(f'{k}={v}' for k, v in WRITE_HEAVY.items())}")
        run(f"postgresql://postgres@127.0.0.1:{embedded.port}/postgres")
    finally:
        embedded.stop()
        shutil.rmtree(embedded.directory, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
