"""The real ingester against a hostile upstream, with figures: what was sent, what was counted, what
arrived, how long it took and what it cost in memory.

    .venv/bin/python -m bench.hostile_upstream              # 120 good frames, one of each bad entry
    .venv/bin/python -m bench.hostile_upstream --good 2000  # more good frames around the same entries

Starts the embedded broker (tansu) and uses a fresh database ``plyr_bench_hostile`` on the Postgres at
127.0.0.1:5432 (``PLYR_TEST_PG`` for another admin DSN). The script is the one of the integration test
(tests/fixtures/hostile_firehose.py ``build_script``); verification is off, as there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import sys
import time
import uuid

import asyncpg
from prometheus_client import CollectorRegistry

from ingest import app
from ingest.cursor import PostgresCursorStore
from ingest.settings import IngestSettings
from runtime.logging import configure
from runtime.settings import PlatformSettings
from schemas.envelope import RecordEvent
from tests.fixtures.hostile_firehose import HOSTILE, MAX_FRAME, HostileFirehoseServer, build_script
from tests.fixtures.kafka import consume_all
from tests.services import free_port, start_broker

ADMIN = os.environ.get("PLYR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DB = "plyr_bench_hostile"


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(good: int) -> int:
    script, expected_ops, expected_other = build_script(good)
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {DB}")
    await admin.close()
    dsn = ADMIN.rsplit("/", 1)[0] + f"/{DB}"
    broker = start_broker()
    topic = f"bench.hostile.{uuid.uuid4().hex[:8]}"
    registry = CollectorRegistry()
    try:
        async with (
            asyncpg.create_pool(dsn, min_size=1, max_size=2) as pool,
            HostileFirehoseServer(script.entries) as server,
        ):
            await app.open_cursor_store(pool)
            store = PostgresCursorStore(pool)
            await store.save(server.url, 0)
            plat = PlatformSettings(
                kafka_bootstrap=broker.bootstrap, database_url=dsn, events_topic=topic, topic_partitions=3
            )
            settings = IngestSettings(
                upstreams=(server.url,),
                metrics_port=0,
                cursor_flush_interval_s=0.1,
                stall_timeout_s=1.5,
                max_frame_bytes=MAX_FRAME,
                plc_url=f"http://127.0.0.1:{free_port()}",
                verify_commits=False,
            )
            rss_before = _rss_mib()
            start = time.monotonic()
            task = asyncio.create_task(app.run(plat, settings, out=sys.stdout.buffer, registry=registry))
            try:
                while (await store.load(server.url)).seq != script.seq:
                    if task.done():
                        print("the ingester stopped:", task.result())
                        return 1
                    await asyncio.sleep(0.05)
                elapsed = time.monotonic() - start
                up = not task.done()
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            rss_after = _rss_mib()
        events = await consume_all(broker.bootstrap, topic, expect=len(expected_ops) + len(expected_other))
    finally:
        broker.stop()
        admin = await asyncpg.connect(ADMIN)
        await admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        await admin.close()

    def sample(name: str, **labels: str) -> int:
        value = registry.get_sample_value(f"plyr_ingest_{name}_total", {"upstream": server.url, **labels})
        return int(value or 0)

    hostile = [e for e in script.entries if not e.label.startswith("good") and e.label != "slow"]
    print(f"\nhostile upstream: {good} good frames, {len(hostile)} hostile entries, a slow stretch")
    print(f"{'sent by the server':<40} {'times':>6}")
    for label, n in sorted(server.sent.items(), key=lambda kv: kv[0] != "good"):
        print(f"  {label:<38} {n:>6}")
    print(f"{'drop reason':<40} {'sent':>6} {'counted':>8}")
    ok = True
    for reason, n in sorted(script.expected.items()):
        counted = sample("drops", reason=reason)
        ok &= counted == n
        print(f"  {reason:<38} {n:>6} {counted:>8}")
    records = sorted((e.did, f"{e.collection}/{e.rkey}", e.rev) for e in events if isinstance(e, RecordEvent))
    others = sorted((e.kind, e.did, e.seq) for e in events if not isinstance(e, RecordEvent))
    ok &= records == sorted(expected_ops) and others == sorted(expected_other) and up
    ok &= all(e.did != HOSTILE for e in events)
    print(f"reconnects {sample('reconnects')}, error frames {sample('error_frames', error='ConsumerTooSlow')},")
    print(f"  unknown-kind frames {sample('frames', kind='unknown')}, ingester up at the end: {up}")
    print(f"events expected {len(expected_ops) + len(expected_other)}, arrived {len(events)}, exact match: {ok}")
    print(
        f"time to the last frame's cursor {elapsed:.1f} s; peak RSS {rss_before:.0f} MiB before, {rss_after:.0f} after"
    )
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--good", type=int, default=120, help="good frames around the hostile entries")
    args = parser.parse_args(argv)
    # The ingester logs every drop as a warning (that is the point of the run): keep the figures readable.
    configure("ERROR", "json")
    return asyncio.run(run(args.good))


if __name__ == "__main__":
    raise SystemExit(main())
