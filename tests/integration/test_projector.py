"""The projector on the real broker and Postgres: ordering, tombstones, dead letters, account
lifecycle, counts, kill -9, two consumers with a rebalance, each compared with the expected state."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import uuid
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from ingest.producer import KafkaSink, ensure_topic
from projector import app
from projector.settings import ProjectorSettings
from runtime.settings import PlatformSettings
from schemas.envelope import Event, ModerationAction
from tests.fixtures import events as ev
from tests.fixtures.processes import spawn_cli
from tests.fixtures.read_models import TABLES

pytestmark = pytest.mark.integration

A = "did:plc:artistaaaaaaaaaaaaaaaaaa"
B = "did:plc:listenerbbbbbbbbbbbbbbbb"
C = "did:plc:listenercccccccccccccccc"
TRACK = "fm.plyr.track"


async def produce(bootstrap: str, topic: str, events: Sequence[Event], partitions: int = 3) -> None:
    await ensure_topic(bootstrap, topic, partitions)
    async with KafkaSink(bootstrap, topic, idempotence=False, compression="none") as sink:
        for event in events:
            await sink.send(event)
        await sink.flush()


def settings(schema: str, group: str | None = None) -> ProjectorSettings:
    return ProjectorSettings(
        schema_name=schema,
        group_id=group or f"g-{uuid.uuid4().hex[:8]}",
        metrics_port=0,
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
        max_batch=50,
    )


async def applied(pool: asyncpg.Pool, schema: str, topic: str) -> int:
    try:
        value = await pool.fetchval(
            f"SELECT coalesce(sum(next_offset), 0) FROM {schema}.offsets WHERE topic = $1", topic
        )
    except asyncpg.UndefinedTableError:
        return 0
    return int(value)


_RUNNING: list[asyncio.Task[int]] = []


async def wait_applied(pool: asyncpg.Pool, schema: str, topic: str, total: int, timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while await applied(pool, schema, topic) < total:
            for task in _RUNNING:
                if task.done():
                    task.result()  # surface a crashed in-process projector instead of timing out
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def projecting(
    plat: PlatformSettings, st: ProjectorSettings, registry: CollectorRegistry | None = None
) -> AsyncIterator[None]:
    task = asyncio.create_task(app.run(plat, st, registry=registry or CollectorRegistry()))
    _RUNNING.append(task)
    try:
        yield
    finally:
        _RUNNING.remove(task)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def project_all(
    bootstrap: str,
    database_url: str,
    pool: asyncpg.Pool,
    topic: str,
    events: Sequence[Event],
    schema: str,
    registry: CollectorRegistry | None = None,
) -> None:
    await produce(bootstrap, topic, events)
    plat = PlatformSettings(kafka_bootstrap=bootstrap, database_url=database_url, events_topic=topic)
    async with projecting(plat, settings(schema), registry):
        await wait_applied(pool, schema, topic, len(events))
        if registry is not None:
            # A batch's metrics are recorded when its commit is collected, at the latest one poll later.
            async with asyncio.timeout(10):
                while (registry.get_sample_value("plyr_projector_batch_size_sum") or 0) < len(events):
                    await asyncio.sleep(0.05)


def uri(did: str, collection: str, rkey: str) -> str:
    return f"at://{did}/{collection}/{rkey}"


async def test_rows_ordering_tombstones_counts_and_dead_letters(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    t1 = ev.track("First", duration=100, features=[{"did": C}])
    t1_uri, t1_cid = uri(A, TRACK, "3t1aaaaaaaaaa"), ev.cid_of(t1)
    t2_uri = uri(A, TRACK, "3t2aaaaaaaaaa")
    events: list[Event] = [
        ev.identity(A, 1, "artist.test"),
        ev.put(A, TRACK, "3t1aaaaaaaaaa", 2, t1),
        # Out of order: the update (rev 5) arrives before an older update (rev 4), and twice.
        ev.put(A, TRACK, "3t1aaaaaaaaaa", 5, ev.track("Final title", duration=120), create=False),
        ev.put(A, TRACK, "3t1aaaaaaaaaa", 4, ev.track("Stale title"), create=False),
        ev.put(A, TRACK, "3t1aaaaaaaaaa", 5, ev.track("Final title", duration=120), create=False),
        # Delete, then a late create with an older rev: must not resurrect.
        ev.put(A, TRACK, "3t2aaaaaaaaaa", 6, ev.track("Gone")),
        ev.delete(A, TRACK, "3t2aaaaaaaaaa", 8),
        ev.put(A, TRACK, "3t2aaaaaaaaaa", 7, ev.track("Gone")),
        # Likes (one liker twice via two records counts once as a distinct liker) and comments.
        ev.put(B, "fm.plyr.like", "3l1bbbbbbbbbb", 10, ev.like(t1_uri, t1_cid)),
        ev.put(C, "fm.plyr.like", "3l2cccccccccc", 11, ev.like(t1_uri, t1_cid)),
        ev.put(C, "fm.plyr.like", "3l3cccccccccc", 12, ev.like(t1_uri, t1_cid)),
        ev.put(B, "fm.plyr.comment", "3c1bbbbbbbbbb", 13, ev.comment(t1_uri, t1_cid, "at the drop", 61_000)),
        # A playlist whose second item is not indexed (yet): kept, in order.
        ev.put(B, "fm.plyr.list", "3p1bbbbbbbbbb", 14, ev.playlist("mix", [(t1_uri, t1_cid), (t2_uri, t1_cid)])),
        ev.put(
            A,
            "fm.plyr.actor.profile",
            "self",
            15,
            {"$type": "fm.plyr.actor.profile", "bio": "hi", "createdAt": "2026-10-01T00:00:00Z"},
        ),
        # Invalid: no title. Dead-lettered; nothing else is lost.
        ev.put(
            A,
            TRACK,
            "3t3aaaaaaaaaa",
            16,
            {"$type": TRACK, "artist": "x", "fileType": "mp3", "createdAt": "2026-10-01T00:00:00Z"},
        ),
    ]
    schema = "proj_a"
    registry = CollectorRegistry()
    await project_all(kafka_bootstrap, database_url, pool, topic, events, schema, registry)
    assert registry.get_sample_value("plyr_projector_dead_letters_total") == 1
    # stale: the rev-4 update, the re-delivered rev-5 update, the late create after the delete
    assert registry.get_sample_value("plyr_projector_events_stale_total") == 3
    assert registry.get_sample_value("plyr_projector_events_applied_total", {"collection": "fm.plyr.like"}) == 3
    assert (registry.get_sample_value("plyr_projector_lag_seconds") or 0) > 0
    track = await pool.fetchrow(f"SELECT * FROM {schema}.tracks WHERE uri = $1", t1_uri)
    assert track is not None
    assert (track["title"], track["duration"], track["like_count"], track["comment_count"]) == (
        "Final title",
        120,
        2,
        1,
    )
    assert track["sort_at"] <= track["indexed_at"]
    assert await pool.fetchval(f"SELECT count(*) FROM {schema}.tracks WHERE uri = $1", t2_uri) == 0
    ledger = await pool.fetchrow(f"SELECT state, rev FROM {schema}.records WHERE rkey = '3t2aaaaaaaaaa'")
    assert ledger is not None and (ledger["state"], ledger["rev"]) == ("deleted", ev.rev(8))
    items = await pool.fetch(f"SELECT position, subject_uri FROM {schema}.list_items ORDER BY position")
    assert [(r["position"], r["subject_uri"]) for r in items] == [(0, t1_uri), (1, t2_uri)]
    artist = await pool.fetchrow(f"SELECT * FROM {schema}.artists WHERE did = $1", A)
    assert artist is not None
    assert (
        artist["handle"],
        artist["bio"],
        artist["track_count"],
        artist["likes_received"],
        artist["total_duration"],
    ) == ("artist.test", "hi", 1, 2, 120)
    dead = await pool.fetch(f'SELECT rkey, reason, raw, "offset" FROM {schema}.dead_letters')
    assert [d["rkey"] for d in dead] == ["3t3aaaaaaaaaa"] and "title" in dead[0]["reason"]


async def test_account_lifecycle_hides_restores_and_purges(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    t = ev.track("Song")
    t_uri, t_cid = uri(A, TRACK, "3t1aaaaaaaaaa"), ev.cid_of(t)
    base: list[Event] = [
        ev.put(A, TRACK, "3t1aaaaaaaaaa", 1, t),
        ev.put(B, "fm.plyr.like", "3l1bbbbbbbbbb", 2, ev.like(t_uri, t_cid)),
        ev.put(C, "fm.plyr.like", "3l1cccccccccc", 3, ev.like(t_uri, t_cid)),
    ]
    schema = "proj_b"
    plat = PlatformSettings(kafka_bootstrap=kafka_bootstrap, database_url=database_url, events_topic=topic)
    st = settings(schema)
    steps: list[tuple[list[Event], int, bool]] = [
        (base, 2, True),
        ([ev.account(B, 4, False, "takendown")], 1, True),  # a hidden liker stops counting
        ([ev.account(B, 5, True)], 2, True),  # reactivated: counts again
        ([ev.account(C, 6, False, "deleted")], 1, True),  # purged: its like is gone for good
        ([ev.put(C, "fm.plyr.like", "3l1cccccccccc", 3, ev.like(t_uri, t_cid))], 1, True),  # late re-delivery
    ]
    total = 0
    async with projecting(plat, st):
        for batch, likes, _ in steps:
            await produce(kafka_bootstrap, topic, batch)
            total += len(batch)
            await wait_applied(pool, schema, topic, total)
            assert await pool.fetchval(f"SELECT like_count FROM {schema}.tracks WHERE uri = $1", t_uri) == likes
    assert await pool.fetchval(f"SELECT count(*) FROM {schema}.likes WHERE did = $1", C) == 0
    assert await pool.fetchval(f"SELECT state FROM {schema}.records WHERE did = $1", C) == "deleted"
    assert await pool.fetchval(f"SELECT likes_received FROM {schema}.artists WHERE did = $1", A) == 1


def workload(n: int, seed: int) -> list[Event]:
    """A random but valid mix of creates, updates, deletes, likes, comments, lists and account changes."""
    rng = random.Random(seed)
    artists = [f"did:plc:art{i:021d}" for i in range(5)]
    listeners = [f"did:plc:lis{i:021d}" for i in range(8)]
    tracks: dict[str, str] = {}
    out: list[Event] = []
    for n_ in range(1, n + 1):
        roll = rng.random()
        if roll < 0.35 or not tracks:
            did, rkey = rng.choice(artists), f"3t{rng.randrange(40):011d}"
            rec = ev.track(f"t{n_}", duration=rng.randrange(60, 400))
            out.append(ev.put(did, TRACK, rkey, n_, rec))
            tracks[uri(did, TRACK, rkey)] = ev.cid_of(rec)
        elif roll < 0.45:
            u = rng.choice(list(tracks))
            did, _, _, rkey = u[5:].split("/", 3)[0], None, None, u.rsplit("/", 1)[1]
            out.append(ev.delete(did, TRACK, rkey, n_))
        elif roll < 0.75:
            u = rng.choice(list(tracks))
            out.append(
                ev.put(rng.choice(listeners), "fm.plyr.like", f"3l{rng.randrange(60):011d}", n_, ev.like(u, tracks[u]))
            )
        elif roll < 0.82:
            out.append(ev.delete(rng.choice(listeners), "fm.plyr.like", f"3l{rng.randrange(60):011d}", n_))
        elif roll < 0.9:
            u = rng.choice(list(tracks))
            out.append(
                ev.put(
                    rng.choice(listeners),
                    "fm.plyr.comment",
                    f"3c{rng.randrange(30):011d}",
                    n_,
                    ev.comment(u, tracks[u], f"c{n_}", rng.randrange(100_000)),
                )
            )
        elif roll < 0.95:
            items = [(u, tracks[u]) for u in rng.sample(list(tracks), min(3, len(tracks)))]
            out.append(
                ev.put(
                    rng.choice(listeners),
                    "fm.plyr.list",
                    f"3p{rng.randrange(10):011d}",
                    n_,
                    ev.playlist(f"p{n_}", items),
                )
            )
        else:
            out.append(ev.account(rng.choice(listeners), n_, rng.random() < 0.5, None))
    return out


async def snapshot(
    pool: asyncpg.Pool, schema: str, tables: dict[str, str] | None = None
) -> dict[str, list[tuple[object, ...]]]:
    return {
        t: [tuple(r) for r in await pool.fetch(f"SELECT {cols} FROM {schema}.{t} ORDER BY {cols}")]
        for t, cols in (tables or TABLES).items()
    }


@pytest.mark.slow
async def test_kill9_and_a_rebalance_end_equal_to_a_clean_run(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    events = workload(1500, seed=21)
    await produce(kafka_bootstrap, topic, events)
    plat = PlatformSettings(kafka_bootstrap=kafka_bootstrap, database_url=database_url, events_topic=topic)
    # Reference: one projector, no interruptions.
    async with projecting(plat, settings("proj_ref")):
        await wait_applied(pool, "proj_ref", topic, len(events))
    # Under test: subprocess projectors in one group, killed -9 at random, a second member joining.
    env = {
        **os.environ,
        "PLYR_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "PLYR_DATABASE_URL": database_url,
        "PLYR_EVENTS_TOPIC": topic,
        "PROJECTOR_SCHEMA_NAME": "proj_chaos",
        "PROJECTOR_GROUP_ID": "chaos",
        "PROJECTOR_METRICS_PORT": "0",
        "PROJECTOR_MAX_BATCH": "40",
        "PROJECTOR_SESSION_TIMEOUT_MS": "2000",
        "PROJECTOR_HEARTBEAT_INTERVAL_MS": "300",
    }

    async def start() -> asyncio.subprocess.Process:
        return await spawn_cli("project", env=env)

    rng = random.Random(5)
    first, second = await start(), await start()
    kills = 0
    # Three kills at random moments, whether or not the log is through by then.
    while kills < 3:
        await asyncio.sleep(rng.uniform(0.3, 1.2))
        first.send_signal(signal.SIGKILL)
        await first.wait()
        kills += 1
        first = await start()
    await wait_applied(pool, "proj_chaos", topic, len(events), timeout=90)
    for proc in (first, second):
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 20)
    got, want = await snapshot(pool, "proj_chaos"), await snapshot(pool, "proj_ref")
    differences = {
        t: (sorted(set(got[t]) - set(want[t]))[:3], sorted(set(want[t]) - set(got[t]))[:3])
        for t in TABLES
        if got[t] != want[t]
    }
    assert not differences, f"chaos run differs from the clean run (got, want): {differences}"
    # The all-time order by likes mirrors every track's count, in both runs.
    for shot in (got, want):
        assert shot["tracks_by_likes"] == [(row[0], row[4]) for row in shot["tracks"]]


async def test_replay_equals_incremental_and_swaps_under_a_live_projector(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    events = workload(600, seed=31)
    await produce(kafka_bootstrap, topic, events)
    plat = PlatformSettings(kafka_bootstrap=kafka_bootstrap, database_url=database_url, events_topic=topic)
    live = settings("proj_live")
    async with projecting(plat, live):
        await wait_applied(pool, "proj_live", topic, len(events))
        incremental = await snapshot(pool, "proj_live")
        result = await app.rebuild(plat, live)
        assert result.schema == "proj_live" and result.old_schema is not None and result.events == len(events)
        # The rebuilt schema is the incremental one, row for row; the old one is kept aside.
        assert await snapshot(pool, "proj_live") == incremental
        assert await snapshot(pool, result.old_schema) == incremental
        # The live projector goes on in the swapped-in schema.
        late = ev.put(A, TRACK, "3tlateaaaaaaa", 5000, ev.track("After the swap"))
        await produce(kafka_bootstrap, topic, [late])
        await wait_applied(pool, "proj_live", topic, len(events) + 1)
        assert await pool.fetchval("SELECT title FROM proj_live.tracks WHERE uri = $1", late.uri) == "After the swap"
        assert await pool.fetchval(f"SELECT count(*) FROM {result.old_schema}.tracks WHERE uri = $1", late.uri) == 0


async def test_local_takedown_survives_upstream_reactivation(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    t = ev.track("Song")
    t_uri, t_cid = uri(A, TRACK, "3t1aaaaaaaaaa"), ev.cid_of(t)
    schema = "proj_c"
    plat = PlatformSettings(kafka_bootstrap=kafka_bootstrap, database_url=database_url, events_topic=topic)
    first: list[Event] = [
        ev.put(A, TRACK, "3t1aaaaaaaaaa", 1, t),
        ev.put(B, "fm.plyr.like", "3l1bbbbbbbbbb", 2, ev.like(t_uri, t_cid)),
    ]
    async with projecting(plat, settings(schema)):
        await produce(kafka_bootstrap, topic, first)
        await wait_applied(pool, schema, topic, len(first))
        assert await pool.fetchval(f"SELECT like_count FROM {schema}.tracks WHERE uri = $1", t_uri) == 1
        # An operator takes the listener down locally (the admin command sets this flag).
        await pool.execute(f"UPDATE {schema}.artists SET local_takedown = true WHERE did = $1", B)
        # Upstream deactivates then reactivates the account: the local takedown must hold.
        later = [ev.account(B, 3, False, "deactivated"), ev.account(B, 4, True)]
        await produce(kafka_bootstrap, topic, later)
        await wait_applied(pool, schema, topic, len(first) + len(later))
        # Caught up, the projector reports a lag of 0 for readiness checks (about once a second).
        async with asyncio.timeout(10):
            while not await pool.fetchval(f"SELECT count(*) FROM {schema}.projector_heartbeats WHERE lag_seconds = 0"):
                await asyncio.sleep(0.1)
    # A clean stop removes its heartbeat.
    assert await pool.fetchval(f"SELECT count(*) FROM {schema}.projector_heartbeats") == 0
    row = await pool.fetchrow(f"SELECT active, local_takedown FROM {schema}.artists WHERE did = $1", B)
    assert row is not None and (row["active"], row["local_takedown"]) == (True, True)
    assert await pool.fetchval(f"SELECT like_count FROM {schema}.tracks WHERE uri = $1", t_uri) == 0
    # The takedown is not in the event log; a replay carries it over and counts without the listener.
    await app.rebuild(plat, settings(schema))
    row = await pool.fetchrow(f"SELECT active, local_takedown FROM {schema}.artists WHERE did = $1", B)
    assert row is not None and (row["active"], row["local_takedown"]) == (True, True)
    assert await pool.fetchval(f"SELECT like_count FROM {schema}.tracks WHERE uri = $1", t_uri) == 0


async def test_a_snapshot_deletes_what_vanished_and_spares_newer_writes(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    kept = ev.put(A, TRACK, "t1", 1, ev.track("kept"))
    gone = ev.put(A, TRACK, "t2", 2, ev.track("gone"))
    newer = ev.put(A, TRACK, "t3", 3, ev.track("rewritten later"))
    liked = ev.put(B, "fm.plyr.like", "l1", 4, ev.like(uri(A, TRACK, "t2"), gone.cid or ""))
    invalid = ev.put(A, TRACK, "t4", 5, {"$type": TRACK, "title": "no artist"})
    events: list[Event] = [
        kept,
        gone,
        newer,
        liked,
        invalid,
        ev.put(A, TRACK, "t3", 9, ev.track("written after the snapshot"), create=False),
        # Written before the snapshot's rev in the same repo, not listed by it: vanished too.
        ev.put(A, TRACK, "t5", 6, ev.track("also gone")),
        ev.snapshot(A, 7, [kept, newer]),
        # Another repo's snapshot that lists everything it holds deletes nothing.
        ev.snapshot(B, 8, [liked]),
    ]
    await project_all(kafka_bootstrap, database_url, pool, topic, events, "proj_snap")
    s = "proj_snap"
    titles = {r["uri"]: r["title"] for r in await pool.fetch(f"SELECT uri, title FROM {s}.tracks")}
    assert titles == {uri(A, TRACK, "t1"): "kept", uri(A, TRACK, "t3"): "written after the snapshot"}
    states = {r["rkey"]: r["state"] for r in await pool.fetch(f"SELECT rkey, state FROM {s}.records WHERE did = $1", A)}
    assert states == {"t1": "live", "t2": "deleted", "t3": "live", "t4": "deleted", "t5": "deleted"}
    # The like survives (its repo's snapshot lists it) but its track is gone: nothing counts it.
    assert await pool.fetchval(f"SELECT count(*) FROM {s}.likes") == 1
    assert await pool.fetchval(f"SELECT track_count FROM {s}.artists WHERE did = $1", A) == 2
    deleted = {r["uri"] for r in await pool.fetch(f"SELECT uri FROM {s}.changes WHERE kind = 'track.deleted'")}
    assert deleted == {uri(A, TRACK, "t2"), uri(A, TRACK, "t5")}


async def test_operator_takedowns_ride_the_log_and_recount(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    t = ev.track("Song")
    t_uri = uri(A, TRACK, "t1")
    events: list[Event] = [
        ev.put(A, TRACK, "t1", 1, t),
        ev.put(B, "fm.plyr.like", "l1", 2, ev.like(t_uri, ev.cid_of(t))),
        ev.put(C, "fm.plyr.like", "l2", 3, ev.like(t_uri, ev.cid_of(t))),
        ev.moderation(B, 4, ModerationAction.TAKEDOWN, "spam"),
        ev.moderation(A, 5, ModerationAction.TAKEDOWN),
        ev.moderation(A, 6, ModerationAction.RESTORE),
        # Upstream reactivation does not lift a takedown made here.
        ev.account(B, 7, True),
    ]
    schema = "proj_mod"
    await project_all(kafka_bootstrap, database_url, pool, topic, events, schema)

    async def state(s: str) -> tuple[object, ...]:
        flags = {
            r["did"]: r["local_takedown"] for r in await pool.fetch(f"SELECT did, local_takedown FROM {s}.artists")
        }
        likes = await pool.fetchval(f"SELECT like_count FROM {s}.tracks WHERE uri = $1", t_uri)
        received = await pool.fetchval(f"SELECT likes_received FROM {s}.artists WHERE did = $1", A)
        return flags, likes, received

    assert await state(schema) == ({A: False, B: True, C: False}, 1, 1)
    # A replay rebuilds the same from the log alone.
    plat = PlatformSettings(kafka_bootstrap=kafka_bootstrap, database_url=database_url, events_topic=topic)
    await app.rebuild(plat, settings(schema))
    assert await state(schema) == ({A: False, B: True, C: False}, 1, 1)


async def test_nul_characters_are_dead_lettered_and_the_rest_applies(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    # Postgres can store U+0000 neither in text nor in jsonb: one such record used to fail its whole
    # batch, on every retry. Now it is a dead letter (without its raw copy), the rest of the batch
    # applies, and a later clean version of the same record is applied over it.
    events: list[Event] = [
        ev.put(A, TRACK, "3t1aaaaaaaaaa", 2, ev.track("Before")),
        ev.put(A, TRACK, "3t2aaaaaaaaaa", 3, ev.track("bad\x00title")),
        ev.account(B, 4, False, "deactivated\x00"),
        # A literal backslash-u text is not a NUL: kept.
        ev.put(A, TRACK, "3t3aaaaaaaaaa", 5, ev.track("literal \\u0000 text")),
        ev.put(A, TRACK, "3t1aaaaaaaaaa", 6, ev.track("After"), create=False),
        ev.put(A, TRACK, "3t2aaaaaaaaaa", 7, ev.track("clean title"), create=False),
    ]
    schema = "proj_nul"
    await project_all(kafka_bootstrap, database_url, pool, topic, events, schema)
    titles = await pool.fetch(f"SELECT rkey, title FROM {schema}.tracks ORDER BY rkey")
    assert [(r["rkey"], r["title"]) for r in titles] == [
        ("3t1aaaaaaaaaa", "After"),
        ("3t2aaaaaaaaaa", "clean title"),
        ("3t3aaaaaaaaaa", "literal \\u0000 text"),
    ]
    dead = await pool.fetch(f"SELECT rkey, reason, raw FROM {schema}.dead_letters ORDER BY rkey NULLS LAST")
    assert len(dead) == 2
    assert [d["rkey"] for d in dead] == ["3t2aaaaaaaaaa", None]
    assert all("NUL" in d["reason"] for d in dead) and all(d["raw"] is None for d in dead)
