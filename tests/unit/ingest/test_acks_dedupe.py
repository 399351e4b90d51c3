"""AckTracker never advances past an unacknowledged frame; Deduper remembers deliveries."""

from __future__ import annotations

import asyncio

import pytest

from ingest.acks import AckTracker
from ingest.dedupe import Deduper
from ingest.errors import BrokerError


async def test_cursor_waits_for_the_oldest_unacknowledged_frame() -> None:
    loop = asyncio.get_running_loop()
    tracker = AckTracker(acked=100)
    f1: asyncio.Future[object] = loop.create_future()
    f2: asyncio.Future[object] = loop.create_future()
    tracker.add(101, [])
    assert tracker.acked == 101
    tracker.add(102, [f1])
    tracker.add(103, [])
    tracker.add(104, [f2])
    assert tracker.poll() == 101
    f2.set_result(None)  # a later ack must not move the cursor past 102
    assert tracker.poll() == 101
    f1.set_result(None)
    assert tracker.poll() == 104
    assert len(tracker) == 0


async def test_failed_delivery_raises_broker_error_and_keeps_cursor() -> None:
    loop = asyncio.get_running_loop()
    tracker = AckTracker(acked=5)
    fut: asyncio.Future[object] = loop.create_future()
    tracker.add(6, [fut])
    fut.set_exception(RuntimeError("broker gone"))
    with pytest.raises(BrokerError):
        tracker.poll()
    assert tracker.acked == 5


async def test_drain_waits_for_everything() -> None:
    loop = asyncio.get_running_loop()
    tracker = AckTracker()
    fut: asyncio.Future[object] = loop.create_future()
    tracker.add(1, [fut])
    loop.call_later(0.01, fut.set_result, None)
    assert await tracker.drain() == 1


async def test_deduper_by_rev_and_content() -> None:
    loop = asyncio.get_running_loop()
    d = Deduper(max_repos=2, max_other=1)
    fut: asyncio.Future[object] = loop.create_future()
    assert d.seen_commit("did:plc:a", "3kaaaaaaaaaa2") is None
    d.record_commit("did:plc:a", "3kaaaaaaaaaa2", [fut])
    assert d.seen_commit("did:plc:a", "3kaaaaaaaaaa2") == [fut]
    assert d.seen_commit("did:plc:a", "3kaaaaaaaaaa1") == [fut]  # older rev: already superseded
    assert d.seen_commit("did:plc:a", "3kaaaaaaaaaa3") is None  # newer rev: new commit
    d.record_commit("did:plc:b", "3kaaaaaaaaaa2", [])
    d.record_commit("did:plc:c", "3kaaaaaaaaaa2", [])
    assert d.seen_commit("did:plc:a", "3kaaaaaaaaaa2") is None  # evicted: bounded memory
    d.record_other(("identity", "did:plc:a"), [])
    assert d.seen_other(("identity", "did:plc:a")) == []
    d.record_other(("identity", "did:plc:b"), [])
    assert d.seen_other(("identity", "did:plc:a")) is None
