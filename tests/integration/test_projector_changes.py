"""The change log on the real broker and Postgres: kinds in log order per repo, nothing for stale,
re-delivered or never-live events, list item diffs, and seq order = commit order with two projectors."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import orjson
import pytest
from prometheus_client import CollectorRegistry

from ingest.producer import ensure_topic
from projector import app
from projector.prepare import LogMessage
from runtime.settings import PlatformSettings
from schemas.codec import encode
from schemas.envelope import Event
from tests.fixtures import events as ev
from tests.integration.test_projector import produce, projecting, settings, uri, wait_applied, workload

pytestmark = pytest.mark.integration

A = "did:plc:artistaaaaaaaaaaaaaaaaaa"
B = "did:plc:listenerbbbbbbbbbbbbbbbb"
TRACK, LIKE, LIST, COMMENT = "fm.plyr.track", "fm.plyr.like", "fm.plyr.list", "fm.plyr.comment"

Row = tuple[str, str, str | None, str | None, Any]


async def change_log(pool: asyncpg.Pool, schema: str) -> list[Row]:
    """(kind, did, uri, subject_uri, detail) in seq order."""
    rows = await pool.fetch(f"SELECT kind, did, uri, subject_uri, detail FROM {schema}.changes ORDER BY seq")
    return [
        (r["kind"], r["did"], r["uri"], r["subject_uri"], orjson.loads(r["detail"]) if r["detail"] else None)
        for r in rows
    ]


def by_repo(log: list[Row]) -> dict[str, list[Row]]:
    """The log per repo, each in log order (a repo's events share a partition, so this order is the
    log's whatever the batching or the number of projectors)."""
    out: dict[str, list[Row]] = {}
    for row in log:
        out.setdefault(row[1], []).append(row)
    return out


def album(name: str, items: list[str]) -> dict[str, Any]:
    return {**ev.playlist(name, [(u, ev.cid_of(ev.track(u))) for u in items]), "listType": "album"}


async def test_kinds_in_log_order_and_nothing_for_stale_or_redelivered_events(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    t1, t2, t4, t5, t6 = (uri(A, TRACK, f"3t{i}aaaaaaaaaa") for i in (1, 2, 4, 5, 6))
    t1_cid = ev.cid_of(ev.track("One"))
    lp, like, comment = uri(A, LIST, "3p1aaaaaaaaaa"), uri(B, LIKE, "3l1bbbbbbbbbb"), uri(B, COMMENT, "3c1bbbbbbbbbb")
    events: list[Event] = [
        ev.put(A, TRACK, "3t1aaaaaaaaaa", 1, ev.track("One")),
        ev.put(A, TRACK, "3t1aaaaaaaaaa", 2, ev.track("One (edit)"), create=False),
        ev.put(A, TRACK, "3t2aaaaaaaaaa", 3, ev.track("Two")),
        ev.delete(A, TRACK, "3t2aaaaaaaaaa", 5),
        ev.put(A, TRACK, "3t2aaaaaaaaaa", 4, ev.track("Two")),  # late create after the delete: stale
        ev.put(A, TRACK, "3t1aaaaaaaaaa", 2, ev.track("One (edit)"), create=False),  # re-delivered: stale
        ev.delete(A, TRACK, "3t3aaaaaaaaaa", 6),  # never live
        ev.put(
            A,
            "fm.plyr.actor.profile",
            "self",
            7,
            {"$type": "fm.plyr.actor.profile", "bio": "hi", "createdAt": "2026-10-01T00:00:00Z"},
        ),
        ev.put(A, LIST, "3p1aaaaaaaaaa", 8, album("LP", [t1, t4, t5])),
        ev.put(A, LIST, "3p1aaaaaaaaaa", 9, album("LP", [t1, t4, t5, t6]), create=False),
        ev.put(B, LIKE, "3l1bbbbbbbbbb", 20, ev.like(t1, t1_cid)),
        ev.put(B, COMMENT, "3c1bbbbbbbbbb", 21, ev.comment(t1, t1_cid, "nice", 1000)),
        ev.put(B, COMMENT, "3c1bbbbbbbbbb", 22, ev.comment(t1, t1_cid, "very nice", 1000), create=False),
        ev.delete(B, COMMENT, "3c1bbbbbbbbbb", 23),
        ev.delete(B, LIKE, "3l1bbbbbbbbbb", 24),
        ev.account(B, 25, False, "takendown"),
        ev.account(B, 26, True),
    ]
    schema = "chg_a"
    plat = PlatformSettings(kafka_bootstrap=kafka_bootstrap, database_url=database_url, events_topic=topic)
    lp_detail = {"listType": "album", "name": "LP"}
    want_a: list[Row] = [
        ("track.created", A, t1, None, None),
        ("track.updated", A, t1, None, None),
        ("track.created", A, t2, None, None),
        ("track.deleted", A, t2, None, None),
        ("profile.updated", A, None, None, None),
        ("list.created", A, lp, None, lp_detail),
        ("list.item_added", A, lp, t1, lp_detail),
        ("list.item_added", A, lp, t4, lp_detail),
        ("list.item_added", A, lp, t5, lp_detail),
        ("list.updated", A, lp, None, lp_detail),
        ("list.item_added", A, lp, t6, lp_detail),
    ]
    want_b: list[Row] = [
        ("like.created", B, like, t1, None),
        ("comment.created", B, comment, t1, None),
        ("comment.updated", B, comment, t1, None),
        ("comment.deleted", B, comment, t1, None),
        ("like.deleted", B, like, t1, None),
        ("account.status", B, None, None, {"active": False, "status": "takendown"}),
        ("account.status", B, None, None, {"active": True, "status": None}),
    ]
    async with projecting(plat, settings(schema)):
        await produce(kafka_bootstrap, topic, events)
        await wait_applied(pool, schema, topic, len(events))
        assert by_repo(await change_log(pool, schema)) == {A: want_a, B: want_b}
        # The record events again at new offsets (an upstream replaying them), the last account event
        # again (#account has no rev: it applies, but changes no status), then a create older than a
        # delete in a later batch: nothing is logged.
        again = [*events[:-2], events[-1], ev.put(A, TRACK, "3t2aaaaaaaaaa", 4, ev.track("Two"))]
        await produce(kafka_bootstrap, topic, again)
        await wait_applied(pool, schema, topic, len(events) + len(again))
        assert by_repo(await change_log(pool, schema)) == {A: want_a, B: want_b}
    seqs = [r["seq"] for r in await pool.fetch(f"SELECT seq FROM {schema}.changes ORDER BY seq")]
    assert seqs == list(range(1, len(want_a) + len(want_b) + 1))


async def test_a_batch_delivered_twice_logs_once(pool: asyncpg.Pool, topic: str) -> None:
    store = await app.open_store(pool, "chg_b", topic)
    t = ev.track("Song")
    t_uri = uri(A, TRACK, "3t1aaaaaaaaaa")
    batch = [
        LogMessage(0, i, encode(e))
        for i, e in enumerate(
            [
                ev.put(A, TRACK, "3t1aaaaaaaaaa", 1, t),
                ev.put(B, LIKE, "3l1bbbbbbbbbb", 2, ev.like(t_uri, ev.cid_of(t))),
                ev.account(B, 3, False, "deactivated"),
            ]
        )
    ]
    first = await store.apply(batch)
    # A crash after the commit, or a rebalance race: the same messages at the same offsets again.
    second = await store.apply(batch)
    assert (first.changes, second.changes, second.skipped_offsets) == (3, 0, 3)
    assert [r[0] for r in await change_log(pool, "chg_b")] == ["track.created", "like.created", "account.status"]


async def test_a_purge_logs_only_its_status(pool: asyncpg.Pool, topic: str) -> None:
    store = await app.open_store(pool, "chg_c", topic)
    t = ev.track("Song")
    events: list[Event] = [
        ev.put(B, TRACK, "3t1bbbbbbbbbb", 1, t),
        ev.put(B, LIKE, "3l1bbbbbbbbbb", 2, ev.like(uri(B, TRACK, "3t1bbbbbbbbbb"), ev.cid_of(t))),
    ]
    await store.apply([LogMessage(0, i, encode(e)) for i, e in enumerate(events)])
    purge = [ev.account(B, 3, False, "deleted"), ev.delete(B, TRACK, "3t1bbbbbbbbbb", 4)]
    await store.apply([LogMessage(0, i + 2, encode(e)) for i, e in enumerate(purge)])
    assert [(r[0], r[4]) for r in await change_log(pool, "chg_c")] == [
        ("track.created", None),
        ("like.created", None),
        ("account.status", {"active": False, "status": "deleted"}),
    ]


async def test_two_projectors_append_in_commit_order_the_same_rows_as_one(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    events = workload(1500, seed=41)
    plat = PlatformSettings(kafka_bootstrap=kafka_bootstrap, database_url=database_url, events_topic=topic)
    await ensure_topic(kafka_bootstrap, topic, 4)
    schema, group = "chg_two", "chg-two"
    registries = [CollectorRegistry(), CollectorRegistry()]
    # A reader polling the log while both projectors append: every read must see seqs 1..max with
    # no hole, or a reader that saw seq N could later find a row below N.
    holes: list[tuple[int, int]] = []
    reads = 0

    async def read() -> None:
        nonlocal reads
        while True:
            with contextlib.suppress(asyncpg.UndefinedTableError):
                count, top = await pool.fetchrow(f"SELECT count(*), coalesce(max(seq), 0) FROM {schema}.changes")
                reads += 1
                if count != top:
                    holes.append((count, top))
            await asyncio.sleep(0.005)

    reader = asyncio.create_task(read())
    try:
        async with (
            projecting(plat, settings(schema, group), registries[0]),
            projecting(plat, settings(schema, group), registries[1]),
        ):
            await asyncio.sleep(4)  # both join the group and split the partitions
            await produce(kafka_bootstrap, topic, events, partitions=4)
            await wait_applied(pool, schema, topic, len(events), timeout=90)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    applied = [r.get_sample_value("plyr_projector_batch_size_sum") or 0 for r in registries]
    assert all(applied), f"both projectors should have applied batches: {applied}"
    assert reads > 10 and not holes, f"holes seen by the reader: {holes[:5]}"
    seqs = [r["seq"] for r in await pool.fetch(f"SELECT seq FROM {schema}.changes ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))
    # The same rows as one projector over the same log, in the same order per repo.
    async with projecting(plat, settings("chg_one")):
        await wait_applied(pool, "chg_one", topic, len(events))
    two, one = await change_log(pool, schema), await change_log(pool, "chg_one")
    assert len(one) > len(events) // 2
    assert by_repo(two) == by_repo(one)
