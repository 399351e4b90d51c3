"""``plyr-index backfill`` as a real process: ``--from-car`` imports a repo export offline (verified against
the DID document's key, or not with ``--no-verify``), a CAR that does not verify is refused with a clear
message, and a ``--run`` killed with SIGKILL mid-way leaves the queue in the table for the next run."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from ingest.verify.crypto import KeyAlgorithm
from tests.conftest import PG_ADMIN
from tests.fixtures.kafka import consume_all
from tests.fixtures.processes import spawn_cli
from tests.fixtures.signed_repo import new_key, sign
from tests.fixtures.sync_world import SyncWorld, sync_world
from tests.integration.test_backfill import in_scope, ledger, live, make_repo, platform, project

pytestmark = pytest.mark.integration


def cli_env(world: SyncWorld, kafka_bootstrap: str, database_url: str, topic: str) -> dict[str, str]:
    return {
        **os.environ,
        "PLYR_DATABASE_URL": database_url,
        "PLYR_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "PLYR_EVENTS_TOPIC": topic,
        "PLYR_KAFKA_IDEMPOTENCE": "false",
        "PLYR_LOG_LEVEL": "WARNING",
        "INGEST_PLC_URL": world.plc_url,
        "INGEST_ALLOW_PRIVATE_HOSTS": "true",
        "INGEST_BACKFILL_CONCURRENCY": "1",
        "INGEST_BACKFILL_PER_PDS": "1",
        "INGEST_BACKFILL_RETRY_BASE_S": "0.2",
        "INGEST_BACKFILL_POLL_S": "0.3",
    }


async def cli(env: dict[str, str], *args: str, timeout: float = 60) -> tuple[int, str]:
    proc = await spawn_cli(*args, env=env, capture_stderr=True)
    assert proc.stderr is not None
    async with asyncio.timeout(timeout):
        err = await proc.stderr.read()
        code = await proc.wait()
    return code, err.decode()


async def test_from_car_imports_a_repo_export_offline(
    tmp_path: Path, kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    async with sync_world(1) as world:
        repo = make_repo("carfile", plyr=25, other=25)
        world.host(repo)
        env = cli_env(world, kafka_bootstrap, database_url, topic)
        honest = tmp_path / "honest.car"
        honest.write_bytes(repo.export_car())
        forged = tmp_path / "forged.car"
        mallory = new_key(KeyAlgorithm.K256)
        forged.write_bytes(repo.export_car(signer=lambda b: sign(mallory, b)))

        code, err = await cli(env, "backfill", "--from-car", str(honest), "--did", repo.did)
        assert code == 0, err
        assert f"imported {len(in_scope(repo))} record(s) of {repo.did} at rev {repo.rev} (signature verified)" in err

        code, err = await cli(env, "backfill", "--from-car", str(forged), "--did", repo.did)
        assert code == 1
        assert f"is not a valid export of {repo.did}'s repo: bad_signature" in err

        code, err = await cli(env, "backfill", "--from-car", str(forged), "--did", repo.did, "--no-verify")
        assert code == 0, err
        assert "--no-verify: the commit signature is not checked" in err
        assert "(signature NOT checked)" in err

        other = make_repo("someoneelse")
        code, err = await cli(env, "backfill", "--from-car", str(honest), "--did", other.did, "--no-verify")
        assert (code, "wrong_did" in err) == (1, True)
        code, err = await cli(env, "backfill", "--from-car", str(tmp_path / "missing.car"), "--did", repo.did)
        assert (code, "cannot read" in err) == (1, True)
        code, err = await cli(env, "backfill", "--from-car", str(honest), "--did", "alice.test")
        assert (code, "is not a DID" in err) == (2, True)
        code, err = await cli(env, "backfill", "--from-car", str(honest))
        assert (code, "needs exactly one --did" in err) == (2, True)

    # Both imports are the same repo at the same rev: the second changes nothing.
    total = 2 * (len(in_scope(repo)) + 1)
    events = await consume_all(kafka_bootstrap, topic, expect=total)
    assert len(events) == total
    read = await project(platform(kafka_bootstrap, database_url, topic), pool, total)
    assert live(await ledger(pool, read, [repo.did]), repo.did) == in_scope(repo)


@pytest.fixture
async def fresh_database() -> AsyncIterator[str]:
    """A database of its own: the CLI keeps its queue in the default schema."""
    name = f"plyr_index_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    finally:
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def synchronized(conn: asyncpg.Connection) -> dict[str, str]:
    try:
        rows = await conn.fetch("SELECT did, sync_state FROM plyr_ingest.repos")
    except asyncpg.UndefinedTableError:
        return {}
    return {r["did"]: r["sync_state"] for r in rows}


async def test_a_run_killed_mid_way_resumes_from_the_table(
    kafka_bootstrap: str, fresh_database: str, pool: asyncpg.Pool, database_url: str, topic: str
) -> None:
    repos = [make_repo(f"kill{i}", plyr=8, other=8) for i in range(6)]
    async with sync_world(1) as world:
        for repo in repos:
            world.host(repo)
        world.delay = 0.4
        env = cli_env(world, kafka_bootstrap, fresh_database, topic)
        dids = [arg for repo in repos for arg in ("--did", repo.did)]
        proc = await spawn_cli("backfill", *dids, "--run", env=env)
        conn = await asyncpg.connect(fresh_database)
        try:
            async with asyncio.timeout(60):
                while sum(s == "synchronized" for s in (await synchronized(conn)).values()) < 2:
                    await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            states = await synchronized(conn)
            assert len(states) == len(repos)
            assert 2 <= sum(s == "synchronized" for s in states.values()) < len(repos)

            # The lock died with the process; the next run does what is left.
            code, err = await cli(env, "backfill", "--run")
            assert code == 0, err
            assert "synchronized" in err
            states = await synchronized(conn)
            assert set(states.values()) == {"synchronized"}
        finally:
            await conn.close()
    # Each repo once, and perhaps the one in flight at the kill twice: the projector takes it once.
    least = sum(len(in_scope(r)) + 1 for r in repos)
    events = await consume_all(kafka_bootstrap, topic, expect=least)
    assert len(events) >= least
    read = await project(platform(kafka_bootstrap, database_url, topic), pool, len(events))
    book = await ledger(pool, read, [r.did for r in repos])
    for repo in repos:
        assert live(book, repo.did) == in_scope(repo)
