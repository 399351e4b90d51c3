"""Search over a word common enough that every class holds more than a page: the ranking tiers, the
first 200 candidates of each class in normalized order, pages, hidden repos, updates and deletes, and
that the ordered walk and the trigram bitmap give the substring class the same rows."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from api.queries.search import _BY_WORDS, _SOURCES, _above_prefixes, _like_escape, _words_pattern
from api.search_words import rebuild
from schemas.envelope import Event
from tests.fixtures import events as ev
from tests.fixtures.api_server import serving
from tests.integration.test_api import TRACK, World, at, build_read_model, rk, walk, xrpc

ART = "did:plc:searchartistaaaaaaaaaaaa"
GONE = "did:plc:searchgonebbbbbbbbbbbbbb"
SCHEMA = "search_read"
SPAN = 210  # more than the 200 candidates a class keeps per kind


def corpus() -> tuple[list[Event], dict[str, str]]:
    out: list[Event] = [ev.identity(ART, 1, "echo-artist.test"), ev.identity(GONE, 2, "gone.test")]
    uris: dict[str, str] = {}
    n = 10

    def add(name: str, did: str, title: str) -> None:
        nonlocal n
        n += 1
        out.append(ev.put(did, TRACK, rk("t", n), n, ev.track(title)))
        uris[name] = at(did, TRACK, rk("t", n))

    for i in range(3):
        add(f"exact{i}", ART, "Echo")
    for i in range(SPAN):
        add(f"prefix{i}", ART, f"Echo Park {i:03d}")
        add(f"sub{i}", ART, f"Blue Echo {i:03d}")
    add("late", ART, "Zed Echo")
    add("fuzzy", ART, "Echa")
    add("quoted", ART, "Echo\u2019s Song")
    add("renamed", ART, "Blue Echo 999")
    add("hidden", GONE, "Echo")
    add("hidden_sub", GONE, "Blue Echo Hidden")
    # An update moves a track from the substring class to the exact one; a delete removes one.
    n += 1
    renamed_key = uris["renamed"].rsplit("/", 1)[1]
    out.append(ev.put(ART, TRACK, renamed_key, n, ev.track("ECHO")))
    n += 1
    out.append(ev.delete(ART, TRACK, uris["prefix0"].rsplit("/", 1)[1], n))
    out.append(ev.account(GONE, n + 1, False, "deactivated"))
    return out, uris


@pytest.fixture(scope="module")
async def world(kafka_bootstrap: str, database_url: str) -> AsyncIterator[World]:
    events, uris = corpus()
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as pool:
        await build_read_model(
            kafka_bootstrap, database_url, pool, f"test.search.{uuid.uuid4().hex[:8]}", events, SCHEMA
        )
        async with (
            serving(database_url, SCHEMA, search_cache_seconds=0) as base,
            httpx.AsyncClient(base_url=base) as client,
        ):
            yield World(client, base, pool, {k: (v, "") for k, v in uris.items()})


def by_match(results: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in results:
        out.setdefault(r["match"], []).append(r["track"]["title"])
    return out


async def test_common_word_ranks_each_class_from_its_first_200(world: World) -> None:
    results = await walk(world, "search", "results", 37, q="echo", type="track")
    order = ["exact", "prefix", "substring", "fuzzy"]
    assert [order.index(r["match"]) for r in results] == sorted(order.index(r["match"]) for r in results)
    classes = by_match(results)
    # Hidden repos never show; the renamed track is exact now; the deleted one is gone.
    assert classes["exact"] == ["Echo"] * 3 + ["ECHO"]
    hidden = {world.tracks["hidden"][0], world.tracks["hidden_sub"][0]}
    assert not hidden & {r["track"]["uri"] for r in results}
    # Prefix and substring candidates are the first 200 in normalized (byte) order.
    # ("echo park" sorts before "echo's song": a space is below an apostrophe.)
    assert sorted(classes["prefix"]) == [f"Echo Park {i:03d}" for i in range(1, 201)]
    assert sorted(classes["substring"]) == [f"Blue Echo {i:03d}" for i in range(200)]
    assert classes["fuzzy"] == ["Echa"]
    # A walk at any page size is the one-page answer.
    assert results[:100] == (await xrpc(world, "search", q="echo", type="track", limit=100))["results"]


async def test_quotes_and_case_fold_and_short_queries(world: World) -> None:
    for q in ("echo's song", "ECHO\u2019S SONG", "\u201cEcho's Song\u201d"):
        results = (await xrpc(world, "search", q=q, type="track"))["results"]
        assert [(r["match"], r["track"]["title"]) for r in results][:1] == [("exact", "Echo\u2019s Song")]
    short = by_match((await xrpc(world, "search", q="ec", type="track", limit=100))["results"])
    assert set(short) == {"prefix"}


async def test_substring_rows_do_not_depend_on_the_plan(world: World) -> None:
    norm = "echo"
    rows = {}
    plans = {
        "walk": "SET LOCAL enable_bitmapscan = off",
        "bitmap": "SET LOCAL enable_indexscan = off; SET LOCAL enable_indexonlyscan = off",
    }
    for name, setting in plans.items():
        async with world.pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL search_path = {SCHEMA}, public; SET LOCAL enable_seqscan = off; {setting}")
            sql = f"SELECT key FROM {_SOURCES['track'][2]} s WHERE $2::text IS NOT NULL"
            plan = "\n".join(
                r[0] for r in await conn.fetch("EXPLAIN " + sql, norm, _like_escape(norm), _above_prefixes(norm))
            )
            assert ("Bitmap" in plan) == (name == "bitmap"), plan
            rows[name] = [r["key"] for r in await conn.fetch(sql, norm, _like_escape(norm), _above_prefixes(norm))]
    assert len(rows["walk"]) == 200 and rows["walk"] == rows["bitmap"]


async def test_a_query_of_several_words_reads_the_same_substring_rows_through_its_words(world: World) -> None:
    # "echo 0" is in a hundred "Blue Echo 0nn" titles; its words' pattern also takes in every "Echo
    # Park 0nn", which the query's own check must drop.
    one_word_form, by_words = _SOURCES["track"][2], _SOURCES["track"][_BY_WORDS]
    for norm in ("echo 0", "echo 20", "park 01", "blue echo 1"):
        words = _words_pattern(norm)
        assert words is not None
        args = (norm, _like_escape(norm), _above_prefixes(norm))
        async with world.pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL search_path = {SCHEMA}, public; SET LOCAL enable_seqscan = off")
            expected = [r["key"] for r in await conn.fetch(f"SELECT key FROM {one_word_form} s", *args)]
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            await conn.execute(f"PREPARE by_words (text, text, text, text) AS SELECT key FROM {by_words} s")
            # The plan the API runs (generic: it never depends on the text) builds the trigram bitmap,
            # however common the words (the corpus is mostly "echo").
            values = ", ".join([await conn.fetchval("SELECT quote_literal($1)", v) for v in (*args, words)])
            plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN EXECUTE by_words ({values})"))
            assert "Bitmap Index Scan on tracks_search" in plan, plan
            got = [r["key"] for r in await conn.fetch(f"EXECUTE by_words ({values})")]
            await conn.execute("DEALLOCATE by_words")
        assert got == expected, norm
        assert expected or norm == "blue echo 1"  # a prefix of its matches: none in the substring class
    results = (await xrpc(world, "search", q="echo 0", type="track", limit=100))["results"]
    classes = by_match(results)
    assert len(classes["substring"]) == 100 and all(t.startswith("Blue Echo 0") for t in classes["substring"])


async def test_fuzzy_matches_reordered_and_respelt_words(world: World) -> None:
    # The old trigram scan found these too (similarity 1 and 0.71); the vocabulary now finds them by
    # reordering "park echo 005" and respelling "ehco" (two letters swapped) into phrases.
    for q in ("park echo 005", "ehco park 005"):
        results = (await xrpc(world, "search", q=q, type="track"))["results"]
        assert ("fuzzy", "Echo Park 005") in [(r["match"], r["track"]["title"]) for r in results], q


async def test_the_vocabulary_is_rebuilt_from_the_read_models(world: World) -> None:
    async with world.pool.acquire() as conn:
        words = {r["word"] for r in await conn.fetch(f"SELECT word FROM {SCHEMA}.search_words")}
        # Words of titles, of the handle (split at its punctuation), each under its one-letter deletions.
        assert {"echo", "echa", "park", "echo's", "artist", "test"} <= words
        keys = await conn.fetch(f"SELECT key FROM {SCHEMA}.search_word_keys WHERE word = 'echa'")
        assert {r["key"] for r in keys} == {"echa", "cha", "eha", "eca", "ech"}
        await conn.execute(f"INSERT INTO {SCHEMA}.search_words VALUES ('stale')")
        await conn.execute(f"INSERT INTO {SCHEMA}.search_word_keys VALUES ('stale', 'stale')")
        assert await rebuild(conn, SCHEMA, unless_newer_than=3600) is False  # rebuilt at startup
        assert await rebuild(conn, SCHEMA) is True
        gone = await conn.fetchval(
            f"SELECT count(*) FROM {SCHEMA}.search_words s FULL JOIN {SCHEMA}.search_word_keys k USING (word)"
            " WHERE word = 'stale'"
        )
        assert gone == 0
