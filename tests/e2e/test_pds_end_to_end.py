"""End to end on Bluesky's reference PDS: records written through its XRPC, read back from our API.

The PDS (``@atproto/pds`` from npm, with an in-memory PLC; tests/fixtures/pds.py) is the only source:
``plyr-index ingest`` follows its own ``com.atproto.sync.subscribeRepos`` with commit verification on
(real signed commits, keys from the PLC, handles checked both ways against a DNS that answers for the
PDS's ``.test`` handles), ``plyr-index project`` folds the log into Postgres, ``plyr-index serve`` answers.

After every step the API must serve exactly what the PDS's own ``com.atproto.repo.listRecords`` says,
read through the same eyes as a client: the tracks (uri, title), their like counts (distinct likers),
their comments, every list's items in the record's order, each artist's bio and verified handle;
records the lexicons refuse are in ``dead_letters`` with a reason instead; accounts deactivated or
taken down are hidden and come back when restored; a deleted one is purged. A projector restart and a
PDS restart (which drops the ingester's subscription) lose nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from tests.fixtures.pds import LocalPds
from tests.fixtures.pds_client import Account, JsonObject, PdsClient, Ref, handle_dns
from tests.fixtures.pipeline import Pipeline, PipelineConfig

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

TRACK, LIKE, LIST, COMMENT, PROFILE = (
    "fm.plyr.track",
    "fm.plyr.like",
    "fm.plyr.list",
    "fm.plyr.comment",
    "fm.plyr.actor.profile",
)
COLLECTIONS = (TRACK, LIKE, LIST, COMMENT, PROFILE)
INGEST_SCHEMA = "plyr_ingest"
# Long enough for a cold pipeline on a shared 2-core machine; a step normally lands in well under a second.
SETTLE_S = 45.0


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def track(title: str, *, blob: JsonObject | None = None, album: str | None = None) -> JsonObject:
    record: JsonObject = {"$type": TRACK, "title": title, "artist": "e2e", "fileType": "mp3", "createdAt": now()}
    if blob is None:
        record["audioUrl"] = f"https://cdn.example.com/{uuid.uuid4().hex}.mp3"
    else:
        record["audioBlob"] = blob
    if album is not None:
        record["album"] = album
    return record


def like(subject: Ref) -> JsonObject:
    return {"$type": LIKE, "subject": subject.strong(), "createdAt": now()}


def comment(subject: Ref, text: str, at_ms: int) -> JsonObject:
    return {"$type": COMMENT, "subject": subject.strong(), "text": text, "timestampMs": at_ms, "createdAt": now()}


def playlist(name: str, items: Iterable[Ref], kind: str = "playlist") -> JsonObject:
    return {
        "$type": LIST,
        "name": name,
        "listType": kind,
        "items": [{"subject": ref.strong()} for ref in items],
        "createdAt": now(),
    }


def profile(bio: str) -> JsonObject:
    return {"$type": PROFILE, "bio": bio, "createdAt": now()}


@dataclass
class World:
    """The running system and what a test did to it: its accounts, which of its records are invalid,
    which accounts are hidden (deactivated, taken down or deleted)."""

    pds: PdsClient
    local: LocalPds
    api: httpx.AsyncClient
    pipeline: Pipeline
    pool: asyncpg.Pool
    schema: str
    accounts: list[Account] = field(default_factory=list)
    invalid: set[str] = field(default_factory=set)
    hidden: set[str] = field(default_factory=set)

    async def account(self, name: str) -> Account:
        """A new account ``<name>-<random>.test`` this test follows."""
        acct = await self.pds.create_account(f"{name}-{uuid.uuid4().hex[:6]}.test")
        self.accounts.append(acct)
        return acct

    async def write_invalid(self, acct: Account, collection: str, record: JsonObject) -> Ref:
        """A record the lexicons refuse (the PDS stores it: it does not know fm.plyr.*)."""
        ref = await self.pds.create_record(acct, collection, record)
        self.invalid.add(ref.uri)
        return ref

    # What the PDS says ------------------------------------------------------------------------------

    async def truth(self) -> dict[str, Any]:
        """What the API must serve, from the PDS's listRecords of every account still there."""
        # A hidden account's repo is not served by its PDS either; what it holds must not be served by us.
        visible = {
            acct.did: {c: await self.pds.list_records(acct.did, c) for c in COLLECTIONS}
            for acct in self.accounts
            if acct.did not in self.hidden
        }

        def valid(did: str, collection: str) -> list[JsonObject]:
            return [r for r in visible.get(did, {}).get(collection, []) if r["uri"] not in self.invalid]

        tracks = {r["uri"]: r["value"]["title"] for did in visible for r in valid(did, TRACK)}
        likers: dict[str, set[str]] = {uri: set() for uri in tracks}
        comments: dict[str, set[tuple[str, str]]] = {uri: set() for uri in tracks}
        for did in visible:
            for r in valid(did, LIKE):
                likers.setdefault(r["value"]["subject"]["uri"], set()).add(did)
            for r in valid(did, COMMENT):
                comments.setdefault(r["value"]["subject"]["uri"], set()).add((r["uri"], r["value"]["text"]))
        lists = {
            r["uri"]: [(i["subject"]["uri"], i["subject"]["uri"] in tracks) for i in r["value"]["items"]]
            for did in visible
            for r in valid(did, LIST)
        }
        artists: dict[str, tuple[str | None, str | None]] = {}
        for acct in self.accounts:
            if acct.did in visible:
                bios = [r["value"].get("bio") for r in valid(acct.did, PROFILE)]
                artists[acct.did] = (acct.handle, bios[0] if bios else None)
            else:
                artists[acct.did] = (None, None)  # not served
        return {
            "tracks": tracks,
            "likes": {uri: len(likers.get(uri, ())) for uri in tracks},
            "comments": {uri: comments.get(uri, set()) for uri in tracks},
            "lists": lists,
            "artists": artists,
        }

    # What the API serves -----------------------------------------------------------------------------

    async def served(self, truth: dict[str, Any]) -> dict[str, Any]:
        """The same facts read through the API."""
        ours = {a.did for a in self.accounts}
        tracks: dict[str, str] = {}
        likes: dict[str, int] = {}
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = await self.xrpc("getLatestTracks", params)
            for view in page["tracks"]:
                if view["uri"].split("/")[2] in ours:
                    tracks[view["uri"]] = view["title"]
                    likes[view["uri"]] = view.get("likeCount", 0)
            cursor = page.get("cursor")
            if not cursor:
                break
        comments: dict[str, set[tuple[str, str]] | None] = {}
        for uri in tracks:
            response = await self.api.get("/xrpc/fm.plyr.index.getTrackComments", params={"uri": uri, "limit": 100})
            # A 404: the track was hidden since it was listed (this read is then retried).
            body = response.json() if response.status_code == 200 else None
            comments[uri] = None if body is None else {(c["uri"], c["text"]) for c in body["comments"]}
        lists = {}
        for uri in truth["lists"]:
            response = await self.api.get("/xrpc/fm.plyr.index.getList", params={"uri": uri})
            if response.status_code == 200:
                lists[uri] = [(i["subject"]["uri"], i["available"]) for i in response.json()["items"]]
        artists: dict[str, tuple[str | None, str | None]] = {}
        for acct in self.accounts:
            response = await self.api.get("/xrpc/fm.plyr.index.getArtist", params={"actor": acct.did})
            if response.status_code == 404:
                artists[acct.did] = (None, None)
            else:
                view = response.json()["artist"]
                artists[acct.did] = (view.get("handle"), view.get("bio"))
        return {"tracks": tracks, "likes": likes, "comments": comments, "lists": lists, "artists": artists}

    async def xrpc(self, query: str, params: dict[str, str | int]) -> JsonObject:
        response = await self.api.get(f"/xrpc/fm.plyr.index.{query}", params=params)
        assert response.status_code == 200, f"{query} {params}: {response.status_code} {response.text[:300]}"
        body: JsonObject = response.json()
        return body

    async def matches(self, step: str) -> None:
        """Until the API serves what the PDS holds; fails with the difference."""
        truth: dict[str, Any] = {}
        served: dict[str, Any] = {}

        async def same() -> bool:
            nonlocal truth, served
            truth = await self.truth()
            served = await self.served(truth)
            return served == truth

        if not await self.eventually(same):
            diff = {k: {"pds": truth[k], "api": served[k]} for k in truth if truth[k] != served[k]}
            pytest.fail(f"after {step}, the API differs from the PDS: {diff}\n{self.logs()}")

    async def eventually(self, check: Callable[[], Awaitable[bool]], timeout: float = SETTLE_S) -> bool:
        """Poll ``check`` until it holds or ``timeout`` passes; a part of the pipeline dying fails at once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self.pipeline.check_alive()
            if await check():
                return True
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.2)

    async def dead_letters(self) -> dict[str, str]:
        """at-uri → reason, for the dead letters of this test's accounts."""
        rows = await self.pool.fetch(
            f"SELECT did, collection, rkey, reason FROM {self.schema}.dead_letters WHERE did = ANY($1::text[])",
            [a.did for a in self.accounts],
        )
        return {f"at://{r['did']}/{r['collection']}/{r['rkey']}": r["reason"] for r in rows}

    async def repo_states(self) -> dict[str, tuple[str, str | None]]:
        """DID → (sync state, reason) the ingester holds for this test's repos."""
        rows = await self.pool.fetch(
            f"SELECT did, sync_state, reason FROM {INGEST_SCHEMA}.repos WHERE did = ANY($1::text[])",
            [a.did for a in self.accounts],
        )
        return {r["did"]: (r["sync_state"], r["reason"]) for r in rows}

    def logs(self) -> str:
        return "\n".join(f"--- {part}.log ---\n{self.pipeline.log(part, 2500)}" for part in ("ingest", "project"))


@pytest.fixture(scope="module")
async def system(
    pds: LocalPds, kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Pipeline, PdsClient, asyncpg.Pool, str]]:
    """The PDS, a DNS for its handles, and ingest + project + serve following its firehose."""
    schema = f"e2e_{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=pds.url, timeout=30) as http:
        client = PdsClient(http, pds.admin_password)
        async with handle_dns(client) as dns:
            config = PipelineConfig(
                database_url=database_url,
                kafka_bootstrap=kafka_bootstrap,
                topic=f"e2e.{uuid.uuid4().hex[:8]}",
                schema=schema,
                upstream=pds.firehose,
                plc_url=pds.plc_url,
                dns=dns,
            )
            pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
            try:
                async with Pipeline(config, tmp_path_factory.mktemp("pipeline"), dict(os.environ)) as pipeline:
                    yield pipeline, client, pool, schema
            finally:
                await pool.close()


@pytest.fixture
async def world(system: tuple[Pipeline, PdsClient, asyncpg.Pool, str], pds: LocalPds) -> AsyncIterator[World]:
    pipeline, client, pool, schema = system
    async with httpx.AsyncClient(base_url=pipeline.config.api_url, timeout=30) as api:
        yield World(client, pds, api, pipeline, pool, schema)


async def test_records_written_through_the_pds_are_served_as_listed(world: World) -> None:
    pds = world.pds
    alice = await world.account("alice")
    bob = await world.account("bob")
    carol = await world.account("carol")

    audio = await pds.upload_blob(alice, b"ID3" + os.urandom(4000), "audio/mpeg")
    one = await pds.create_record(alice, TRACK, track("One", blob=audio, album="First"))
    two = await pds.create_record(alice, TRACK, track("Two", album="First"))
    three = await pds.create_record(alice, TRACK, track("Three"))
    await pds.put_record(alice, PROFILE, "self", profile("plays things"))
    await world.matches("alice's tracks and profile")

    # Every commit of these repos went through verification and passed: nothing held, nothing failed.
    states = await world.repo_states()
    assert states.get(alice.did) == ("synchronized", None), states

    await pds.create_record(bob, LIKE, like(one))
    await pds.create_record(carol, LIKE, like(one))
    await pds.create_record(bob, LIKE, like(two))
    await pds.create_record(bob, COMMENT, comment(one, "the bridge", 61_000))
    await pds.create_record(carol, COMMENT, comment(one, "the intro", 2_500))
    await world.matches("likes and comments")

    album = await pds.create_record(alice, LIST, playlist("First", [one, two], kind="album"))
    mix = await pds.create_record(bob, LIST, playlist("Mix", [three, one, two]))
    await world.matches("an album and a playlist")

    # Updates: a new title, the playlist reordered and grown, the bio changed.
    two = await pds.put_record(alice, TRACK, two.rkey, track("Two (remastered)", album="First"))
    await pds.put_record(bob, LIST, mix.rkey, playlist("Mix", [two, three, one]))
    await pds.put_record(alice, PROFILE, "self", profile("plays other things"))
    await world.matches("updates")

    # Deletes: a track (its list entries stay, unavailable), a like, and a whole list.
    await pds.delete_record(alice, TRACK, three.rkey)
    carols_like = next(r for r in await pds.list_records(carol.did, LIKE))
    await pds.delete_record(carol, LIKE, carols_like["uri"].rsplit("/", 1)[1])
    await pds.delete_record(alice, LIST, album.rkey)
    await world.matches("deletes")

    assert await world.dead_letters() == {}
    metrics = await world.pipeline.ingest_metrics()
    assert 'plyr_ingest_verdicts_total{verdict="pass"}' in metrics
    assert 'plyr_ingest_verdicts_total{verdict="fail"}' not in metrics, metrics


async def test_invalid_records_go_to_dead_letters_with_a_reason(world: World) -> None:
    pds = world.pds
    dave = await world.account("dave")
    good = await pds.create_record(dave, TRACK, track("Fine"))
    junk = await world.write_invalid(dave, TRACK, {"$type": TRACK, "junk": 1})
    long_title = await world.write_invalid(dave, TRACK, {**track("x"), "title": "x" * 300})
    no_subject = await world.write_invalid(dave, LIKE, {"$type": LIKE, "createdAt": now()})
    bad_time = await world.write_invalid(dave, COMMENT, {**comment(good, "hm", 0), "timestampMs": "soon"})
    # A valid track made invalid by an update leaves the index.
    later = await pds.create_record(dave, TRACK, track("Later"))
    await world.matches("valid tracks")
    await pds.put_record(dave, TRACK, later.rkey, {"$type": TRACK, "title": "Later"})
    world.invalid.add(later.uri)
    await world.matches("invalid records")

    wanted = {junk.uri, long_title.uri, no_subject.uri, bad_time.uri, later.uri}

    async def all_dead() -> bool:
        return wanted <= set(await world.dead_letters())

    assert await world.eventually(all_dead), (await world.dead_letters(), world.logs())
    letters = await world.dead_letters()
    assert set(letters) == wanted
    assert all(reason.strip() for reason in letters.values()), letters


async def test_a_blob_only_track_streams_from_its_pds(world: World) -> None:
    pds = world.pds
    erin = await world.account("erin")
    data = b"ID3" + os.urandom(6000)
    blob = await pds.upload_blob(erin, data, "audio/mpeg")
    song = await pds.create_record(erin, TRACK, track("Blob only", blob=blob))
    await world.matches("a blob-only track")

    response = await world.api.get(f"/stream/{erin.did}/{song.rkey}", follow_redirects=False)
    assert response.status_code == 307, response.text
    location = urlsplit(response.headers["location"])
    assert (location.scheme, location.netloc, location.path) == (
        "http",
        urlsplit(world.local.public_url).netloc,
        "/xrpc/com.atproto.sync.getBlob",
    )
    assert parse_qs(location.query) == {"did": [erin.did], "cid": [blob["ref"]["$link"]]}
    # The redirect leads to the bytes that were uploaded.
    async with httpx.AsyncClient() as client:
        fetched = await client.get(response.headers["location"].replace("localhost", "127.0.0.1"))
    assert fetched.status_code == 200 and fetched.content == data


async def test_a_changed_handle_is_shown_once_verified(world: World) -> None:
    pds = world.pds
    frank = await world.account("frank")
    await pds.create_record(frank, TRACK, track("Handle test"))
    await world.matches("a new artist")
    await pds.update_handle(frank, f"frankie-{uuid.uuid4().hex[:6]}.test")
    await world.matches("a handle change")
    by_handle = await world.xrpc("getArtist", {"actor": frank.handle})
    assert by_handle["artist"]["did"] == frank.did


async def test_deactivation_takedown_and_deletion_hide_and_purge(world: World) -> None:
    pds = world.pds
    gus, hal, ivy = await world.account("gus"), await world.account("hal"), await world.account("ivy")
    songs = {a.did: await pds.create_record(a, TRACK, track(f"{a.handle} song")) for a in (gus, hal, ivy)}
    lists = {}
    for a in (gus, hal, ivy):
        await pds.create_record(a, LIKE, like(songs[gus.did]))
        lists[a.did] = await pds.create_record(a, LIST, playlist(f"{a.handle} list", songs.values()))
    await world.matches("three artists liking each other")

    await pds.deactivate(hal)
    world.hidden.add(hal.did)
    await world.matches("a deactivation")
    for query, uri in (("getTrack", songs[hal.did].uri), ("getList", lists[hal.did].uri)):
        response = await world.api.get(f"/xrpc/fm.plyr.index.{query}", params={"uri": uri})
        assert response.status_code == 404, (query, response.text)
    await pds.activate(hal)
    world.hidden.discard(hal.did)
    await world.matches("a reactivation")

    await pds.takedown(ivy.did)
    world.hidden.add(ivy.did)
    await world.matches("a takedown")
    await pds.takedown(ivy.did, applied=False)
    world.hidden.discard(ivy.did)
    await world.matches("a takedown reversed")

    await pds.delete_account(gus.did)
    world.hidden.add(gus.did)
    await world.matches("a deletion")

    async def purged() -> bool:
        count = await world.pool.fetchval(f"SELECT count(*) FROM {world.schema}.tracks WHERE did = $1", gus.did)
        return int(count) == 0

    assert await world.eventually(purged), world.logs()


async def test_projector_and_pds_restarts_lose_nothing(world: World) -> None:
    pds = world.pds
    jo, kim = await world.account("jo"), await world.account("kim")
    first = await pds.create_record(jo, TRACK, track("Before"))
    await world.matches("before the restarts")

    # The projector stops; writes go on; it starts again from the offsets stored with its rows.
    await world.pipeline.stop("project", signal.SIGKILL)
    second = await pds.create_record(jo, TRACK, track("While the projector was down"))
    await pds.create_record(kim, LIKE, like(first))
    await pds.create_record(kim, COMMENT, comment(second, "still here", 1000))
    await world.pipeline.start("project")
    await world.matches("a projector restart")

    # The PDS restarts: the ingester's subscription drops (close 1006) and it reconnects from its cursor.
    world.local.restart_pds()
    await pds.create_record(jo, TRACK, track("After the PDS restart"))
    await pds.create_record(kim, LIKE, like(second))
    await pds.put_record(kim, PROFILE, "self", profile("back"))
    await world.matches("a PDS restart")
    metrics = await world.pipeline.ingest_metrics()
    reconnects = [line for line in metrics.splitlines() if line.startswith("plyr_ingest_reconnects_total{")]
    assert reconnects and float(reconnects[0].rsplit(" ", 1)[1]) >= 1, reconnects
