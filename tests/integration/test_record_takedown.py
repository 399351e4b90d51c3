"""An operator's takedown of one record, on the real broker, Postgres, projector and API over HTTP.

A taken-down track leaves every read (the track, feeds, search, the artist's totals; an album shows it
as a hidden item), its later versions stay hidden, and a restore shows the latest version with its
counts right; a taken-down like or comment stops counting. A replay from the log ends the same. The
CLI and the admin API both put the event on the log, and refuse what does not name a record by DID.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from projector import app
from runtime.settings import PlatformSettings
from schemas.envelope import Event, ModerationAction
from tests.fixtures import events as ev
from tests.fixtures.api_server import serving
from tests.fixtures.read_models import TABLES
from tests.integration.test_operators import ADMIN, TOKEN, check_output, cli_env, run_cli, until
from tests.integration.test_projector import produce, projecting, settings, snapshot, uri, wait_applied

pytestmark = pytest.mark.integration

A = "did:plc:rtdartistaaaaaaaaaaaaaaa"
B = "did:plc:rtdfanbbbbbbbbbbbbbbbbbb"
C = "did:plc:rtdfancccccccccccccccccc"
TRACK, LIKE, COMMENT, LIST = "fm.plyr.track", "fm.plyr.like", "fm.plyr.comment", "fm.plyr.list"
DOWN, UP = ModerationAction.TAKEDOWN, ModerationAction.RESTORE

SONG = ev.track("Contested song", duration=200)
OTHER = ev.track("Other song", duration=100)
T1, T2 = uri(A, TRACK, "3trtdaaaaaaaa"), uri(A, TRACK, "3trtdbbbbbbbb")
T1_KEY, T2_KEY = (TRACK, "3trtdaaaaaaaa"), (TRACK, "3trtdbbbbbbbb")
B_LIKE = (LIKE, "3lrtdbbbbbbbb")


def opening() -> list[Event]:
    album = {
        **ev.playlist("Record", [(T1, ev.cid_of(SONG)), (T2, ev.cid_of(OTHER))]),
        "listType": "album",
    }
    return [
        ev.put(A, *T1_KEY, 1, SONG),
        ev.put(A, *T2_KEY, 2, OTHER),
        ev.put(A, LIST, "3alrtdaaaaaaa", 3, album),
        ev.put(B, *B_LIKE, 4, ev.like(T1, ev.cid_of(SONG))),
        ev.put(C, LIKE, "3lrtdcccccccc", 5, ev.like(T1, ev.cid_of(SONG))),
        ev.put(B, LIKE, "3lrtdbbbbbbb2", 6, ev.like(T2, ev.cid_of(OTHER))),
        ev.put(B, COMMENT, "3crtdbbbbbbbb", 7, ev.comment(T1, ev.cid_of(SONG), "nice", 1000)),
    ]


async def get(client: httpx.AsyncClient, nsid: str, **params: Any) -> httpx.Response:
    return await client.get(f"/xrpc/fm.plyr.index.{nsid}", params=params)


async def view(client: httpx.AsyncClient) -> dict[str, Any]:
    """What the public API shows of the corpus."""
    latest = (await get(client, "getLatestTracks", limit=100)).json()["tracks"]
    found = (await get(client, "search", q="contested", type="track")).json()["results"]
    artist = (await get(client, "getArtist", actor=A)).json()["artist"]
    album = (await get(client, "getList", uri=uri(A, LIST, "3alrtdaaaaaaa"))).json()
    one = await get(client, "getTrack", uri=T1)
    return {
        "latest": sorted((t["title"], t["likeCount"], t["commentCount"]) for t in latest),
        "search": [r["track"]["title"] for r in found],
        "artist": (artist["trackCount"], artist["likesReceived"], artist["totalDuration"]),
        "album": [(i["available"], i.get("reason")) for i in album["items"]],
        "track": one.status_code,
    }


SHOWN = {
    "latest": [("Contested song", 2, 1), ("Other song", 1, 0)],
    "search": ["Contested song"],
    "artist": (2, 3, 300),
    "album": [(True, None), (True, None)],
    "track": 200,
}


async def test_a_record_taken_down_leaves_every_read_and_comes_back_at_its_latest_version(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    schema = "rtd_fold"
    plat = PlatformSettings(kafka_bootstrap=kafka_bootstrap, database_url=database_url, events_topic=topic)
    sent: list[Event] = []

    async def send(*events: Event) -> None:
        sent.extend(events)
        await produce(kafka_bootstrap, topic, events)
        await wait_applied(pool, schema, topic, len(sent))

    async with (
        projecting(plat, settings(schema)),
        # Search pages are cached for API_SEARCH_CACHE_SECONDS: off, so each look sees the batch before.
        serving(database_url, schema, search_cache_seconds=0) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        await send(*opening())
        assert await view(client) == SHOWN

        await send(ev.moderation(A, 10, DOWN, "reported", record=T1_KEY))
        down = {
            "latest": [("Other song", 1, 0)],
            "search": [],
            "artist": (1, 1, 100),
            "album": [(False, "hidden"), (True, None)],
            "track": 404,
        }
        assert await view(client) == down
        assert (await get(client, "getTrackLikers", uri=T1)).status_code == 404
        top = (await get(client, "getTopTracks", limit=10)).json()["items"]
        assert [t["track"]["title"] for t in top] == ["Other song"]

        # A new version, and a new like, while it is down: nothing shows, the held row follows.
        await send(
            ev.put(A, *T1_KEY, 11, {**SONG, "title": "Contested song (edit)"}),
            ev.put(C, LIKE, "3lrtdccccccc2", 12, ev.like(T1, ev.cid_of(SONG))),
        )
        assert await view(client) == down
        held = await pool.fetchval(f"SELECT row->>'title' FROM {schema}.held_records WHERE uri = $1", T1)
        assert held == "Contested song (edit)"

        # Restored: the latest version, with every like and comment given meanwhile counted (C twice
        # is still one liker).
        await send(ev.moderation(A, 13, UP, record=T1_KEY))
        restored = {
            **SHOWN,
            "latest": [("Contested song (edit)", 2, 1), ("Other song", 1, 0)],
            "search": ["Contested song (edit)"],
        }
        assert await view(client) == restored
        assert (await get(client, "search", q="edit", type="track")).json()["results"][0]["track"]["uri"] == T1

        # A like taken down stops counting, for the track and its artist; restored, it counts again.
        await send(ev.moderation(B, 14, DOWN, record=B_LIKE))
        got = await view(client)
        assert got["latest"][0] == ("Contested song (edit)", 1, 1) and got["artist"] == (2, 2, 300)
        likers = (await get(client, "getTrackLikers", uri=T1)).json()["likes"]
        assert [x["actor"]["did"] for x in likers] == [C, C]
        await send(ev.moderation(B, 15, UP, record=B_LIKE))
        assert await view(client) == restored

        # Deleted while down: a restore has nothing to bring back, and a late create of the old
        # version (rev 11 < the delete's) cannot either.
        await send(ev.moderation(A, 16, DOWN, record=T2_KEY), ev.delete(A, *T2_KEY, 17))
        await send(ev.moderation(A, 18, UP, record=T2_KEY), ev.put(A, *T2_KEY, 11, OTHER))
        got = await view(client)
        assert got["latest"] == [("Contested song (edit)", 2, 1)] and got["artist"] == (1, 2, 200)
        assert await pool.fetchval(f"SELECT count(*) FROM {schema}.held_records") == 0

        # A taken-down record of a deleted repo goes with it.
        await send(ev.moderation(B, 19, DOWN, record=B_LIKE), ev.account(B, 20, False, "deleted"))
        assert await pool.fetchval(f"SELECT count(*) FROM {schema}.record_takedowns WHERE did = $1", B) == 0

    # The log alone rebuilds the same, takedowns and held rows included.
    tables = {**TABLES, "record_takedowns": "uri, did, collection, reason", "held_records": "uri, did, collection, row"}
    incremental = await snapshot(pool, schema, tables)
    await app.rebuild(plat, settings(schema))
    assert await snapshot(pool, schema, tables) == incremental


async def test_record_takedown_from_the_cli_and_the_admin_api(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    schema = "rtd_ops"
    events = opening()
    await produce(kafka_bootstrap, topic, events)
    plat = PlatformSettings(kafka_bootstrap=kafka_bootstrap, database_url=database_url, events_topic=topic)
    env = cli_env(database_url, kafka_bootstrap, topic, schema)
    auth = {"Authorization": f"Bearer {TOKEN}"}

    async def status(u: str) -> int:
        return (await get(client, "getTrack", uri=u)).status_code

    async with (
        projecting(plat, settings(schema)),
        serving(database_url, schema, token=TOKEN, platform=plat) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        await wait_applied(pool, schema, topic, len(events))
        assert await status(T1) == 200

        code, out, err = await run_cli(env, "takedown", T1, "--reason", "reported")
        assert code == 0, err
        assert f"{T1} taken down: event on {topic}" in out
        await until(lambda: _equals(status(T1), 404))
        reason = await pool.fetchval(f"SELECT reason FROM {schema}.record_takedowns WHERE uri = $1", T1)
        assert reason == "reported"
        code, _, err = await run_cli(env, "restore", T1)
        assert code == 0, err
        await until(lambda: _equals(status(T1), 200))

        r = await client.post(ADMIN + "takedownRecord", json={"uri": T2, "reason": "dmca"}, headers=auth)
        assert r.status_code == 200, r.text
        check_output("takedownRecord", r.json())
        assert r.json()["uri"] == T2 and r.json()["action"] == "takedown"
        await until(lambda: _equals(status(T2), 404))
        r = await client.post(ADMIN + "restoreRecord", json={"uri": T2}, headers=auth)
        assert r.status_code == 200, r.text
        check_output("restoreRecord", r.json())
        await until(lambda: _equals(status(T2), 200))

        for bad in ({"uri": f"at://{A}"}, {"uri": "at://artist.test/fm.plyr.track/3trtdaaaaaaaa"}, {"uri": "x"}, {}):
            r = await client.post(ADMIN + "takedownRecord", json=bad, headers=auth)
            assert r.status_code == 400 and r.json()["error"] == "InvalidRequest", (bad, r.text)
        assert (await client.post(ADMIN + "takedownRecord", json={"uri": T1})).status_code == 401

    for subject in (f"at://{A}/{TRACK}", "at://artist.test/fm.plyr.track/3trtdaaaaaaaa", "not-a-did"):
        code, _, err = await run_cli(env, "takedown", subject)
        assert code == 2 and ("does not name a record" in err or "is neither a DID" in err), (subject, err)


async def _equals(value: Any, expected: object) -> bool:
    return bool(await value == expected)
