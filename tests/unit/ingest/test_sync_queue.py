"""The sync worker's queue: a repo whose attempt ends while the table is being read is not queued
again from that read (it may predate the attempt's outcome)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from prometheus_client import CollectorRegistry

from ingest.backfill import SyncWorker
from ingest.metrics import IngestMetrics
from ingest.repo_state import MemoryRepoStateStore, RepoStatus, SyncState


class ReadRacingStore(MemoryRepoStateStore):
    """From its second read on, the table is read at once but answered only when ``answer`` is set:
    whatever an attempt saves in between is not in that answer."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.reading = asyncio.Event()
        self.answer = asyncio.Event()

    async def pending(self) -> list[RepoStatus]:
        self.reads += 1
        rows = await super().pending()
        if self.reads >= 2 and not self.answer.is_set():
            self.reading.set()
            await self.answer.wait()
        return rows


async def test_a_repo_done_while_the_table_is_read_is_not_done_again() -> None:
    store = ReadRacingStore()
    await store.request(["did:plc:a"], SyncState.BACKFILLING, "backfill")
    worker = SyncWorker(
        store,
        cast(Any, None),  # the resolver, client and sink are not reached: sync_repo is replaced below
        cast(Any, None),
        cast(Any, None),
        collections=cast(Any, None),
        metrics=IngestMetrics(CollectorRegistry()),
    )
    started, release, synced = asyncio.Event(), asyncio.Event(), []

    async def sync_repo(status: RepoStatus) -> RepoStatus:
        started.set()
        await release.wait()
        synced.append(status.did)
        done = status.moved(state=SyncState.SYNCHRONIZED, reason=None)
        await store.save([done])
        return done

    worker.sync_repo = sync_repo  # type: ignore[method-assign]
    run = asyncio.create_task(worker.run_until_empty(max_attempts=1))
    await asyncio.wait_for(started.wait(), 5)
    worker.wake()  # a second read of the table starts while the attempt runs...
    await asyncio.wait_for(store.reading.wait(), 5)
    release.set()  # ...the attempt ends and saves the repo synchronized before that read answers
    for _ in range(10):
        await asyncio.sleep(0)
    store.answer.set()
    assert await asyncio.wait_for(run, 5) == {}
    assert synced == ["did:plc:a"]
    assert worker.stats.done == 1
