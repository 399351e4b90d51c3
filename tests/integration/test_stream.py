"""``/stream/{did}/{rkey}`` on read models the real projector built, against a real S3 API (moto) and a
loopback PLC directory + PDS: every branch of the redirect table, every hostile audioUrl falling
through, HEAD like GET, and the 400/402/404/502/503 answers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import aiohttp
import asyncpg
import httpx
import pytest

from api.settings import ApiSettings
from schemas.envelope import Event
from schemas.migrate import migrate
from tests.fixtures import events as ev
from tests.fixtures.atproto_host import AtprotoHost, document, serving_atproto_host
from tests.fixtures.s3 import S3Bucket, s3_client
from tests.fixtures.stream_app import stream_app
from tests.integration.test_projector import project_all
from tests.services import free_port
from tests.unit.runtime.test_urls import HOSTILE

pytestmark = pytest.mark.integration

SCHEMA = "stream_read"
TRACK = "fm.plyr.track"
ART = "did:plc:streamartistaaaaaaaaaaa"
GONE = "did:plc:streamgoneaaaaaaaaaaaaa"
LOCAL = "did:plc:streamlocalaaaaaaaaaaaa"
BAD_ENDPOINT = "did:plc:streambadendpointaaaaaa"
WRONG_ID = "did:plc:streamwrongidaaaaaaaaaa"
UNREGISTERED = "did:plc:streamunregisteredaaaa"
CDN = "https://cdn.example"
PRESIGN_SECONDS = 120


@dataclass
class World:
    pool: asyncpg.Pool
    host: AtprotoHost
    bucket: S3Bucket
    keys: dict[str, tuple[str, str]]  # name → (did, rkey)
    blobs: dict[str, bytes]  # cid → bytes
    hostile: list[tuple[str, str]]  # (rkey, audioUrl) of tracks whose audioUrl must never be followed

    def path(self, name: str) -> str:
        did, rkey = self.keys[name]
        # A DID may hold '%' (did:web:localhost%3A2583): in a URL path that is '%25'.
        return f"/stream/{quote(did, safe=':')}/{rkey}"


def blob_ref(cid: str, data: bytes) -> dict[str, Any]:
    return {"$type": "blob", "ref": {"$link": cid}, "mimeType": "audio/mpeg", "size": len(data)}


@pytest.fixture(scope="module")
async def world(kafka_bootstrap: str, database_url: str, s3_endpoint: str) -> AsyncIterator[World]:
    async with serving_atproto_host() as host:
        for did in (ART, GONE, LOCAL, UNREGISTERED):
            host.add_identity(did)
        del host.documents[UNREGISTERED]
        host.add_identity(BAD_ENDPOINT, "javascript:alert(1)")
        host.documents[WRONG_ID] = document(ART, host.url)  # a document for another DID

        blobs: dict[str, bytes] = {}
        keys: dict[str, tuple[str, str]] = {}
        events: list[Event] = [ev.identity(did, i, f"s{i}.test") for i, did in enumerate((ART, GONE, LOCAL), 1)]
        mirrored: list[str] = []

        def blob(did: str, name: str, *, mirror: bool = False) -> dict[str, Any]:
            data = f"{name} audio bytes ".encode() * 300
            cid = host.add_blob(did, data)
            blobs[cid] = data
            if mirror:
                mirrored.append(cid)
            return blob_ref(cid, data)

        def add(name: str, did: str, **fields: Any) -> None:
            n = len(events) + 10
            rkey = f"3s{n:011d}"
            keys[name] = (did, rkey)
            events.append(ev.put(did, TRACK, rkey, n, ev.track(name, **fields)))

        add("cdn", ART, audioUrl=f"{CDN}/cdn.mp3", audioBlob=blob(ART, "cdn"))
        add("cdn_spelled", ART, audioUrl="HTTPS://CDN.EXAMPLE:443/Up%20per.mp3", audioBlob=blob(ART, "cdn2"))
        add("mirrored", ART, audioBlob=blob(ART, "mirrored", mirror=True))
        add("mirrored_untrusted", ART, audioUrl="https://evil.example/a.mp3", audioBlob=blob(ART, "m2", mirror=True))
        add("pds", ART, audioBlob=blob(ART, "pds"))
        add("no_source", ART, audioUrl="https://evil.example/x.mp3")
        add("nothing", ART)
        gate = {"type": "any"}
        add("gated", ART, supportGate=gate, audioUrl=f"{CDN}/g.mp3", audioBlob=blob(ART, "gated", mirror=True))
        add("gated_unmirrored", ART, supportGate=gate, audioBlob=blob(ART, "gated2"))
        add("gone", GONE, audioUrl=f"{CDN}/gone.mp3", audioBlob=blob(GONE, "gone"))
        add("local", LOCAL, audioUrl=f"{CDN}/local.mp3", audioBlob=blob(LOCAL, "local"))
        # did:web: the document comes from the host itself (here localhost:<port>, development only).
        web_did = f"did:web:localhost%3A{urlsplit(host.url).port}"
        host.web_document = document(web_did, host.url)
        add("did_web", web_did, audioBlob=blob(web_did, "did_web"))
        for did, name in ((BAD_ENDPOINT, "bad_endpoint"), (WRONG_ID, "wrong_id"), (UNREGISTERED, "unregistered")):
            add(name, did, audioBlob=blob(did, name))
        events.append(ev.account(GONE, len(events) + 10, False, "deactivated"))

        topic = f"test.stream.{uuid.uuid4().hex[:8]}"
        server = {"search_path": f"{SCHEMA}, public"}
        async with asyncpg.create_pool(database_url, min_size=1, max_size=4, server_settings=server) as pool:
            async with pool.acquire() as conn:
                await migrate(conn, "read", SCHEMA)
            await pool.execute("INSERT INTO artists (did, local_takedown) VALUES ($1, true)", LOCAL)
            await project_all(kafka_bootstrap, database_url, pool, topic, events, SCHEMA)
            assert await pool.fetchval("SELECT count(*) FROM tracks") == len(keys)
            # Hostile audioUrls, many of which the lexicon would already refuse: written straight into
            # the read model as copies of the "pds" track, so the endpoint is their last line.
            hostile = []
            base = f"at://{ART}/{TRACK}/{keys['pds'][1]}"
            for i, (raw, _) in enumerate(HOSTILE):
                if "\x00" in raw:
                    continue  # Postgres text cannot hold NUL
                rkey = f"3h{i:011d}"
                await pool.execute(
                    "INSERT INTO tracks (uri, did, rkey, cid, title, artist, file_type, audio_url, audio_blob_cid,"
                    " audio_blob_mime, audio_blob_size, created_at, sort_at)"
                    " SELECT $1, did, $2, cid, title, artist, file_type, $3, audio_blob_cid, audio_blob_mime,"
                    " audio_blob_size, created_at, sort_at FROM tracks WHERE uri = $4",
                    f"at://{ART}/{TRACK}/{rkey}",
                    rkey,
                    raw,
                    base,
                )
                hostile.append((rkey, raw))
            bucket = S3Bucket(s3_endpoint, f"stream-{uuid.uuid4().hex[:12]}")
            async with s3_client(s3_endpoint) as s3:
                await s3.create_bucket(Bucket=bucket.name)
                for cid in mirrored:
                    await s3.put_object(
                        Bucket=bucket.name, Key=f"blobs/{cid}", Body=blobs[cid], ContentType="audio/mpeg"
                    )
            yield World(pool, host, bucket, keys, blobs, hostile)


def settings(w: World, **overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "schema_name": SCHEMA,
        "trusted_cdn_origins": (CDN,),
        "plc_url": w.host.url,
        "allow_private_pds": True,
        "presign_seconds": PRESIGN_SECONDS,
        **w.bucket.settings(),
    }
    return ApiSettings(**{**values, **overrides})


@asynccontextmanager
async def serving(w: World, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = stream_app(w.pool, settings(w, **overrides))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://index.test") as client,
    ):
        yield client
    # The router's lifespan closed the sessions and the S3 client it opened lazily.
    assert getattr(app.state, "audio_sources", None) is None


@pytest.fixture
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(world) as c:
        yield c


async def location(client: httpx.AsyncClient, path: str) -> tuple[str, str]:
    """Location and Cache-Control of a 307 that GET and HEAD agree on."""
    got = await client.get(path)
    head = await client.head(path)
    assert got.status_code == head.status_code == 307, got.text
    assert got.headers["cache-control"] == head.headers["cache-control"]
    where = got.headers["location"]
    # A presigned URL is signed per request; everything but the signature time must agree.
    assert without_signature(where) == without_signature(head.headers["location"])
    return where, got.headers["cache-control"]


def without_signature(url: str) -> tuple[str, str, list[str]]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    return parts.netloc, parts.path, sorted(k for k in query if k not in ("X-Amz-Date", "X-Amz-Signature"))


async def error(client: httpx.AsyncClient, path: str, status: int) -> tuple[str, str]:
    got = await client.get(path)
    head = await client.head(path)
    assert got.status_code == head.status_code == status, got.text
    assert "location" not in got.headers and "location" not in head.headers
    body = got.json()
    assert set(body) == {"error", "message"} and body["message"]
    return body["error"], body["message"]


def pds_url(w: World, name: str) -> str:
    did, _ = w.keys[name]
    cid = next(c for c, data in w.blobs.items() if data.startswith(f"{name} audio".encode()))
    return f"{w.host.url}/xrpc/com.atproto.sync.getBlob?{urlencode({'did': did, 'cid': cid})}"


async def fetch(url: str) -> tuple[int, bytes, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as r:
        return r.status, await r.read(), r.headers.get("Content-Type", "")


async def test_trusted_cdn_first(world: World, client: httpx.AsyncClient) -> None:
    where, cache = await location(client, world.path("cdn"))
    assert where == f"{CDN}/cdn.mp3" and cache.startswith("public, max-age=")
    # Upper case and the default port are the same origin; the canonical spelling goes out.
    where, _ = await location(client, world.path("cdn_spelled"))
    assert where == f"{CDN}/Up%20per.mp3"


async def test_presigned_when_mirrored(world: World, client: httpx.AsyncClient) -> None:
    for name in ("mirrored", "mirrored_untrusted"):
        where, cache = await location(client, world.path(name))
        assert cache == "no-store"
        parts = urlsplit(where)
        query = parse_qs(parts.query)
        assert f"{parts.scheme}://{parts.netloc}" == world.bucket.endpoint
        assert parts.path.startswith(f"/{world.bucket.name}/blobs/b")
        assert query["X-Amz-Expires"] == [str(PRESIGN_SECONDS)] and "X-Amz-Credential" in query
        status, body, mime = await fetch(where)
        assert status == 200 and body == world.blobs[parts.path.rsplit("/", 1)[1]] and mime == "audio/mpeg"


async def test_pds_blob_last(world: World, client: httpx.AsyncClient) -> None:
    where, cache = await location(client, world.path("pds"))
    assert where == pds_url(world, "pds") and cache.startswith("public, max-age=")
    status, body, _ = await fetch(where)
    assert status == 200 and body.startswith(b"pds audio bytes")
    # did:web documents are fetched from the DID's host.
    where, _ = await location(client, world.path("did_web"))
    assert where == pds_url(world, "did_web") and "/.well-known/did.json" in world.host.requests
    # The CDN track's blob is not what it gets: a trusted audioUrl comes first.
    assert (await location(client, world.path("cdn")))[0] != pds_url(world, "cdn")


async def test_hostile_audio_urls_fall_through(world: World, client: httpx.AsyncClient) -> None:
    assert len(world.hostile) >= 70
    expected = pds_url(world, "pds")
    for rkey, raw in world.hostile:
        where, _ = await location(client, f"/stream/{ART}/{rkey}")
        assert where == expected, raw
        assert not raw or raw not in where


async def test_hostile_urls_never_used_without_a_blob(world: World, client: httpx.AsyncClient) -> None:
    # Same hostile URLs with nothing to fall through to: no redirect at all.
    await world.pool.execute(
        "UPDATE tracks SET audio_blob_cid = NULL WHERE rkey = ANY($1::text[])", [k for k, _ in world.hostile[:10]]
    )
    try:
        for rkey, _ in world.hostile[:10]:
            name, message = await error(client, f"/stream/{ART}/{rkey}", 404)
            assert name == "NotFound" and "no playable source" in message
    finally:
        cid = await world.pool.fetchval("SELECT audio_blob_cid FROM tracks WHERE rkey = $1", world.keys["pds"][1])
        await world.pool.execute(
            "UPDATE tracks SET audio_blob_cid = $2 WHERE rkey = ANY($1::text[])", [k for k, _ in world.hostile], cid
        )


async def test_not_found(world: World, client: httpx.AsyncClient) -> None:
    for path in (
        f"/stream/{ART}/3zzzzzzzzzzzz",
        f"/stream/did:plc:nobodyaaaaaaaaaaaaaaaaaa/{world.keys['cdn'][1]}",
        world.path("gone"),
        world.path("local"),
    ):
        assert (await error(client, path, 404))[0] == "NotFound", path
    for name in ("no_source", "nothing"):
        kind, message = await error(client, world.path(name), 404)
        assert kind == "NotFound" and "no playable source" in message


@pytest.mark.parametrize(
    "path",
    [
        "/stream/not-a-did/3s00000000010",
        "/stream/did:PLC:abc/3s00000000010",
        "/stream/did:plc:/3s00000000010",
        f"/stream/{ART}/bad%20key",
        f"/stream/{ART}/a*b",
        f"/stream/{ART}/" + "a" * 513,
    ],
)
async def test_malformed_is_invalid(world: World, client: httpx.AsyncClient, path: str) -> None:
    assert (await error(client, path, 400))[0] == "InvalidRequest"


async def test_gated_needs_payment(world: World, client: httpx.AsyncClient) -> None:
    for name in ("gated", "gated_unmirrored"):
        kind, message = await error(client, world.path(name), 402)
        assert kind == "SupporterOnly" and "supporters" in message


async def test_gated_with_presign_serves_only_the_mirror(world: World) -> None:
    async with serving(world, gated_audio="presign") as client:
        where, cache = await location(client, world.path("gated"))
        # Not the trusted CDN and not the PDS: only a presigned URL of the mirror.
        assert cache == "no-store" and where.startswith(f"{world.bucket.endpoint}/{world.bucket.name}/blobs/")
        kind, message = await error(client, world.path("gated_unmirrored"), 404)
        assert kind == "NotFound" and "mirror" in message
    async with serving(world, gated_audio="presign", s3_bucket=None) as client:
        assert (await error(client, world.path("gated"), 404))[0] == "NotFound"


async def test_identity_failures_are_upstream_errors(world: World, client: httpx.AsyncClient) -> None:
    for name in ("bad_endpoint", "wrong_id", "unregistered"):
        kind, _ = await error(client, world.path(name), 502)
        assert kind == "UpstreamFailure", name
    # The loopback PDS is refused when private addresses are not allowed.
    async with serving(world, allow_private_pds=False) as strict:
        assert (await error(strict, world.path("pds"), 502))[0] == "UpstreamFailure"
        # Sources before the PDS need no identity.
        assert (await location(strict, world.path("cdn")))[0] == f"{CDN}/cdn.mp3"
    # A directory that does not answer: try again later.
    async with serving(world, plc_url=f"http://127.0.0.1:{free_port()}") as down:
        assert (await error(down, world.path("pds"), 503))[0] == "Unavailable"


async def test_without_a_usable_bucket_the_pds_serves(world: World) -> None:
    async with serving(world, s3_bucket=None) as client:
        assert (await location(client, world.path("mirrored")))[0] == pds_url(world, "mirrored")
    # A bucket that cannot be reached is not an error: the next source serves.
    async with serving(world, s3_endpoint_url=f"http://127.0.0.1:{free_port()}") as client:
        assert (await location(client, world.path("mirrored")))[0] == pds_url(world, "mirrored")


async def test_bad_trusted_origin_stops_startup(world: World) -> None:
    app = stream_app(world.pool, settings(world, trusted_cdn_origins=("https://cdn.example/path",)))
    with pytest.raises(ValueError, match="not_origin"):
        async with app.router.lifespan_context(app):
            pass
