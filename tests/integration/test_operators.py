"""Operators' tools on the real broker, Postgres, projector and API over HTTP: takedown and restore from
the CLI and from the admin API reach the read models and the public API; the admin API's token, its
failure limit and its absence without a token; dead letters re-applied after a lexicon fix; and
``plyr-index status`` against running and missing parts."""

from __future__ import annotations

import asyncio
import copy
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from api.xrpc import admin_lexicons, catalog, query_lexicons
from ingest.repo_state import PostgresRepoStateStore, SyncState
from lexicons.validate import Catalog, Valid, validate_value
from projector import app as projector_app
from projector.validate import RecordValidator
from runtime.settings import PlatformSettings
from schemas.envelope import Event
from schemas.migrate import migrate
from tests.fixtures import events as ev
from tests.fixtures.api_server import serving
from tests.integration.test_projector import produce, projecting, settings, uri, wait_applied
from tests.services import free_port

pytestmark = pytest.mark.integration

A = "did:plc:opsartistaaaaaaaaaaaaaaa"
B = "did:plc:opsfanbbbbbbbbbbbbbbbbbb"
TRACK, LIKE = "fm.plyr.track", "fm.plyr.like"
TOKEN = "test-admin-token-0123456789"
ADMIN = "/xrpc/fm.plyr.index.admin."


def cli_env(database_url: str, bootstrap: str, topic: str, schema: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PLYR_DATABASE_URL": database_url,
        "PLYR_KAFKA_BOOTSTRAP": bootstrap,
        "PLYR_EVENTS_TOPIC": topic,
        "PLYR_KAFKA_IDEMPOTENCE": "false",
        "PLYR_LOG_LEVEL": "WARNING",
        "PROJECTOR_SCHEMA_NAME": schema,
        **extra,
    }


async def run_cli(env: dict[str, str], *args: str, timeout: float = 90) -> tuple[int, str, str]:
    """``plyr-index ARGS`` as a real process: (exit status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "plyr_index",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.1)


async def taken_down(pool: asyncpg.Pool, schema: str, did: str) -> bool | None:
    value = await pool.fetchval(f"SELECT local_takedown FROM {schema}.artists WHERE did = $1", did)
    return None if value is None else bool(value)


async def latest_uris(client: httpx.AsyncClient) -> list[str]:
    r = await client.get("/xrpc/fm.plyr.index.getLatestTracks", params={"limit": 100})
    assert r.status_code == 200, r.text
    return [t["uri"] for t in r.json()["tracks"]]


def corpus() -> tuple[list[Event], str]:
    song = ev.track("Operators' song")
    t_uri = uri(A, TRACK, "3opsaaaaaaaaa")
    return [
        ev.identity(A, 1, "opsartist.test"),
        ev.put(A, TRACK, "3opsaaaaaaaaa", 2, song),
        ev.put(B, LIKE, "3opsbbbbbbbbb", 3, ev.like(t_uri, ev.cid_of(song))),
    ], t_uri


async def test_takedown_and_restore_from_the_cli_hide_and_show_the_repo(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    schema = "ops_cli"
    events, t_uri = corpus()
    await produce(kafka_bootstrap, topic, events)
    plat = PlatformSettings(kafka_bootstrap=kafka_bootstrap, database_url=database_url, events_topic=topic)
    env = cli_env(database_url, kafka_bootstrap, topic, schema)
    async with projecting(plat, settings(schema)), serving(database_url, schema) as base:
        await wait_applied(pool, schema, topic, len(events))
        async with httpx.AsyncClient(base_url=base) as client:
            assert t_uri in await latest_uris(client)

            code, out, err = await run_cli(env, "takedown", A, "--reason", "reported, checked")
            assert code == 0, err
            assert f"{A} taken down: event on {topic} partition" in out
            await until(lambda: _is(taken_down(pool, schema, A), True))
            assert t_uri not in await latest_uris(client)
            assert (await client.get("/xrpc/fm.plyr.index.getArtist", params={"actor": A})).status_code == 404
            # The like B gave stays counted: B is not taken down.
            assert await pool.fetchval(f"SELECT like_count FROM {schema}.tracks WHERE uri = $1", t_uri) == 1

            code, out, err = await run_cli(env, "restore", A)
            assert code == 0, err
            assert f"{A} restored" in out
            await until(lambda: _is(taken_down(pool, schema, A), False))
            assert t_uri in await latest_uris(client)

    code, _, err = await run_cli(env, "takedown", "not-a-did")
    assert code == 2 and "is neither a DID" in err
    code, _, err = await run_cli({**env, "PLYR_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}, "takedown", A)
    assert code == 1 and "failed" in err and "Traceback" not in err


async def _is(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


def check_output(nsid: str, body: dict[str, Any]) -> None:
    """An admin method's answer must satisfy its lexicon's output schema."""
    name = f"fm.plyr.index.admin.{nsid}"
    checked = validate_value(catalog(), admin_lexicons()[name]["output"]["schema"], body, name)
    assert isinstance(checked, Valid), (checked, body)


async def test_admin_api_takedown_restore_sync_requests_dead_letters_and_status(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    schema = "ops_admin"
    events, t_uri = corpus()
    # Two records invalid under the real lexicons: dead letters to list.
    events += [
        ev.put(A, TRACK, "3opsbadaaaaaa", 4, {**ev.track("x"), "title": ""}),
        ev.put(A, TRACK, "3opsbadbbbbbb", 5, {k: v for k, v in ev.track("y").items() if k != "fileType"}),
    ]
    await produce(kafka_bootstrap, topic, events)
    async with pool.acquire() as conn:
        await migrate(conn, "ingest", "plyr_ingest")
    plat = PlatformSettings(kafka_bootstrap=kafka_bootstrap, database_url=database_url, events_topic=topic)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        projecting(plat, settings(schema)),
        serving(database_url, schema, token=TOKEN, platform=plat) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        await wait_applied(pool, schema, topic, len(events))
        assert t_uri in await latest_uris(client)

        r = await client.post(ADMIN + "takedownRepo", json={"did": A, "reason": "spam"}, headers=auth)
        assert r.status_code == 200, r.text
        body = r.json()
        check_output("takedownRepo", body)
        assert body["did"] == A and body["action"] == "takedown"
        assert r.headers["cache-control"] == "no-store"
        await until(lambda: _is(taken_down(pool, schema, A), True))
        assert t_uri not in await latest_uris(client)

        r = await client.post(ADMIN + "restoreRepo", json={"did": A}, headers=auth)
        assert r.status_code == 200, r.text
        check_output("restoreRepo", r.json())
        await until(lambda: _is(taken_down(pool, schema, A), False))
        assert t_uri in await latest_uris(client)

        # Input is checked against the procedure's lexicon.
        for bad in ({"did": "nope"}, {}, {"did": A, "extra": 1}, {"did": A, "reason": "x" * 1025}):
            r = await client.post(ADMIN + "takedownRepo", json=bad, headers=auth)
            assert r.status_code == 400 and r.json()["error"] == "InvalidRequest", (bad, r.text)
        r = await client.post(ADMIN + "takedownRepo", content=b"[1", headers=auth)
        assert r.status_code == 400

        # Backfill and resync requests are rows the ingester's sync worker takes, as its own store writes them.
        repos = PostgresRepoStateStore(pool)
        r = await client.post(ADMIN + "requestBackfill", json={"did": B}, headers=auth)
        assert r.status_code == 200 and r.json() == {"did": B, "syncState": "backfilling"}
        check_output("requestBackfill", r.json())
        got = await repos.get(B)
        assert got is not None and got.state is SyncState.BACKFILLING and got.reason == "operator"
        r = await client.post(ADMIN + "requestResync", json={"did": B}, headers=auth)
        assert r.status_code == 200 and r.json()["syncState"] == "resyncing"
        assert B in {s.did for s in await repos.pending() if s.state is SyncState.RESYNCING}

        # Dead letters: newest first, paged with an opaque cursor, filtered by reason.
        seen: list[dict[str, Any]] = []
        cursor = None
        for _ in range(10):
            params = {"limit": 1} | ({"cursor": cursor} if cursor else {})
            r = await client.get(ADMIN + "listDeadLetters", params=params, headers=auth)
            assert r.status_code == 200, r.text
            check_output("listDeadLetters", r.json())
            seen += r.json()["deadLetters"]
            cursor = r.json().get("cursor")
            if cursor is None:
                break
        assert [d["rkey"] for d in seen] == ["3opsbadbbbbbb", "3opsbadaaaaaa"]
        assert seen[0]["raw"]["title"] == "y" and seen[0]["did"] == A
        r = await client.get(ADMIN + "listDeadLetters", params={"reason": "FILETYPE"}, headers=auth)
        assert [d["rkey"] for d in r.json()["deadLetters"]] == ["3opsbadbbbbbb"]
        r = await client.get(ADMIN + "listDeadLetters", params={"cursor": "garbage"}, headers=auth)
        assert r.status_code == 400

        r = await client.get(ADMIN + "getStatus", headers=auth)
        assert r.status_code == 200, r.text
        st = r.json()
        check_output("getStatus", st)
        assert st["database"] == {"reachable": True}
        assert st["broker"]["state"] == "ok" and st["broker"]["totalLag"] == 0
        assert {p["partition"] for p in st["broker"]["partitions"]} == {0, 1, 2}
        assert st["projectors"]["members"] and st["deadLetters"]["total"] == 2
        assert st["api"]["health"] == "ok"
        # Per-collection rates from the change log: the corpus' track and like were applied just now.
        applied = {r["collection"]: r["count"] for r in st["rates"]["byCollection"]}
        assert st["rates"]["windowSeconds"] == 300 and applied["track"] >= 1 and applied["like"] == 1
        assert [s for s in st["repos"]["byState"] if s["state"] == "resyncing" and s["count"] >= 1]

        # The OpenAPI document describes the admin methods too, from their lexicons.
        doc = (await client.get("/openapi.json")).json()
        served = {p.removeprefix("/xrpc/") for p in doc["paths"] if p.startswith("/xrpc/")}
        assert served == set(query_lexicons()) | set(admin_lexicons())
        takedown_op = doc["paths"][ADMIN + "takedownRepo"]["post"]
        assert takedown_op["requestBody"]["content"]["application/json"]["schema"]["required"] == ["did"]
        assert {"401", "429"} <= set(takedown_op["responses"])


async def test_admin_api_refuses_bad_tokens_and_limits_failures_per_address(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    schema = "ops_auth"
    async with pool.acquire() as conn:
        await migrate(conn, "read", schema)
    plat = PlatformSettings(kafka_bootstrap=kafka_bootstrap, database_url=database_url, events_topic=topic)
    status_url = ADMIN + "getStatus"
    async with serving(database_url, schema, token=TOKEN, platform=plat) as base:
        # The guesser comes from 127.0.0.2; the operator from 127.0.0.1 is not limited by it.
        guesser = httpx.AsyncClient(base_url=base, transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2"))
        async with guesser, httpx.AsyncClient(base_url=base) as operator:
            missing = await guesser.get(status_url)
            assert missing.status_code == 401 and missing.json()["error"] == "AuthenticationRequired"
            assert missing.headers["www-authenticate"].startswith("Bearer")
            wrong_headers: list[dict[str, str]] = [
                {"Authorization": f"Bearer {TOKEN}x"},
                {"Authorization": f"Basic {TOKEN}"},
                {"Authorization": "Bearer"},
                {"Authorization": f"Bearer {TOKEN[:-1]}"},
            ]
            for headers in wrong_headers:
                r = await guesser.post(ADMIN + "takedownRepo", json={"did": A}, headers=headers)
                assert r.status_code == 401, headers
            # Five failures within a minute: the sixth attempt is refused unseen, even with the right token.
            limited = await guesser.get(status_url, headers={"Authorization": f"Bearer {TOKEN}"})
            assert limited.status_code == 429 and limited.json()["error"] == "RateLimitExceeded"
            assert 1 <= int(limited.headers["retry-after"]) <= 60
            ok = await operator.get(status_url, headers={"Authorization": f"Bearer {TOKEN}"})
            assert ok.status_code == 200, ok.text
            text = (await operator.get("/metrics")).text
            assert 'plyr_api_admin_auth_failures_total{reason="missing_token"} 3.0' in text
            assert 'plyr_api_admin_auth_failures_total{reason="wrong_token"} 2.0' in text
            assert 'plyr_api_admin_auth_failures_total{reason="rate_limited"} 1.0' in text
            # Nothing was taken down by the refused requests.
            assert await taken_down(pool, schema, A) is None

    # Without a token configured there is no admin API: its methods are answered like any method this
    # server does not implement, and the OpenAPI document does not list them.
    async with serving(database_url, schema) as base, httpx.AsyncClient(base_url=base) as client:
        unknown = await client.post("/xrpc/fm.plyr.index.admin.noSuchMethod", json={})
        for r in (
            await client.post(ADMIN + "takedownRepo", json={"did": A}, headers={"Authorization": f"Bearer {TOKEN}"}),
            await client.get(status_url),
        ):
            assert (r.status_code, r.json()["error"]) == (unknown.status_code, unknown.json()["error"])
            assert r.status_code in (404, 501) and r.json()["error"] in ("NotFound", "MethodNotImplemented")
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert not [p for p in paths if p.startswith(ADMIN)]
        assert "plyr_api_admin" not in (await client.get("/metrics")).text


def strict_catalog() -> Catalog:
    """The real lexicons, except that a track's title may have at most 5 characters."""
    docs = copy.deepcopy(Catalog.builtin().documents)
    docs[TRACK]["defs"]["main"]["record"]["properties"]["title"]["maxLength"] = 5
    return Catalog(docs)


async def read_model(pool: asyncpg.Pool, schema: str) -> dict[str, Any]:
    tracks = await pool.fetch(f"SELECT uri, cid, title, like_count, indexed_at FROM {schema}.tracks ORDER BY uri")
    artists = await pool.fetch(f"SELECT did, track_count, likes_received FROM {schema}.artists ORDER BY did")
    ledger = await pool.fetch(f"SELECT did, collection, rkey, rev, state, cid FROM {schema}.records ORDER BY rkey")
    return {
        "tracks": [dict(r) for r in tracks],
        "artists": [dict(r) for r in artists],
        "ledger": [dict(r) for r in ledger],
    }


async def test_dead_letters_reapply_after_a_lexicon_fix(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = "ops_reapply"
    long_title = ev.track("Long title")  # invalid under the strict catalog, valid under the real one
    t1 = uri(A, TRACK, "3t1aaaaaaaaaa")
    first, second = ev.track("Another long"), ev.track("Short")
    untitled = {k: v for k, v in ev.track("z").items() if k != "title"}  # invalid under both
    events: list[Event] = [
        ev.put(A, TRACK, "3t1aaaaaaaaaa", 1, long_title),
        ev.put(B, LIKE, "3l1aaaaaaaaaa", 2, ev.like(t1, ev.cid_of(long_title))),
        ev.put(A, TRACK, "3t2aaaaaaaaaa", 3, first),
        ev.put(A, TRACK, "3t2aaaaaaaaaa", 4, second, create=False),  # supersedes the invalid version
        ev.put(A, TRACK, "3t3aaaaaaaaaa", 5, untitled),
    ]
    await produce(kafka_bootstrap, topic, events)
    plat = PlatformSettings(kafka_bootstrap=kafka_bootstrap, database_url=database_url, events_topic=topic)
    strict = strict_catalog()
    with monkeypatch.context() as patch:
        patch.setattr(projector_app, "RecordValidator", lambda: RecordValidator(strict))
        async with projecting(plat, settings(schema)):
            await wait_applied(pool, schema, topic, len(events))
    letters = await pool.fetch(f"SELECT rkey, rev, reason FROM {schema}.dead_letters ORDER BY rkey, rev")
    assert [(r["rkey"], r["rev"]) for r in letters] == [
        ("3t1aaaaaaaaaa", ev.rev(1)),
        ("3t2aaaaaaaaaa", ev.rev(3)),
        ("3t3aaaaaaaaaa", ev.rev(5)),
    ]
    assert letters[0]["reason"] == "$.title: string of 10 bytes out of bounds"
    untitled_reason = letters[2]["reason"]
    assert await pool.fetchval(f"SELECT count(*) FROM {schema}.tracks WHERE uri = $1", t1) == 0
    seq_before = await pool.fetchval(f"SELECT coalesce(max(seq), 0) FROM {schema}.changes")

    env = cli_env(database_url, kafka_bootstrap, topic, schema)
    code, out, err = await run_cli(env, "dead-letters", "list", "--reason-like", "title")
    assert code == 0, err
    assert out.startswith(f"3 dead letter(s) in {schema}; the 3 newest matching 'title':")

    code, out, err = await run_cli(env, "dead-letters", "reapply", "--batch", "2")
    assert code == 0, err
    assert (
        "examined 3 record dead letter(s): 1 applied, 1 superseded by a newer version (removed), 1 still invalid,"
        " 0 not found on the log" in out
    )
    # The version is applied as the live projector would have applied it: its CID, its event time, the
    # like that waited for it counted, the artist's totals, the change log, the ledger.
    row = await pool.fetchrow(f"SELECT cid, title, like_count, indexed_at FROM {schema}.tracks WHERE uri = $1", t1)
    assert row is not None and row["cid"] == ev.cid_of(long_title) and row["title"] == "Long title"
    assert row["like_count"] == 1 and row["indexed_at"] == events[0].time
    art = await pool.fetchrow(f"SELECT track_count, likes_received FROM {schema}.artists WHERE did = $1", A)
    assert (art["track_count"], art["likes_received"]) == (2, 1)
    t2 = await pool.fetchval(f"SELECT title FROM {schema}.tracks WHERE uri = $1", uri(A, TRACK, "3t2aaaaaaaaaa"))
    assert t2 == "Short"
    changes = await pool.fetch(f"SELECT kind, uri FROM {schema}.changes WHERE seq > $1", seq_before)
    assert [(c["kind"], c["uri"]) for c in changes] == [("track.created", t1)]
    left = await pool.fetch(f"SELECT rkey, reason FROM {schema}.dead_letters")
    assert [(r["rkey"], r["reason"]) for r in left] == [("3t3aaaaaaaaaa", untitled_reason)]

    # Again: nothing more to do.
    code, out, err = await run_cli(env, "dead-letters", "reapply")
    assert code == 0, err
    assert "examined 1 record dead letter(s): 0 applied, 0 superseded by a newer version (removed), 1 still" in out

    # The result is what a replay of the log with today's lexicons builds.
    reapplied = await read_model(pool, schema)
    await projector_app.rebuild(plat, settings(schema))
    replayed = await read_model(pool, schema)
    # Except the superseded version's trace: re-applying does not bring back a version that was replaced
    # while invalid, so t2 was first indexed with its second version; a replay indexes it from its first.
    t2_seen = [
        {r["uri"]: r.pop("indexed_at") for r in m["tracks"]}[uri(A, TRACK, "3t2aaaaaaaaaa")]
        for m in (reapplied, replayed)
    ]
    assert t2_seen == [events[3].time, events[2].time]
    assert reapplied == replayed


async def test_status_shows_every_part_and_says_what_is_missing(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    schema = "ops_status"
    events, _ = corpus()
    events.append(ev.put(A, TRACK, "3opsbadcccccc", 9, {**ev.track("x"), "title": ""}))
    await produce(kafka_bootstrap, topic, events)
    plat = PlatformSettings(kafka_bootstrap=kafka_bootstrap, database_url=database_url, events_topic=topic)
    async with pool.acquire() as conn:
        await migrate(conn, "ingest", "plyr_ingest")
    upstream = f"wss://relay.{topic}.example"
    await pool.execute("INSERT INTO plyr_ingest.cursors (upstream, seq) VALUES ($1, 4242)", upstream)
    missing_api = f"http://127.0.0.1:{free_port()}"
    env = cli_env(database_url, kafka_bootstrap, topic, schema, API_PUBLIC_URL=missing_api)
    async with projecting(plat, settings(schema)):
        await wait_applied(pool, schema, topic, len(events))
        code, out, err = await run_cli(env, "status")
    assert code == 0, err
    assert "database: reachable" in out
    assert upstream in out and "4242" in out
    assert f"broker {kafka_bootstrap}  topic {topic}" in out
    assert "total lag: 0 message(s)" in out
    assert "dead letters: 1" in out and "$.title" in out
    assert f"api {missing_api}" in out and "health unreachable   ready unreachable" in out
    assert "Traceback" not in out + err

    # More on the log while no projector runs: the lag per partition says so.
    more = [ev.put(A, TRACK, f"3opsmore{i:05d}", 20 + i, ev.track(f"More {i}")) for i in range(4)]
    await produce(kafka_bootstrap, topic, more)
    async with serving(database_url, schema) as base:
        code, out, err = await run_cli(env, "status", "--json", "--api", base)
    assert code == 0, err
    st = orjson.loads(out)
    check_output("getStatus", st)
    assert st["broker"]["totalLag"] == 4
    assert sum(p["lag"] for p in st["broker"]["partitions"]) == 4
    assert [c["seq"] for c in st["upstreams"]["cursors"] if c["upstream"] == upstream] == [4242]
    assert st["api"]["health"] == "ok" and st["api"]["ready"] == "unavailable"  # no projector beats now
    assert st["projectors"]["members"] == []  # the stopped projector left

    # Broker and database gone, an unknown schema: every section says so, still no traceback.
    gone = cli_env(
        "postgresql://postgres@127.0.0.1:5432/plyr_index_no_such_db",
        f"127.0.0.1:{free_port()}",
        topic,
        "ops_nothing_here",
    )
    code, out, err = await run_cli(gone, "status", "--api", missing_api)
    assert code == 0, err
    assert "database: UNREACHABLE" in out and "broker unreachable" in out
    assert "upstreams: unavailable" in out and "dead letters: unavailable" in out
    assert "Traceback" not in out + err
    code, out, err = await run_cli(env, "status", "--schema", "ops_nothing_here", "--api", missing_api)
    assert code == 0, err
    assert "projectors: absent" in out and "no projector offsets in this schema" in out


async def test_admin_api_without_a_broker_starts_and_answers_503_for_takedowns(
    database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    schema = "ops_nobroker"
    async with pool.acquire() as conn:
        await migrate(conn, "read", schema)
    nowhere = PlatformSettings(
        kafka_bootstrap=f"127.0.0.1:{free_port()}", database_url=database_url, events_topic=topic
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        serving(database_url, schema, token=TOKEN, platform=nowhere) as base,
        httpx.AsyncClient(base_url=base, timeout=60) as client,
    ):
        assert (await client.get("/health")).status_code == 200
        r = await client.post(ADMIN + "takedownRepo", json={"did": A}, headers=auth)
        assert r.status_code == 503 and r.json()["error"] == "Unavailable", r.text
        r = await client.get(ADMIN + "getStatus", headers=auth)
        assert r.status_code == 200, r.text
        check_output("getStatus", r.json())
        assert r.json()["broker"]["state"] == "unavailable" and r.json()["database"] == {"reachable": True}
