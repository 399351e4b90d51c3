"""Data safety: the read models come back from the event log alone after their database is wiped, and
the schema migrations run forward over a populated database without losing rows."""

from __future__ import annotations

import os

import asyncpg
import pytest

from runtime.settings import PlatformSettings
from schemas.envelope import ModerationAction
from schemas.migrate import load, migrate
from tests.conftest import PG_ADMIN
from tests.fixtures import events as ev
from tests.integration.test_projector import (
    TRACK,
    A,
    B,
    project_all,
    projecting,
    settings,
    snapshot,
    uri,
    wait_applied,
    workload,
)

pytestmark = pytest.mark.integration


async def _fresh_database(name: str) -> str:
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


async def test_read_models_restore_from_the_log_alone_after_the_database_is_wiped(
    kafka_bootstrap: str, topic: str
) -> None:
    events = [*workload(800, seed=5), ev.moderation(A, 900, ModerationAction.TAKEDOWN)]
    name = f"plyr_safety_{os.getpid()}"
    before: dict[str, list[tuple[object, ...]]] = {}
    for attempt in range(2):
        # Wiped: the database is dropped and created empty; only the broker's log remains.
        dsn = await _fresh_database(name)
        async with asyncpg.create_pool(dsn, min_size=1, max_size=4) as pool:
            if attempt == 0:
                await project_all(kafka_bootstrap, dsn, pool, topic, events, "plyr_read")
                before = await snapshot(pool, "plyr_read")
                assert before["tracks"] and before["likes"] and before["changes"]
            else:
                plat = PlatformSettings(kafka_bootstrap=kafka_bootstrap, database_url=dsn, events_topic=topic)
                async with projecting(plat, settings("plyr_read")):
                    await wait_applied(pool, "plyr_read", topic, len(events))
                assert await snapshot(pool, "plyr_read") == before
                assert await pool.fetchval("SELECT local_takedown FROM plyr_read.artists WHERE did = $1", A)
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_migrations_run_forward_on_a_populated_database(pool: asyncpg.Pool) -> None:
    """The read models at version 7 (before counts moved off the tracks' indexes and handles were
    verified), holding rows, then migrated to the latest version: no row lost, new structures filled."""
    s = "mig_forward"
    async with pool.acquire() as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")
        await migrate(conn, "read", s, upto=7)
        await conn.execute(f"SET search_path TO {s}, public")
        await conn.execute(
            "INSERT INTO artists (did, handle, track_count, likes_received)"
            " VALUES ($1, 'a.test', 2, 3), ($2, 'b.test', 0, 0)",
            A,
            B,
        )
        for i, likes in enumerate((2, 1)):
            await conn.execute(
                "INSERT INTO tracks (uri, did, rkey, cid, title, artist, file_type, created_at, sort_at, like_count)"
                " VALUES ($1, $2, $3, 'bafyx', $4, 'a', 'mp3', now(), now(), $5)",
                uri(A, TRACK, f"t{i}"),
                A,
                f"t{i}",
                f"song {i}",
                likes,
            )
        await conn.execute(
            "INSERT INTO likes (uri, did, subject_uri, subject_cid, created_at) VALUES ($1, $2, $3, 'bafyx', now())",
            uri(B, "fm.plyr.like", "l1"),
            B,
            uri(A, TRACK, "t0"),
        )
        counts = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in ("artists", "tracks", "likes")}
        applied = await migrate(conn, "read", s)
        assert applied == [m.name for m in load("read") if m.version > 7]
        assert {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in counts} == counts
        by_likes = await conn.fetch("SELECT uri, like_count FROM tracks_by_likes ORDER BY uri")
        assert [(r["uri"], r["like_count"]) for r in by_likes] == [(uri(A, TRACK, "t0"), 2), (uri(A, TRACK, "t1"), 1)]
        # Handles stored before ingest verified them are not shown until an #identity verifies them.
        assert await conn.fetchval("SELECT count(*) FROM artists WHERE handle IS NOT NULL") == 0
        await conn.execute(f"DROP SCHEMA {s} CASCADE")
