"""Batches committing at once, as the pipeline's lanes (and several projectors) do: a like of a track
that another batch is creating right now is counted, the lanes keep each partition's order, and the
result equals one lane's."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from projector import app
from projector.pipeline import CommitPipeline
from projector.prepare import LogMessage
from schemas.codec import encode
from schemas.envelope import Event
from tests.fixtures import events as ev

pytestmark = pytest.mark.integration

TRACK, LIKE = "fm.plyr.track", "fm.plyr.like"


def artist(i: int) -> str:
    return f"did:plc:lanesartist{i:013d}"


def listener(i: int) -> str:
    return f"did:plc:laneslisten{i:013d}"


async def test_a_like_of_a_track_being_created_in_another_batch_is_counted(pool: asyncpg.Pool, topic: str) -> None:
    # Each round: batch A creates a track (with padding tracks, so its transaction lasts), batch B
    # likes it, and both commit at once on their own connections. Before tracks were claimed, B's
    # lock found no track to recount while A's recount could not see B's uncommitted like: the count
    # stayed 0 in some rounds.
    store = await app.open_store(pool, "lanes_race", topic)
    rounds, padding = 25, 60
    for r in range(rounds):
        subject = ev.track(f"subject {r}")
        subject_uri = f"at://{artist(r)}/{TRACK}/3t{r:04d}subject"
        a_events: list[Event] = [ev.put(artist(r), TRACK, f"3t{r:04d}subject", 1, subject)]
        a_events += [
            ev.put(artist(r), TRACK, f"3t{r:04d}pad{p:04d}", 2 + p, ev.track(f"pad {p}")) for p in range(padding)
        ]
        b_events = [ev.put(listener(r), LIKE, f"3l{r:04d}liked", 1, ev.like(subject_uri, ev.cid_of(subject)))]
        a = store.prepare([LogMessage(0, r * 1000 + i, encode(e)) for i, e in enumerate(a_events)])
        b = store.prepare([LogMessage(1, r, encode(e)) for e in b_events])
        await asyncio.gather(store.commit(a), store.commit(b))
    counts = await pool.fetch("SELECT uri, like_count FROM lanes_race.tracks WHERE rkey LIKE '%subject' ORDER BY uri")
    assert len(counts) == rounds
    assert [r["uri"] for r in counts if r["like_count"] != 1] == []
    received = await pool.fetch("SELECT did, likes_received FROM lanes_race.artists WHERE track_count > 0")
    assert len(received) == rounds and {r["likes_received"] for r in received} == {1}


def mixed_log(n: int) -> list[Event]:
    out: list[Event] = []
    tracks: list[tuple[str, str]] = []
    for i in range(n):
        who = artist(i % 7) if i % 3 == 0 else listener(i % 11)
        if i % 3 == 0:
            record = ev.track(f"t{i}")
            event = ev.put(who, TRACK, f"3t{i:09d}", i + 1, record)
            tracks.append((event.uri, ev.cid_of(record)))
        elif i % 5 == 0 and tracks:
            event = ev.delete(
                tracks[i % len(tracks)][0].split("/")[2], TRACK, tracks[i % len(tracks)][0].split("/")[4], i + 1
            )
        else:
            subject = (
                tracks[(i * 7) % len(tracks)] if tracks else (f"at://{artist(0)}/{TRACK}/3tnotyet", "bafyreiaaaaaaaaaa")
            )
            event = ev.put(who, LIKE, f"3l{i:09d}", i + 1, ev.like(*subject))
        out.append(event)
    return out


async def snapshot(pool: asyncpg.Pool, schema: str) -> tuple[object, ...]:
    return (
        await pool.fetch(f"SELECT uri, title, like_count FROM {schema}.tracks ORDER BY uri"),
        await pool.fetch(f"SELECT did, track_count, likes_received FROM {schema}.artists ORDER BY did"),
        await pool.fetch(f"SELECT did, collection, rkey, rev, state FROM {schema}.records ORDER BY 1, 2, 3"),
        await pool.fetch(f"SELECT partition, next_offset FROM {schema}.offsets ORDER BY partition"),
        await pool.fetchval(f"SELECT count(*) FROM {schema}.changes"),
    )


async def test_two_lanes_end_equal_to_one(pool: asyncpg.Pool, topic: str) -> None:
    log = mixed_log(600)
    # Each repo's events in one of four partitions, offsets ascending, as the broker gives them.
    by_partition: dict[int, list[Event]] = {}
    for e in log:
        by_partition.setdefault(sum(map(ord, e.did)) % 4, []).append(e)
    messages = [LogMessage(p, o, encode(e)) for p, events in by_partition.items() for o, e in enumerate(events)]
    results = {}
    for lanes in (1, 2):
        schema = f"lanes_{lanes}"
        store = await app.open_store(pool, schema, topic)
        async with CommitPipeline(store, lanes) as pipeline:
            finished = []
            for start in range(0, len(messages), 97):
                finished += await pipeline.submit(messages[start : start + 97])
            finished += await pipeline.flush()
        assert sum(len(batch) for _, batch in finished) == len(messages)
        results[lanes] = await snapshot(pool, schema)
    assert results[1] == results[2]
    tracks = results[2][0]
    assert isinstance(tracks, list) and any(r["like_count"] > 0 for r in tracks)


def test_a_pipeline_needs_a_lane() -> None:
    with pytest.raises(ValueError, match="lane"):
        CommitPipeline(None, 0)  # type: ignore[arg-type]
