"""The whole trust path in one ingester: live signed commits verified by the gate, a repo first seen
mid-history backfilled by the sync worker while its live commits keep coming (held, then released in
order), and a gap resynced, all through the real broker into the real projector. The read models end
exactly equal to the repo's own records."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from runtime.settings import PlatformSettings
from tests.fixtures.firehose_server import FirehoseServer
from tests.fixtures.frames import Write
from tests.fixtures.sync_world import sync_world
from tests.integration.test_backfill import in_scope, ingest_settings, make_repo
from tests.integration.test_ingest_live import running
from tests.integration.test_projector import projecting, settings

pytestmark = pytest.mark.integration

TRACK = "fm.plyr.track"


def track(title: str) -> dict[str, object]:
    return {"$type": TRACK, "title": title, "artist": "a", "fileType": "mp3", "createdAt": "2026-11-01T00:00:00Z"}


async def indexed(pool: asyncpg.Pool, schema: str, did: str) -> dict[str, str]:
    if not await pool.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.records"):
        return {}  # the projector has not migrated its schema yet
    rows = await pool.fetch(
        f"SELECT collection, rkey, cid FROM {schema}.records WHERE did = $1 AND state = 'live'", did
    )
    return {f"{r['collection']}/{r['rkey']}": r["cid"] for r in rows}


async def wait_equal(pool: asyncpg.Pool, schema: str, did: str, want: dict[str, str], timeout: float = 60) -> None:
    got: dict[str, str] = {}
    try:
        async with asyncio.timeout(timeout):
            while (got := await indexed(pool, schema, did)) != want:
                await asyncio.sleep(0.2)
    except TimeoutError:
        missing, extra = sorted(set(want) - set(got))[:5], sorted(set(got) - set(want))[:5]
        repos = [dict(r) for r in await pool.fetch("SELECT did, rev, sync_state, reason FROM plyr_ingest.repos")]
        raise AssertionError(f"index != repo: missing {missing}, extra {extra}; repos {repos}") from None


async def test_a_backfill_racing_live_commits_and_a_resync_end_equal_to_the_repo(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    schema = "live_backfill"
    plat = PlatformSettings(kafka_bootstrap=kafka_bootstrap, database_url=database_url, events_topic=topic)
    async with sync_world() as world:
        old = make_repo("history", plyr=40, other=20)  # records written before we listened
        world.host(old)
        old_rkeys = sorted(p.split("/", 1)[1] for p in old.records if p.startswith(f"{TRACK}/"))
        async with FirehoseServer() as server:
            ingest = ingest_settings(world, upstreams=(server.url,), verify_commits=True, cursor_flush_interval_s=0.1)
            seq = 0

            async def live(writes: list[Write]) -> None:
                nonlocal seq
                seq += 1
                frame = old.commit(writes)
                await server.append(seq, _with_seq(frame, seq))

            async with running(plat, ingest), projecting(plat, settings(schema)):
                async with asyncio.timeout(30):  # a new subscriber gets what comes after it connects
                    while not server.connections:
                        await asyncio.sleep(0.05)
                # First seen mid-history: queued for backfill; this and the next commits are held
                # while the export runs, and may land before or after it.
                await live([Write("create", TRACK, "live1", track("live one"))])
                await live([Write("delete", TRACK, old_rkeys[0])])
                await live([Write("update", TRACK, old_rkeys[1], track("rewritten live"))])
                await wait_equal(pool, schema, old.did, in_scope(old))
                # Verified live from here on.
                await live([Write("create", TRACK, "live2", track("live two"))])
                await wait_equal(pool, schema, old.did, in_scope(old))
                # A gap: a commit never reaches us, and a record vanishes with it. The next commit
                # fails its prevData check, the repo is resynced, and the vanished record is deleted.
                old.commit([Write("delete", TRACK, old_rkeys[2])])
                await live([Write("create", TRACK, "after_gap", track("after the gap"))])
                await wait_equal(pool, schema, old.did, in_scope(old))
                row = await pool.fetchrow("SELECT sync_state, rev FROM plyr_ingest.repos WHERE did = $1", old.did)
                assert row is not None and row["sync_state"] == "synchronized"
    assert f"{TRACK}/live1" in in_scope(old) and f"{TRACK}/{old_rkeys[0]}" not in in_scope(old)


def _with_seq(frame: bytes, seq: int) -> bytes:
    """``frame`` as the firehose server numbers it (the repo fixture numbers its own commits)."""
    from ingest.frames import MessageFrame, decode_frame
    from tests.fixtures.frames import message_frame

    decoded = decode_frame(frame)
    assert isinstance(decoded, MessageFrame)
    return message_frame(decoded.t, {**decoded.body, "seq": seq})
