"""Fuzz the API's parameter handling end to end: the real app (``api.app.create_app``) on a real
Postgres read-model schema (empty: every query still runs its SQL with the parsed parameters), driven
in process through httpx's ASGI transport (the app's lifespan entered as a server would) with random
query strings for every route of the served OpenAPI
document.

Query strings mix values shaped by each parameter's schema (integers in and out of range, enum
members, DIDs, handles, AT-URIs), page cursors carrying extreme keys (integers past int64, far
dates, NUL characters) under every tag the API uses, odd strings, raw percent escapes that are not
UTF-8, repeated and unknown parameters. Allowed outcomes: any status below 500; an error is an XRPC
error body ``{"error", "message"}``; a 200 from an XRPC query satisfies its lexicon's output schema.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from api.app import create_app
from api.settings import ApiSettings
from api.xrpc import catalog, query_lexicons
from lexicons.validate import Valid, validate_value
from schemas.migrate import migrate
from tests.fuzz.harness import fuzz, note

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]

SCHEMA = "fuzz_read"


@pytest.fixture(scope="module")
async def read_schema(database_url: str) -> AsyncIterator[str]:
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn, "read", SCHEMA)
    finally:
        await conn.close()
    yield database_url


@pytest.fixture(scope="module")
async def client(read_schema: str) -> AsyncIterator[httpx.AsyncClient]:
    # The fuzzer is one client sending as fast as it can: the rate limit is tested in test_limits.py.
    settings = ApiSettings(
        schema_name=SCHEMA,
        pool_min=1,
        pool_max=2,
        trusted_cdn_origins=("https://cdn.example",),
        rate_limit_per_second=0,
    )
    app = create_app(read_schema, settings, CollectorRegistry())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


_ROUTES: list[tuple[str, list[dict[str, Any]]]] = []


async def _routes(client: httpx.AsyncClient) -> list[tuple[str, list[dict[str, Any]]]]:
    """(path, parameters) of every GET operation in the served OpenAPI document."""
    if not _ROUTES:
        doc = (await client.get("/openapi.json")).json()
        for path, ops in sorted(doc["paths"].items()):
            if "get" in ops:
                _ROUTES.append((path, ops["get"].get("parameters", [])))
    return _ROUTES


_ODD: tuple[str, ...] = (
    "",
    "0",
    "-1",
    "1e3",
    "+5",
    " 5",
    "٣",
    "true",
    "\x00",
    "a\x00b",
    "\ud800",
    "x" * 3_000,
    "did:plc:",
    "at://",
)
_ODD += ("%", "..", "/", "did:web:localhost", "did:plc:" + "a" * 24, "@handle", "a.b", "ALL", "\u00e9\u0301")
_RAW_ESCAPES = ("%ff", "%ed%a0%80", "%00", "%", "%zz", "%c3", "%e2%80%ae", "+", "%2B", "&", "=", ";")


# The (tag, key kinds) of each list's cursors, as the queries write them (api/queries/*.py).
_PAGES: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "getLatestTracks": [("latest", ("time", "str"))],
    "getTopTracks": [
        ("top:all", ("int", "str")),
        ("top:day", ("int",)),
        ("top:week", ("int",)),
        ("top:month", ("int",)),
    ],
    "getTrackLikers": [("likers", ("time", "str"))],
    "getTrackComments": [("comments", ("int", "str"))],
    "getArtistLists": [("lists", ("time", "str"))],
    "listArtists": [("artists", ("time", "str"))],
    "getActorLikes": [("actorLikes", ("time", "str"))],
    "getActivity": [("activity", ("int",))],
    "search": [("search", ("int", "float", "str", "str"))],
}
_EXTREMES: dict[str, tuple[Any, ...]] = {
    "int": (0, -1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), -(2**63) - 1, 10**30),
    "float": (0, 0.5, -1.5, 1e38, 3.5e38, 1e308, -1e308, 5e-324),
    "time": (
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00",
        "0001-01-01T00:00:00+14:00",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59-14:00",
        "9999-12-31T23:59:59.999999Z",
        "2026-13-01T00:00:00Z",
    ),
    "str": ("", "\x00", "at://did:plc:x/fm.plyr.track/3k", "\u00e9" * 100, "x" * 5_000),
}
_ANY = (*(v for values in _EXTREMES.values() for v in values), None, [], {}, True, 1.5)


def _cursor(rng: random.Random, path: str) -> str:
    pages = _PAGES.get(path.rsplit(".", 1)[-1], [("other", ("str",))])
    tag, kinds = rng.choice(pages)
    if rng.random() < 0.1:
        tag = rng.choice([t for ps in _PAGES.values() for t, _ in ps])  # another list's cursor
    parts: list[Any] = [tag]
    for kind in kinds if rng.random() < 0.9 else kinds[:-1] + kinds:
        parts.append(rng.choice(_EXTREMES[kind]) if rng.random() < 0.85 else rng.choice(_ANY))
    # The stdlib writer: it writes integers past 64 bits too, which a client can send.
    raw = json.dumps(parts, separators=(",", ":")).encode()
    if rng.random() < 0.05:
        raw = raw.replace(b"0.5", b"1e999")  # JSON that reads as infinity
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _value(path: str, name: str, schema: dict[str, Any], rng: random.Random) -> str:
    roll = rng.random()
    if name == "cursor" and roll < 0.7:
        return _cursor(rng, path)
    if roll < 0.4:
        kind, fmt = schema.get("type"), schema.get("format")
        if "enum" in schema:
            return str(rng.choice(schema["enum"]))
        if kind == "integer":
            low, high = schema.get("minimum", -(2**31)), schema.get("maximum", 2**31)
            return str(rng.choice((low, high, low - 1, high + 1, 2**64, -(2**64), rng.randint(low, high))))
        if fmt in ("at-identifier", "did") or name == "did":
            return rng.choice(("did:plc:" + "a" * 24, "did:web:example.com", "artist.test", "did:plc:x" + "\x00"))
        if fmt == "at-uri":
            return rng.choice(
                (
                    "at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/fm.plyr.track/3kaaaaaaaaaaa",
                    "at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/fm.plyr.list/3kaaaaaaaaaaa",
                    "at://artist.test/fm.plyr.track/3kaaaaaaaaaaa",
                    "at://did:plc:a/fm.plyr.track/" + "x" * 600,
                )
            )
        if name == "rkey":
            return rng.choice(("3kaaaaaaaaaaa", "self", ".", "..", "a" * 600))
    return rng.choice(_ODD) if rng.random() < 0.7 else "".join(chr(rng.randrange(0x300)) for _ in range(8))


def _encode(value: str, rng: random.Random) -> str:
    text = quote(value.encode("utf-8", "surrogatepass"), safe="")
    if rng.random() < 0.1:
        i = rng.randint(0, len(text))
        text = text[:i] + rng.choice(_RAW_ESCAPES) + text[i:]
    return text


def _url(path: str, params: list[dict[str, Any]], rng: random.Random) -> str:
    pairs: list[str] = []
    for p in params:
        value = _encode(_value(path, p["name"], p.get("schema", {}), rng), rng)
        if p["in"] == "path":
            path = path.replace("{" + p["name"] + "}", value or "x")
        elif rng.random() < (0.9 if p.get("required") or p["name"] == "cursor" else 0.6):
            pairs += [f"{p['name']}={value}"] * (2 if rng.random() < 0.05 else 1)
    if rng.random() < 0.05:
        pairs.append(rng.choice(("unknown=1", "=1", "&&", "limit", "cursor=")))
    rng.shuffle(pairs)
    return path + ("?" + "&".join(pairs) if pairs else "")


@fuzz(300)
@given(st.integers(0, 2**32))
async def test_random_query_strings_on_every_route(client: httpx.AsyncClient, seed: int) -> None:
    rng = random.Random(seed)
    routes = await _routes(client)
    path, params = rng.choice(routes)
    url = _url(path, params, rng)
    headers = {"If-None-Match": rng.choice(('"x"', "*", "\x7f"))} if rng.random() < 0.05 else {}
    r = await client.get(url, headers=headers, follow_redirects=False)
    note(f"api GET {path}", str(r.status_code))
    assert r.status_code < 500, (url, r.status_code, r.text[:300])
    if r.status_code >= 400:
        body = r.json()
        assert set(body) == {"error", "message"} and isinstance(body["message"], str), (url, body)
    elif r.status_code == 200 and path.startswith("/xrpc/"):
        nsid = path.removeprefix("/xrpc/")
        schema = query_lexicons()[nsid]["output"]["schema"]
        assert isinstance(validate_value(catalog(), schema, r.json(), nsid), Valid), (url, r.text[:300])


async def test_the_served_document_lists_every_route(client: httpx.AsyncClient) -> None:
    # The routes come from the served document; make sure it lists the XRPC queries and the stream.
    paths = [p for p, _ in await _routes(client)]
    assert len([p for p in paths if p.startswith("/xrpc/fm.plyr.index.")]) == len(query_lexicons())
    assert "/stream/{did}/{rkey}" in paths
