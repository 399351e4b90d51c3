"""Projector benchmark: apply a log of mixed events from the broker into Postgres.

    python -m bench.projector_apply [--events N] [--naive-events M] [--partitions P] [--lanes L] [--one-lane]
                                    [--processes K] [--server local|write-heavy] [--statements]

Builds a log of N mixed events (track creates/updates/deletes, likes, comments, lists, profiles,
account changes) on a fresh topic of a tansu broker started here, then, side by side in the same run:
- plyr-index: ``projector.store.Store`` fed by one consumer through the projector's
  ``CommitPipeline`` (batch N+1 prepared while batch N commits, on the projector's default number of
  commit lanes), one transaction per poll and lane (up to 5,000 events) with the offsets; with
  ``--one-lane`` also on a single lane; with ``--processes K`` also as K projector processes, each
  given its share of the partitions (as the members of one consumer group), whose read models are
  then compared with the one-process run's, table by table;
- naive: the same SQL, committing each event in its own transaction (run over the first M events,
  since at its rate the whole log would take too long), once with plyr-index's asynchronous commit and
  once with Postgres' default durable commit (what a straightforward projector runs with);
- replay: ``plyr-index replay``'s path (``projector.app.rebuild``) over the same log, with the swap.
With ``--statements`` (and ``--server write-heavy``) the server loads pg_stat_statements, and the
one-process run is followed by the server's time per event, in total and for the costliest statements.
Prints events/s for each and the ratio. Uses the Postgres at PLYR_BENCH_PG (default the local server),
in a database ``plyr_bench`` it recreates; ``--server write-heavy`` instead starts an embedded
PostgreSQL with ``runtime.embedded_pg.WRITE_HEAVY`` (shared buffers and checkpoint spacing for a write
load) on a fresh data directory, removed afterwards, and runs every path there.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from multiprocessing.synchronize import Barrier as BarrierType
from pathlib import Path

import asyncpg
import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ingest.producer import ensure_topic
from projector.app import open_store, rebuild
from projector.pipeline import CommitPipeline
from projector.prepare import LogMessage
from projector.settings import ProjectorSettings
from projector.store import Store
from projector.validate import RecordValidator
from runtime.embedded_pg import WRITE_HEAVY, running_embedded
from runtime.gc_tuning import tune_for_batches
from runtime.settings import PlatformSettings
from schemas.codec import encode
from schemas.envelope import Event
from schemas.topics import key_for
from tests.fixtures import events as ev
from tests.fixtures.read_models import TABLES
from tests.services import start_broker

ADMIN = os.environ.get("PLYR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
_GROUP_SCHEMA = "bench_group"


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


async def produce(bootstrap: str, topic: str, events: list[Event], partitions: int) -> dict[int, int]:
    """Write ``events`` to a new ``topic``; return how many went to each partition."""
    await ensure_topic(bootstrap, topic, partitions)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1 << 20, compression_type="zstd"
    )
    await producer.start()
    try:
        counts = dict.fromkeys(range(partitions), 0)
        # Acknowledged 20,000 at a time, which bounds the sends in flight.
        for first in range(0, len(events), 20_000):
            futures = [
                await producer.send(topic, encode(e), key=key_for(e.did)) for e in events[first : first + 20_000]
            ]
            for sent in await asyncio.gather(*futures):
                counts[sent.partition] += 1
        return counts
    finally:
        await producer.stop()


async def consume_into(
    store: Store,
    bootstrap: str,
    topic: str,
    sizes: Mapping[int, int],
    *,
    batch: int,
    lanes: int = 1,
    ready: Callable[[], Awaitable[None]] | None = None,
) -> float:
    """Feed the partitions of ``topic`` named in ``sizes`` (partition → messages it holds, from 0) to
    ``store`` in polls of up to ``batch``; return events/s. ``ready`` is awaited once the consumer is
    in place, before the clock starts."""
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
        tps = [TopicPartition(topic, p) for p in sorted(sizes)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        # Read up to each partition's size, by offset (the broker's end offsets are not exact, see
        # RECIPES), not by a count of messages, which a fetch handing some over twice would cut short.
        reached = dict.fromkeys(sizes, 0)
        pipeline = CommitPipeline(store, lanes)
        if ready is not None:
            await ready()
        start = time.perf_counter()
        while any(reached[p] < size for p, size in sizes.items()):
            polled = await consumer.getmany(timeout_ms=1000, max_records=batch)
            messages = [LogMessage(tp.partition, m.offset, m.value or b"") for tp, ms in polled.items() for m in ms]
            if batch == 1:
                for m in messages:
                    await store.apply([m])
            elif messages:
                await pipeline.submit(messages)
            for m in messages:
                reached[m.partition] = max(reached[m.partition], m.offset + 1)
        await pipeline.flush()
        return sum(sizes.values()) / (time.perf_counter() - start)
    finally:
        await consumer.stop()


async def _arrive(barrier: BarrierType) -> None:
    await asyncio.to_thread(barrier.wait)


def _group_member(
    bootstrap: str, dsn: str, topic: str, sizes: dict[int, int], lanes: int, barrier: BarrierType
) -> None:
    """One of ``--processes``: a projector process applying its share of the partitions."""
    tune_for_batches()

    async def run() -> None:
        async with asyncpg.create_pool(dsn, min_size=1, max_size=lanes + 2) as pool:
            store = Store(pool, _GROUP_SCHEMA, RecordValidator(), topic)
            await consume_into(
                store,
                bootstrap,
                topic,
                sizes,
                batch=5000,
                lanes=lanes,
                ready=lambda: _arrive(barrier),
            )

    uvloop.run(run())


async def group_rate(bootstrap: str, dsn: str, topic: str, sizes: dict[int, int], processes: int, lanes: int) -> float:
    """events/s of ``processes`` projector processes splitting the partitions (``sizes``: partition →
    messages), as the members of one consumer group do after a rebalance; the clock runs from when all
    are in place to the last done."""
    async with asyncpg.create_pool(dsn, min_size=1, max_size=1) as pool:
        await open_store(pool, _GROUP_SCHEMA, topic)  # migrate once, before the members start
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(processes + 1)
    members = [
        spawn.Process(
            target=_group_member,
            args=(bootstrap, dsn, topic, {p: sizes[p] for p in sorted(sizes)[i::processes]}, lanes, barrier),
        )
        for i in range(processes)
    ]
    for member in members:
        member.start()
    await _arrive(barrier)
    start = time.perf_counter()
    for member in members:
        await asyncio.to_thread(member.join)
    seconds = time.perf_counter() - start
    failed = [m.exitcode for m in members if m.exitcode != 0]
    if failed:
        raise RuntimeError(f"a projector process exited with {failed}")
    return sum(sizes.values()) / seconds


async def differences(pool: asyncpg.Pool, a: str, b: str) -> dict[str, int]:
    """Per table, the rows in one of the read models ``a`` and ``b`` and not in the other (as multisets)."""
    out = {}
    for table, cols in TABLES.items():
        one, two = f"SELECT {cols} FROM {a}.{table}", f"SELECT {cols} FROM {b}.{table}"
        out[table] = await pool.fetchval(
            f"SELECT count(*) FROM (({one} EXCEPT ALL {two}) UNION ALL ({two} EXCEPT ALL {one})) d"
        )
    return out


async def top_statements(pool: asyncpg.Pool, events: int, limit: int = 15) -> None:
    """Print the server's time per event in total and for the statements that took the most
    (pg_stat_statements, since its last reset)."""
    total = await pool.fetchval("SELECT sum(total_exec_time) FROM pg_stat_statements")
    print(f"server statement time: {total / events * 1e3:.1f} µs per event; the most:")
    for r in await pool.fetch(
        "SELECT total_exec_time AS ms, calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 90) AS sql"
        " FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT $1",
        limit,
    ):
        print(f"  {r['ms'] / events * 1e3:6.1f} µs/event {r['calls']:7,} calls  {r['sql']}")


async def main_async(
    server: str,
    n: int,
    naive_n: int,
    partitions: int,
    lanes: int,
    one_lane: bool,
    processes: int = 1,
    *,
    statements: bool = False,
) -> None:
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
        full = await produce(broker.bootstrap, "bench.full", events, partitions)
        naive_sizes = await produce(broker.bootstrap, "bench.naive", naive_events, partitions)
        print(f"log: {n:,} events ({partitions} partitions) built and produced in {time.perf_counter() - t:.0f} s")
        async with asyncpg.create_pool(dsn, min_size=1, max_size=lanes + 2) as pool:
            ours_store = await open_store(pool, "bench_ours", "bench.full")
            if statements:
                await pool.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                await pool.execute("SELECT pg_stat_statements_reset()")
            ours = await consume_into(ours_store, broker.bootstrap, "bench.full", full, batch=5000, lanes=lanes)
            if statements:
                await top_statements(pool, n)
            single = None
            if one_lane:
                single_store = await open_store(pool, "bench_one_lane", "bench.full")
                single = await consume_into(single_store, broker.bootstrap, "bench.full", full, batch=5000)
            group = None
            if processes > 1:
                group = await group_rate(broker.bootstrap, dsn, "bench.full", full, processes, lanes)
                # Split or not, the same log must give the same read models.
                differ = {t: c for t, c in (await differences(pool, "bench_ours", _GROUP_SCHEMA)).items() if c}
                print(f"{processes} processes against one: {differ or 'the same read models'}")
            naive = await consume_into(
                await open_store(pool, "bench_naive", "bench.naive"),
                broker.bootstrap,
                "bench.naive",
                naive_sizes,
                batch=1,
            )
            await open_store(pool, "bench_naive_durable", "bench.naive")  # migrate
            durable = Store(pool, "bench_naive_durable", RecordValidator(), "bench.naive", wait_for_flush=True)
            naive_durable = await consume_into(durable, broker.bootstrap, "bench.naive", naive_sizes, batch=1)
        plat = PlatformSettings(kafka_bootstrap=broker.bootstrap, database_url=dsn, events_topic="bench.full")
        result = await rebuild(plat, ProjectorSettings(schema_name="bench_ours", metrics_port=0, commit_lanes=lanes))
        replay = result.events / result.seconds
        print(f"{'path':<60}{'events/s':>10}")
        print(f"{f'plyr-index ({lanes} commit lanes, a transaction per poll and lane)':<60}{ours:>10,.0f}")
        if single is not None:
            print(f"{'plyr-index (one commit lane)':<60}{single:>10,.0f}")
        if group is not None:
            print(f"{f'plyr-index, {processes} processes splitting the partitions':<60}{group:>10,.0f}")
        first = f"first {naive_n:,}"
        print(f"{'naive, async commit (a transaction per event, ' + first + ')':<60}{naive:>10,.0f}")
        print(f"{'naive, default durable commit (' + first + ')':<60}{naive_durable:>10,.0f}")
        print(f"{'replay (rebuild from offset 0 + swap)':<60}{replay:>10,.0f}")
        print(f"ratio plyr-index / naive with async commit: {ours / naive:.1f}x")
        print(f"ratio plyr-index / naive with durable commit: {ours / naive_durable:.1f}x")
        if group is not None:
            print(f"ratio {processes} processes / naive with async commit: {group / naive:.1f}x")
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
        "--processes",
        type=int,
        default=1,
        help="also run plyr-index as this many processes splitting the partitions (one consumer group's members)",
    )
    p.add_argument(
        "--server",
        choices=("local", "write-heavy"),
        default="local",
        help="the Postgres at PLYR_BENCH_PG, or an embedded one tuned for writes (runtime.embedded_pg.WRITE_HEAVY)",
    )
    p.add_argument(
        "--statements",
        action="store_true",
        help="with --server write-heavy: print the server's time per event by statement for the one-process run",
    )
    args = p.parse_args()
    if args.statements and args.server != "write-heavy":
        p.error("--statements needs --server write-heavy (pg_stat_statements is loaded at the server's start)")
    # As the projector and replay processes do at start (plyr-index project / replay).
    tune_for_batches()

    def run(server: str) -> None:
        uvloop.run(
            main_async(
                server,
                args.events,
                args.naive_events,
                args.partitions,
                args.lanes,
                args.one_lane,
                args.processes,
                statements=args.statements,
            )
        )

    if args.server == "local":
        run(ADMIN)
        return 0
    scratch = Path(tempfile.mkdtemp(prefix="plyr-bench-pg-"))
    try:
        settings = {**WRITE_HEAVY, "shared_preload_libraries": "pg_stat_statements"} if args.statements else WRITE_HEAVY
        with running_embedded(scratch / "postgres", scratch / "postgres.log", settings, keep=False) as embedded:
            print(f"server: embedded PostgreSQL 18 with {', '.join(f'{k}={v}' for k, v in settings.items())}")
            run(embedded.admin_url)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
