"""Ingest benchmark: decode + filter throughput on one core, against the atproto SDK's own path.

    python -m bench.ingest_decode [--frames N] [--rounds R] [--produce]

Side by side over the same frames of a network-like capture (bench/network_mix.py):
- plyr-index: ``ingest.pipeline.process_frame`` (decode, type, filter to fm.plyr.*, read the CAR and
  the records of in-scope ops, build envelopes);
- sdk-example: the SDK's documented pattern: ``Frame.from_bytes`` → ``parse_subscribe_repos_message``
  → ``CAR.from_bytes(commit.blocks)`` for every commit, then the filter;
- sdk-filter-first: the same SDK calls, but the CAR only for commits that touch fm.plyr.* (the
  fairest use of the SDK).
With ``--produce`` it also replays the capture through the ingester into a real tansu broker (started
here), with the fm.plyr.* filter and with '*' (every op produced), reported separately.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.network_mix import load
from schemas.ids import CollectionFilter


def ours(frames: list[bytes]) -> int:
    from ingest.pipeline import process_frame

    collections = CollectionFilter.parse("fm.plyr.*")
    records = 0
    for data in frames:
        outcome = process_frame(data, upstream="bench", collections=collections)
        records += sum(1 for e in outcome.events if e.kind == "record")
    return records


def _sdk(frames: list[bytes], filter_first: bool) -> int:
    from atproto import CAR, firehose_models, models, parse_subscribe_repos_message

    events = 0
    for data in frames:
        frame = firehose_models.Frame.from_bytes(data)
        if not isinstance(frame, firehose_models.MessageFrame):
            continue
        message = parse_subscribe_repos_message(frame)
        if not isinstance(message, models.ComAtprotoSyncSubscribeRepos.Commit):
            continue
        if filter_first and not any(op.path.startswith("fm.plyr.") for op in message.ops):
            continue
        car = CAR.from_bytes(message.blocks)
        for op in message.ops:
            if op.path.startswith("fm.plyr.") and op.cid is not None:
                record = car.blocks.get(op.cid)
                if record is not None:
                    events += 1
    return events


def sdk_example(frames: list[bytes]) -> int:
    return _sdk(frames, filter_first=False)


def sdk_filter_first(frames: list[bytes]) -> int:
    return _sdk(frames, filter_first=True)


def measure(fn: Callable[[list[bytes]], int], frames: list[bytes], rounds: int) -> tuple[float, int]:
    rates = []
    events = 0
    for _ in range(rounds):
        gc.collect()
        start = time.perf_counter()
        events = fn(frames)
        rates.append(len(frames) / (time.perf_counter() - start))
    return statistics.median(rates), events


async def produce_rate(frames: list[bytes], collections: str) -> tuple[float, int]:
    from prometheus_client import CollectorRegistry

    from ingest.app import Ingester, replay_file
    from ingest.capture import write_frames
    from ingest.dedupe import Deduper
    from ingest.metrics import IngestMetrics
    from ingest.producer import KafkaSink, ensure_topic
    from tests.services import start_broker

    broker = start_broker()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "cap.bin"
            write_frames(path, frames)
            topic = f"bench.{int(time.time() * 1000)}"
            await ensure_topic(broker.bootstrap, topic, 8)
            metrics = IngestMetrics(CollectorRegistry())
            async with KafkaSink(broker.bootstrap, topic, idempotence=False, compression="zstd") as sink:
                ingester = Ingester(sink, CollectionFilter.parse(collections), metrics, Deduper())
                start = time.perf_counter()
                await replay_file(path, ingester, sink)
                elapsed = time.perf_counter() - start
            produced = sum(s.value for m in metrics.events.collect() for s in m.samples if s.name.endswith("_total"))
            return len(frames) / elapsed, int(produced)
    finally:
        broker.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--produce", action="store_true")
    args = p.parse_args()
    frames = load(args.frames)
    size = statistics.mean(len(f) for f in frames)
    print(f"capture: {len(frames)} frames, mean {size:,.0f} bytes; median of {args.rounds} rounds, one core")
    r_ours, e_ours = measure(ours, frames, args.rounds)
    r_ex, e_ex = measure(sdk_example, frames, max(1, args.rounds // 2))
    r_ff, e_ff = measure(sdk_filter_first, frames, max(1, args.rounds // 2))
    print(f"{'path':<34}{'frames/s':>12}{'fm.plyr records':>16}")
    print(f"{'plyr-index decode+filter':<34}{r_ours:>12,.0f}{e_ours:>16}")
    print(f"{'sdk-example (CAR every commit)':<34}{r_ex:>12,.0f}{e_ex:>16}")
    print(f"{'sdk-filter-first':<34}{r_ff:>12,.0f}{e_ff:>16}")
    print(f"ratio vs sdk-example:      {r_ours / r_ex:6.1f}x")
    print(f"ratio vs sdk-filter-first: {r_ours / r_ff:6.1f}x")
    if args.produce:
        for pattern in ("fm.plyr.*", "*"):
            rate, produced = asyncio.run(produce_rate(frames, pattern))
            print(f"replay + produce to tansu (--collections {pattern!r}): {rate:,.0f} frames/s, {produced} events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
