"""Top tracks by distinct likers per rolling window on the real broker and Postgres: windows by the like's
sort time, one count per liker, hidden likers and artists left out, ties by uri, the projector's timer,
and a replay that swaps in a schema with its rankings already computed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from projector import app
from projector.ranking import refresh_top_tracks
from runtime.settings import PlatformSettings
from schemas.envelope import Event
from tests.fixtures import events as ev
from tests.integration.test_projector import produce, projecting, settings, uri, wait_applied

pytestmark = pytest.mark.integration

A = "did:plc:artistaaaaaaaaaaaaaaaaaa"
D = "did:plc:artistdddddddddddddddddd"  # taken down upstream
E = "did:plc:artisteeeeeeeeeeeeeeeeee"  # taken down here, later
L1, L2, L3, L4, L5 = (f"did:plc:listener{c * 16}" for c in "mnopq")
H = "did:plc:listenerhhhhhhhhhhhhhhhh"  # deactivated upstream
TRACK, LIKE = "fm.plyr.track", "fm.plyr.like"
T1, T2, T3, T4 = (uri(A, TRACK, f"3t{i}aaaaaaaaaa") for i in range(1, 5))
T5, T6 = uri(D, TRACK, "3t5dddddddddd"), uri(E, TRACK, "3t6eeeeeeeeee")
UNINDEXED = uri(A, TRACK, "3t9aaaaaaaaaa")


def likes_log(now: datetime) -> list[Event]:
    """Tracks, likes at various ages (all indexed now), and the two upstream account changes."""
    out: list[Event] = []
    n = 0

    def put(did: str, collection: str, record: dict[str, object]) -> None:
        nonlocal n
        n += 1
        out.append(ev.put(did, collection, f"3x{n:011d}", n, record, time=now))

    for track_uri in (T1, T2, T3, T4, T5, T6):
        did, _, rkey = track_uri[5:].split("/")
        n += 1
        out.append(ev.put(did, TRACK, rkey, n, ev.track(rkey), time=now))
    ago = {"30m": timedelta(minutes=30), "1h": timedelta(hours=1), "2h": timedelta(hours=2)}
    ago |= {"5h": timedelta(hours=5), "3d": timedelta(days=3), "6d": timedelta(days=6)}
    ago |= {"20d": timedelta(days=20), "40d": timedelta(days=40)}
    liked: list[tuple[str, str, str]] = [
        (L1, T1, "1h"),
        (L1, T1, "30m"),  # the same liker again (a second like record): counts once
        (L2, T1, "2h"),
        (L3, T1, "3d"),
        (L1, T2, "1h"),
        (L2, T2, "5h"),
        (L4, T3, "20d"),
        (L5, T3, "40d"),  # outside every window
        (H, T3, "1h"),  # a hidden liker
        (L4, T4, "6d"),
        (L5, T4, "6d"),
        (L1, T5, "1h"),  # a hidden artist's track
        (L2, T5, "1h"),
        (L3, T5, "1h"),
        (L1, T6, "1h"),
        (L1, UNINDEXED, "1h"),  # not a track the index has
        (L2, UNINDEXED, "1h"),
    ]
    for liker, subject, age in liked:
        put(liker, LIKE, ev.like(subject, ev.cid_of(ev.track("x")), created_at=now - ago[age]))
    out += [ev.account(D, n + 1, False, "takendown"), ev.account(H, n + 2, False, "deactivated")]
    return out


async def ranking(pool: asyncpg.Pool, schema: str) -> dict[str, list[tuple[int, str, int]]]:
    rows = await pool.fetch(f"SELECT time_window, rank, uri, likers FROM {schema}.top_tracks ORDER BY 1, 2")
    out: dict[str, list[tuple[int, str, int]]] = {"day": [], "week": [], "month": []}
    for r in rows:
        out[r["time_window"]].append((r["rank"], r["uri"], r["likers"]))
    return out


async def test_windows_distinct_likers_hidden_repos_ties_and_replay(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    events = likes_log(datetime.now(UTC))
    schema = "rank_a"
    plat = PlatformSettings(kafka_bootstrap=kafka_bootstrap, database_url=database_url, events_topic=topic)
    async with projecting(plat, settings(schema)):
        await produce(kafka_bootstrap, topic, events)
        await wait_applied(pool, schema, topic, len(events))
    want = {
        # Ties (T1 and T2 on two likers, T6 and T3 on one) rank the greater uri first.
        "day": [(1, T2, 2), (2, T1, 2), (3, T6, 1)],
        "week": [(1, T1, 3), (2, T4, 2), (3, T2, 2), (4, T6, 1)],
        "month": [(1, T1, 3), (2, T4, 2), (3, T2, 2), (4, T6, 1), (5, T3, 1)],
    }
    assert await refresh_top_tracks(pool, schema) == {"day": 3, "week": 4, "month": 5}
    assert await ranking(pool, schema) == want
    # Refreshing replaces each window whole.
    assert await refresh_top_tracks(pool, schema) == {"day": 3, "week": 4, "month": 5}
    assert await ranking(pool, schema) == want

    # A replay computes the rankings of the fresh schema before swapping it in (no projector runs now,
    # so nothing else could have).
    result = await app.rebuild(plat, settings(schema))
    assert result.old_schema is not None
    assert await ranking(pool, schema) == want

    # Taken down here: a liker (L3) and an artist (E).
    await pool.execute(f"UPDATE {schema}.artists SET local_takedown = true WHERE did = ANY($1)", [L3, E])
    await refresh_top_tracks(pool, schema)
    assert await ranking(pool, schema) == {
        "day": [(1, T2, 2), (2, T1, 2)],
        "week": [(1, T4, 2), (2, T2, 2), (3, T1, 2)],
        "month": [(1, T4, 2), (2, T2, 2), (3, T1, 2), (4, T3, 1)],
    }


async def test_the_projector_refreshes_the_rankings_on_its_timer(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    now = datetime.now(UTC)
    track = ev.track("Song")
    events: list[Event] = [
        ev.put(A, TRACK, "3t1aaaaaaaaaa", 1, track, time=now),
        ev.put(L1, LIKE, "3l1aaaaaaaaaa", 2, ev.like(T1, ev.cid_of(track), created_at=now), time=now),
    ]
    schema = "rank_b"
    plat = PlatformSettings(kafka_bootstrap=kafka_bootstrap, database_url=database_url, events_topic=topic)
    st = settings(schema).model_copy(update={"top_refresh_seconds": 1})
    registry = CollectorRegistry()
    async with projecting(plat, st, registry):
        await produce(kafka_bootstrap, topic, events)
        await wait_applied(pool, schema, topic, len(events))
        async with asyncio.timeout(10):
            while (await ranking(pool, schema))["day"] != [(1, T1, 1)]:
                await asyncio.sleep(0.1)
    assert (registry.get_sample_value("plyr_projector_top_tracks_refresh_seconds_count") or 0) >= 1
    assert registry.get_sample_value("plyr_projector_top_tracks_refresh_failures_total") == 0
