"""The read API over real HTTP (uvicorn), on read models the real projector built from real events on
the real broker. Every 200 response is checked against its query's lexicon output, so the lexicons,
the OpenAPI document and what the API sends cannot drift apart."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import websockets

from api.xrpc import catalog, query_lexicons
from lexicons.validate import Valid, validate_value
from projector.ranking import refresh_top_tracks
from schemas.envelope import Event
from schemas.migrate import migrate
from tests.fixtures import events as ev
from tests.fixtures.api_server import serving
from tests.integration.test_projector import project_all

pytestmark = pytest.mark.integration

ART = "did:plc:apiartistaaaaaaaaaaaaaaa"
FAN = "did:plc:apifanbbbbbbbbbbbbbbbbbb"
GONE = "did:plc:apihiddencccccccccccccc"
LOCAL = "did:plc:apilocaldddddddddddddddd"
TRACK, LIKE, LIST, COMMENT = "fm.plyr.track", "fm.plyr.like", "fm.plyr.list", "fm.plyr.comment"
SCHEMA = "api_read"
SAME_TIME = "2026-10-05T12:00:00.000Z"
FULL_TRACK: dict[str, Any] = {
    "album": "Friends",
    "imageUrl": "https://cdn.example/friends.jpg",
    "description": 'Liner notes: "quoted", a \\ backslash, a tab\t and caf\u00e9',
    "labels": {"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "graphic-media"}]},
    "supportGate": {"type": "any"},
    "createdAt": "2026-10-03T04:05:06.789654Z",
}


def at(did: str, collection: str, rkey: str) -> str:
    return f"at://{did}/{collection}/{rkey}"


def rk(prefix: str, i: int) -> str:
    """A valid TID-shaped record key."""
    return f"3{prefix}{i:011d}"[:13]


@dataclass
class World:
    client: httpx.AsyncClient
    base: str
    pool: asyncpg.Pool
    tracks: dict[str, tuple[str, str]]  # name → (uri, cid)


def corpus() -> tuple[list[Event], dict[str, tuple[str, str]]]:
    out: list[Event] = [
        ev.identity(ART, 1, "artist.test"),
        ev.identity(FAN, 2, "fan.test"),
        ev.identity(GONE, 3, "gone.test"),
        ev.identity(LOCAL, 4, "local.test"),
    ]
    tracks: dict[str, tuple[str, str]] = {}
    n = 10

    def add_track(name: str, did: str, record: dict[str, Any]) -> None:
        nonlocal n
        n += 1
        key = rk("t", n)
        out.append(ev.put(did, TRACK, key, n, record))
        tracks[name] = (at(did, TRACK, key), ev.cid_of(record))

    # Six tracks sharing one createdAt (a page boundary must not skip or repeat ties).
    for i in range(6):
        add_track(f"tie{i}", ART, ev.track(f"Tie {i}", createdAt=SAME_TIME, duration=60, album="Ties"))
    add_track("song", ART, ev.track("Don't Stop", createdAt="2026-10-06T00:00:00.000Z", duration=200))
    add_track("songs", ART, ev.track("Don't Stop Believing", createdAt="2026-10-06T00:00:01.000Z", duration=100))
    add_track("night", ART, ev.track("All Night Don't Stop Now", createdAt="2026-10-06T00:00:02.000Z"))
    add_track("fuzzy", ART, ev.track("Dont Stopp", createdAt="2026-10-06T00:00:03.000Z"))
    add_track(
        "unicode",
        ART,
        ev.track("Café Müller", createdAt="2026-10-06T00:00:04.000Z", audioUrl="https://cdn.example/cafe.mp3"),
    )
    # Future-dated: its sort time is when the index saw it, so it cannot jump the feed.
    add_track("future", ART, ev.track("From the future", createdAt="2030-01-01T00:00:00.000Z"))
    # Every optional field a view carries, and a createdAt finer than the view's milliseconds.
    add_track("featured", ART, ev.track("With a friend", features=[{"did": FAN}, {"did": GONE}], **FULL_TRACK))
    add_track("gone", GONE, ev.track("Hidden song"))
    add_track("local", LOCAL, ev.track("Locally removed"))
    song_uri, song_cid = tracks["song"]
    n = 100
    for liker in (FAN, GONE, LOCAL, ART):
        n += 1
        out.append(ev.put(liker, LIKE, rk("l", n), n, ev.like(song_uri, song_cid)))
    n += 1
    out.append(ev.put(FAN, LIKE, rk("l", n), n, ev.like(*tracks["songs"])))
    # Likes of this week (the others are from October): the windowed rankings count only these.
    now = datetime.now(UTC)
    for liker in (FAN, GONE):
        n += 1
        out.append(ev.put(liker, LIKE, rk("l", n), n, ev.like(*tracks["night"], created_at=now), time=now))
    for i, ms in enumerate((30_000, 5_000, 5_000, 90_000)):
        n += 1
        who = FAN if i != 3 else GONE
        out.append(ev.put(who, COMMENT, rk("c", n), n, ev.comment(song_uri, song_cid, f"at {ms}", ms)))
    missing = (at(ART, TRACK, "3zzzzzzzzzzzz"), tracks["song"][1])
    items = [tracks["songs"], missing, tracks["gone"], tracks["song"]]
    n += 1
    out.append(ev.put(FAN, LIST, rk("p", n), n, ev.playlist("Road trip mix", items)))
    tracks["playlist"] = (at(FAN, LIST, rk("p", n)), "")
    n += 1
    album = {**ev.playlist("Ties", [tracks[f"tie{i}"] for i in range(3)]), "listType": "album"}
    out.append(ev.put(ART, LIST, rk("p", n), n, album))
    tracks["album"] = (at(ART, LIST, rk("p", n)), "")
    out.append(ev.account(GONE, n + 1, False, "deactivated"))
    return out, tracks


async def build_read_model(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str, events: list[Event], schema: str
) -> None:
    """The corpus through the real broker and projector into ``schema``, rankings refreshed."""
    async with pool.acquire() as conn:
        await migrate(conn, "read", schema)
    # An operator took this repo down locally before its records arrived: the projector's counts
    # must leave it out from the start.
    await pool.execute(f"INSERT INTO {schema}.artists (did, local_takedown) VALUES ($1, true)", LOCAL)
    await project_all(kafka_bootstrap, database_url, pool, topic, events, schema)
    await refresh_top_tracks(pool, schema)


@pytest.fixture(scope="module")
async def world(kafka_bootstrap: str, database_url: str) -> AsyncIterator[World]:
    events, tracks = corpus()
    topic = f"test.api.{uuid.uuid4().hex[:8]}"
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as pool:
        await build_read_model(kafka_bootstrap, database_url, pool, topic, events, SCHEMA)
        async with (
            serving(
                database_url,
                SCHEMA,
                cors_origins=("https://app.example",),
                trusted_cdn_origins=("https://cdn.example",),
            ) as base,
            httpx.AsyncClient(base_url=base) as client,
        ):
            yield World(client, base, pool, tracks)


async def xrpc(w: World, nsid: str, **params: Any) -> dict[str, Any]:
    """A successful query whose body must satisfy the lexicon's output schema."""
    name = f"fm.plyr.index.{nsid}"
    r = await w.client.get(f"/xrpc/{name}", params={k: v for k, v in params.items() if v is not None})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    checked = validate_value(catalog(), query_lexicons()[name]["output"]["schema"], body, name)
    assert isinstance(checked, Valid), (checked, body)
    return body


async def error(w: World, nsid: str, status: int, **params: Any) -> str:
    r = await w.client.get(f"/xrpc/fm.plyr.index.{nsid}", params=params)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "message"} and body["message"]
    return str(body["error"])


async def walk(w: World, nsid: str, key: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        body = await xrpc(w, nsid, limit=limit, cursor=cursor, **params)
        seen.extend(body[key])
        cursor = body.get("cursor")
        if cursor is None:
            return seen
    raise AssertionError("cursor walk did not end")


async def test_latest_feed_order_ties_and_visibility(world: World) -> None:
    full = (await xrpc(world, "getLatestTracks", limit=100))["tracks"]
    uris = [t["uri"] for t in full]
    assert world.tracks["gone"][0] not in uris and world.tracks["local"][0] not in uris
    # Newest sort time first; ties broken by uri, descending.
    expected = await world.pool.fetch(
        f"SELECT t.uri FROM {SCHEMA}.tracks t JOIN {SCHEMA}.artists a USING (did)"
        " WHERE a.active AND NOT a.local_takedown ORDER BY t.sort_at DESC, t.uri DESC"
    )
    assert uris == [r["uri"] for r in expected]
    # The future-dated track sorts by when it was indexed, not by its 2030 createdAt.
    future = next(t for t in full if t["uri"] == world.tracks["future"][0])
    assert future["createdAt"].startswith("2030")
    sort_at = await world.pool.fetchval(f"SELECT sort_at FROM {SCHEMA}.tracks WHERE uri = $1", future["uri"])
    assert sort_at.year == 2026 and future["indexedAt"].startswith("2026-11")
    for limit in (1, 2, 4, 5):
        assert [t["uri"] for t in await walk(world, "getLatestTracks", "tracks", limit)] == uris
    by_album = await walk(world, "getLatestTracks", "tracks", 2, artist="artist.test", album="Ties")
    assert sorted(t["title"] for t in by_album) == [f"Tie {i}" for i in range(6)]


async def test_track_view_fields_and_features(world: World) -> None:
    track = (await xrpc(world, "getTrack", uri=world.tracks["featured"][0]))["track"]
    assert track["artist"] == {"did": ART, "handle": "artist.test", "name": "Artist"}
    # A hidden featured artist keeps only its DID; a visible one is resolved to its handle.
    assert track["features"] == [{"did": FAN, "handle": "fan.test"}, {"did": GONE}]
    assert track["streamUrl"].endswith(f"/stream/{ART}/{world.tracks['featured'][0].rsplit('/', 1)[1]}")
    # The record's values come back as they went in, absent ones left out, times as atproto datetimes
    # (UTC, milliseconds, Z), the keys in the view's order.
    assert {k: track[k] for k in FULL_TRACK if k != "createdAt"} == {
        k: v for k, v in FULL_TRACK.items() if k != "createdAt"
    }
    assert track["createdAt"] == "2026-10-03T04:05:06.789Z"
    assert "duration" not in track and (track["likeCount"], track["commentCount"]) == (0, 0)
    indexed = await world.pool.fetchval(f"SELECT indexed_at FROM {SCHEMA}.tracks WHERE uri = $1", track["uri"])
    assert track["indexedAt"] == ev.atproto_time(indexed.replace(microsecond=indexed.microsecond // 1000 * 1000))
    assert list(track) == [
        "uri", "cid", "title", "artist", "features", "album", "imageUrl", "description", "labels",
        "supportGate", "fileType", "likeCount", "commentCount", "createdAt", "indexedAt", "streamUrl",
    ]  # fmt: skip
    song = (await xrpc(world, "getTrack", uri=world.tracks["song"][0]))["track"]
    # Likes by the deactivated and the locally taken-down accounts do not count.
    assert (song["likeCount"], song["commentCount"], song["duration"]) == (2, 3, 200)


async def test_hidden_and_unknown_tracks_are_not_found(world: World) -> None:
    assert await error(world, "getTrack", 404, uri=world.tracks["gone"][0]) == "NotFound"
    assert await error(world, "getTrack", 404, uri=world.tracks["local"][0]) == "NotFound"
    assert await error(world, "getTrack", 404, uri=at(ART, TRACK, "3zzzzzzzzzzzz")) == "NotFound"
    assert await error(world, "getTrackLikers", 404, uri=world.tracks["gone"][0]) == "NotFound"


@pytest.mark.parametrize(
    ("nsid", "params"),
    [
        ("getLatestTracks", {"limit": "0"}),
        ("getLatestTracks", {"limit": "101"}),
        ("getLatestTracks", {"limit": "ten"}),
        ("getLatestTracks", {"limit": "1e3"}),
        ("getLatestTracks", {"cursor": "not base64!"}),
        ("getLatestTracks", {"cursor": "WyJ0b3A6YWxsIiwxLCJ4Il0"}),  # a getTopTracks cursor
        ("getLatestTracks", {"cursor": "WyJsYXRlc3QiLCJub3QgYSB0aW1lIiwieCJd"}),  # ["latest","not a time","x"]
        ("getLatestTracks", {"bogus": "1"}),
        ("getLatestTracks", {"artist": "not a handle!"}),
        ("getTrack", {}),
        ("getTrack", {"uri": "https://example.com/x"}),
        ("getTopTracks", {"window": "year"}),
        ("search", {"q": ""}),
        ("search", {"q": '  ""  '}),
        ("search", {"q": "x" * 300}),
        ("getArtistLists", {"actor": "artist.test", "listType": "mixtape"}),
    ],
)
async def test_bad_parameters_are_invalid_requests(world: World, nsid: str, params: dict[str, str]) -> None:
    assert await error(world, nsid, 400, **params) == "InvalidRequest"


async def test_unknown_method_and_repeated_parameter(world: World) -> None:
    r = await world.client.get("/xrpc/fm.plyr.index.nope")
    assert r.status_code == 501 and r.json()["error"] == "MethodNotImplemented"
    r = await world.client.get("/xrpc/fm.plyr.index.getLatestTracks?limit=1&limit=2")
    assert r.status_code == 400 and r.json()["error"] == "InvalidRequest"


async def test_top_tracks_all_time(world: World) -> None:
    items = (await xrpc(world, "getTopTracks", window="all", limit=100))["items"]
    assert items[0]["track"]["uri"] == world.tracks["song"][0] and items[0]["likers"] == 2
    # Equal counts: by uri, descending.
    assert [(i["track"]["uri"], i["likers"]) for i in items[1:3]] == [
        (world.tracks["night"][0], 1),
        (world.tracks["songs"][0], 1),
    ]
    keys = [(-i["likers"], i["track"]["uri"]) for i in items]
    assert keys == sorted(keys, key=lambda k: (k[0], [-ord(ch) for ch in k[1]]))
    walked = await walk(world, "getTopTracks", "items", 3, window="all")
    assert [i["track"]["uri"] for i in walked] == [i["track"]["uri"] for i in items]


async def test_top_tracks_in_a_window(world: World) -> None:
    for window in ("day", "week", "month"):
        items = (await xrpc(world, "getTopTracks", window=window))["items"]
        # Only this week's like by a visible listener counts; the hidden listener's does not.
        assert [(i["track"]["uri"], i["likers"]) for i in items] == [(world.tracks["night"][0], 1)], window


async def test_likers_and_timed_comments(world: World) -> None:
    likes = (await xrpc(world, "getTrackLikers", uri=world.tracks["song"][0]))["likes"]
    assert sorted(like["actor"]["did"] for like in likes) == sorted([ART, FAN])
    comments = await walk(world, "getTrackComments", "comments", 1, uri=world.tracks["song"][0])
    # By position in the track; equal positions by uri; the hidden account's comment is not shown.
    assert [c["timestampMs"] for c in comments] == [5_000, 5_000, 30_000]
    assert comments[0]["uri"] < comments[1]["uri"]


async def test_artist_profile_totals_lists_and_likes(world: World) -> None:
    by_handle = (await xrpc(world, "getArtist", actor="Artist.Test"))["artist"]
    by_did = (await xrpc(world, "getArtist", actor=ART))["artist"]
    assert by_handle == by_did
    assert by_did["trackCount"] == 13 and by_did["likesReceived"] == 4
    assert by_did["totalDuration"] == 6 * 60 + 200 + 100
    assert await error(world, "getArtist", 404, actor=GONE) == "NotFound"
    lists = (await xrpc(world, "getArtistLists", actor=ART, listType="album"))["lists"]
    assert [entry["name"] for entry in lists] == ["Ties"]
    liked = (await xrpc(world, "getActorLikes", actor="fan.test"))["likes"]
    assert {like["track"]["uri"] for like in liked} == {world.tracks[k][0] for k in ("song", "songs", "night")}
    artists = await walk(world, "listArtists", "artists", 1)
    assert [a["did"] for a in artists] == [ART]


async def test_list_items_in_record_order_with_unavailable_ones(world: World) -> None:
    body = await xrpc(world, "getList", uri=world.tracks["playlist"][0])
    items = body["items"]
    assert [i["position"] for i in items] == [0, 1, 2, 3]
    assert [i["available"] for i in items] == [True, False, False, True]
    assert [i.get("reason") for i in items] == [None, "notIndexed", "hidden", None]
    assert items[0]["track"]["uri"] == world.tracks["songs"][0] and items[3]["track"]["uri"] == world.tracks["song"][0]
    assert body["list"]["itemCount"] == 4 and body["list"]["listType"] == "playlist"


async def test_search_ranks_exact_prefix_substring_fuzzy(world: World) -> None:
    # Typographic apostrophe and quotes (U+2019, U+201C/U+201D) are matched as plain ones.
    for q in ("don't stop", "DON\u2019T STOP", "\u201cDon't Stop\u201d"):
        results = (await xrpc(world, "search", q=q, type="track"))["results"]
        titles = [(r["match"], r["track"]["title"]) for r in results]
        assert titles[:4] == [
            ("exact", "Don't Stop"),
            ("prefix", "Don't Stop Believing"),
            ("substring", "All Night Don't Stop Now"),
            ("fuzzy", "Dont Stopp"),
        ], titles
    assert [r["track"]["title"] for r in (await xrpc(world, "search", q="café müller"))["results"]] == ["Café Müller"]
    assert (await xrpc(world, "search", q="hidden song"))["results"] == []
    mixed = (await xrpc(world, "search", q="ties"))["results"]
    assert {r["type"] for r in mixed} >= {"album"}
    assert (await xrpc(world, "search", q="artist.test", type="artist"))["results"][0]["artist"]["did"] == ART
    # A LIKE wildcard in the query is text, not a pattern.
    assert (await xrpc(world, "search", q="%", type="track"))["results"] == []
    all_pages = await walk(world, "search", "results", 1, q="stop")
    one_page = (await xrpc(world, "search", q="stop", limit=100))["results"]
    assert all_pages == one_page


async def test_totals_count_visible_content_only(world: World) -> None:
    totals = await xrpc(world, "getTotals")
    assert totals == {"tracks": 13, "artists": 1, "likes": 4, "duration": 6 * 60 + 300}


async def test_etag_revalidation_and_cors(world: World) -> None:
    r = await world.client.get("/xrpc/fm.plyr.index.getTotals")
    etag = r.headers["etag"]
    assert r.headers["cache-control"] == "public, max-age=10"
    again = await world.client.get("/xrpc/fm.plyr.index.getTotals", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    cors = await world.client.get("/xrpc/fm.plyr.index.getTotals", headers={"Origin": "https://app.example"})
    assert cors.headers["access-control-allow-origin"] == "https://app.example"
    other = await world.client.get("/xrpc/fm.plyr.index.getTotals", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


async def test_openapi_agrees_with_the_lexicons(world: World) -> None:
    doc = (await world.client.get("/openapi.json")).json()
    for nsid, definition in query_lexicons().items():
        op = doc["paths"][f"/xrpc/{nsid}"]["get"]
        spec = definition.get("parameters", {})
        assert {p["name"] for p in op["parameters"]} == set(spec.get("properties", {})), nsid
        assert {p["name"] for p in op["parameters"] if p["required"]} == set(spec.get("required", [])), nsid
        out = definition["output"]["schema"]
        schema = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert set(schema["properties"]) == set(out["properties"]), nsid
        assert set(schema.get("required", [])) == set(out.get("required", [])), nsid
    served = {p.removeprefix("/xrpc/") for p in doc["paths"] if p.startswith("/xrpc/")}
    assert served == set(query_lexicons())


async def test_health_ready_and_route_metrics(world: World) -> None:
    assert (await world.client.get("/health")).json() == {"status": "ok"}
    beats = f"{SCHEMA}.projector_heartbeats"
    await world.pool.execute(f"DELETE FROM {beats}")
    # No projector running (the fixture's stopped and left): not ready.
    none = await world.client.get("/ready")
    assert none.status_code == 503 and "no projector" in none.json()["reason"]
    await world.pool.execute(f"INSERT INTO {beats} (member, group_id, lag_seconds) VALUES ('p1', 'g', 0.4)")
    ready = await world.client.get("/ready")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "lagSeconds": 0.4, "projectors": 1}
    await world.pool.execute(f"UPDATE {beats} SET lag_seconds = 3600")
    behind = await world.client.get("/ready")
    assert behind.status_code == 503 and behind.json()["lagSeconds"] == 3600
    await world.pool.execute(f"UPDATE {beats} SET lag_seconds = 0, beat_at = now() - interval '5 minutes'")
    assert (await world.client.get("/ready")).status_code == 503
    await world.pool.execute(f"DELETE FROM {beats}")
    await world.client.get("/xrpc/fm.plyr.index.getTrack", params={"uri": "bad"})
    text = (await world.client.get("/metrics")).text
    assert 'plyr_api_requests_total{route="/xrpc/fm.plyr.index.getTrack",status="400"}' in text
    assert "plyr_api_request_seconds_bucket" in text


async def test_live_changes_resume_from_a_cursor(world: World) -> None:
    rows = await world.pool.fetch(f"SELECT seq, did FROM {SCHEMA}.changes ORDER BY seq")
    if not rows:
        pytest.skip("the projector does not write the change log yet")
    ws_base = world.base.replace("http://", "ws://") + "/xrpc/fm.plyr.index.subscribeChanges"
    visible = [r["seq"] for r in rows if r["did"] not in (GONE, LOCAL)]
    async with websockets.connect(f"{ws_base}?cursor=0") as ws:
        got = [orjson.loads(await asyncio.wait_for(ws.recv(), 10))["seq"] for _ in visible]
    assert got == visible
    middle = visible[len(visible) // 2]
    async with websockets.connect(f"{ws_base}?cursor={middle}") as ws:
        first = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
    assert first["seq"] == next(s for s in visible if s > middle)
    async with websockets.connect(f"{ws_base}?cursor={rows[-1]['seq'] + 1000}") as ws:
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
    assert frame["error"] == "FutureCursor"


async def test_activity_feed_shows_what_is_still_there_and_visible(world: World) -> None:
    full = (await xrpc(world, "getActivity", limit=100))["items"]
    assert {i["kind"] for i in full} == {"track", "like", "comment", "playlist", "album", "addedToList"}
    assert not [i for i in full if i["actor"]["did"] in (GONE, LOCAL)]
    added = [i["track"]["uri"] for i in full if i["kind"] == "addedToList"]
    # The playlist's missing and hidden items are not activity; its two visible tracks and the album's are.
    assert world.tracks["gone"][0] not in added and len(added) == 2 + 3
    assert all("track" in i for i in full if i["kind"] in ("track", "like", "comment", "addedToList"))
    assert all("list" in i for i in full if i["kind"] in ("playlist", "album", "addedToList"))
    assert await walk(world, "getActivity", "items", 4) == full


async def add_track(w: World, uri: str) -> None:
    """A newest track of ART written straight into the read model, as the projector would write it."""
    await w.pool.execute(
        f"INSERT INTO {SCHEMA}.tracks (uri, did, rkey, cid, title, artist, file_type, created_at, sort_at)"
        " VALUES ($1, $2, $3, $4, 'New', 'Artist', 'mp3', now(), now())",
        uri,
        ART,
        uri.rsplit("/", 1)[1],
        w.tracks["song"][1],
    )


async def test_a_cursor_walk_is_exact_while_new_tracks_arrive(world: World) -> None:
    before = [t["uri"] for t in (await xrpc(world, "getLatestTracks", limit=100))["tracks"]]
    seen: list[str] = []
    cursor = None
    added: list[str] = []
    for i in range(100):
        body = await xrpc(world, "getLatestTracks", limit=2, cursor=cursor)
        seen.extend(t["uri"] for t in body["tracks"])
        # A newer track lands between pages (as the projector would write it): it belongs above the
        # walk's position, so the pages still neither skip nor repeat.
        uri = at(ART, TRACK, rk("n", i))
        added.append(uri)
        await add_track(world, uri)
        cursor = body.get("cursor")
        if cursor is None:
            break
    await world.pool.execute(f"DELETE FROM {SCHEMA}.tracks WHERE uri = ANY($1)", added)
    assert seen == before


async def test_feed_pages_are_shared_for_their_time_and_single_items_are_read_afresh(
    world: World, database_url: str
) -> None:
    uri = at(ART, TRACK, rk("f", 1))
    async with (
        serving(database_url, SCHEMA, feed_cache_seconds=60) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        latest = "/xrpc/fm.plyr.index.getLatestTracks"
        first = await client.get(latest)
        assert first.status_code == 200
        await add_track(world, uri)
        try:
            # The page as first computed, for every client, with the same validator.
            again = await client.get(latest, params={"limit": "50"})  # the default, spelled out
            assert again.content == first.content and again.headers["etag"] == first.headers["etag"]
            assert uri not in again.text
            # Another form of the query is its own answer; the track itself is read afresh.
            other = await client.get(latest, params={"limit": "3"})
            assert other.json()["tracks"][0]["uri"] == uri
            assert (await client.get("/xrpc/fm.plyr.index.getTrack", params={"uri": uri})).status_code == 200
            # Revalidation against the shared page still answers 304.
            etag = first.headers["etag"]
            assert (await client.get(latest, headers={"If-None-Match": etag})).status_code == 304
        finally:
            await world.pool.execute(f"DELETE FROM {SCHEMA}.tracks WHERE uri = $1", uri)


async def test_search_pages_are_shared_for_their_time(world: World, database_url: str) -> None:
    uri = at(ART, TRACK, rk("s", 1))
    async with (
        serving(database_url, SCHEMA, search_cache_seconds=1) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        search = "/xrpc/fm.plyr.index.search"
        first = await client.get(search, params={"q": "new", "type": "track"})
        assert first.status_code == 200 and uri not in first.text
        await add_track(world, uri)  # titled "New"
        try:
            again = await client.get(search, params={"q": "new", "type": "track", "limit": "50"})
            assert again.content == first.content and again.headers["etag"] == first.headers["etag"]
            # Spellings of the same search share its page; another case is its own (SQL folds it).
            spelt = await client.get(search, params={"q": " \u201cnew\u201d ", "type": "track"})
            assert spelt.content == first.content
            other = await client.get(search, params={"q": "NEW", "type": "track"})
            assert uri in other.text
            # Kept no longer than its time: then the page is computed again, and has the track.
            await asyncio.sleep(1.1)
            later = await client.get(search, params={"q": "new", "type": "track"})
            assert [r["track"]["uri"] for r in later.json()["results"]][:1] == [uri]
        finally:
            await world.pool.execute(f"DELETE FROM {SCHEMA}.tracks WHERE uri = $1", uri)


async def test_track_views_stream_url_redirects_through_the_served_stream_route(world: World) -> None:
    # The redirect table itself is tested in test_stream.py; here: the app serves it at streamUrl.
    track = (await xrpc(world, "getTrack", uri=world.tracks["unicode"][0]))["track"]
    for method in ("GET", "HEAD"):
        r = await world.client.request(method, track["streamUrl"])
        assert r.status_code == 307 and r.headers["location"] == "https://cdn.example/cafe.mp3"
    metrics = (await world.client.get("/metrics")).text
    assert 'plyr_api_stream_redirects_total{target="cdn"} 2.0' in metrics
    hidden = world.tracks["gone"][0].removeprefix("at://").split("/")
    r = await world.client.get(f"/stream/{hidden[0]}/{hidden[2]}")
    assert r.status_code == 404 and r.json()["error"] == "NotFound"


async def test_short_queries_match_exact_and_prefix_only(world: World) -> None:
    results = (await xrpc(world, "search", q="ca", type="track"))["results"]
    assert [(r["match"], r["track"]["title"]) for r in results] == [("prefix", "Café Müller")]
    assert (await xrpc(world, "search", q="é", type="track"))["results"] == []
