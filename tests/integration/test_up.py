"""``plyr-index up`` as a newcomer runs it: a subprocess that starts the embedded broker, ingest,
projector and API on a capture file; its API serves what the capture holds; Ctrl-C stops it all."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from ingest.capture import write_frames
from runtime.embedded_pg import IN_MEMORY, WRITE_HEAVY, data_directory, running_embedded
from tests.conftest import PG_ADMIN
from tests.fixtures.corpus import mixed_corpus
from tests.services import free_port

pytestmark = pytest.mark.integration


async def up(capture: Path, tmp_path: Path, database_url: str, *args: str, **env: str) -> asyncio.subprocess.Process:
    """``plyr-index up --from-file CAPTURE`` as a process, its output piped."""
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "plyr_index", "up", "--from-file", str(capture), "--data-dir", str(tmp_path / "data")),
        *args,
        env={**os.environ, **({"PLYR_DATABASE_URL": database_url} if database_url else {}), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_up_runs_the_whole_system_from_a_capture_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    corpus = mixed_corpus(150, plyr_share=0.5, seed=11)
    capture = tmp_path / "capture.bin.zst"
    write_frames(capture, [f for _, f in corpus.frames])
    database = f"plyr_up_{uuid.uuid4().hex[:8]}"
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + database
    port = free_port()
    # The capture's DIDs are made up: their identities resolve against a PLC directory that refuses
    # connections (off the network), and go out unverified.
    process = await up(
        capture,
        tmp_path,
        url,
        "--port",
        str(port),
        PLYR_EVENTS_TOPIC=f"up.{uuid.uuid4().hex[:8]}",
        INGEST_PLC_URL=f"http://127.0.0.1:{free_port()}",
    )
    try:
        assert process.stdout is not None
        banner = await asyncio.wait_for(process.stdout.readline(), 90)
        assert f"http://127.0.0.1:{port}" in banner.decode(), banner
        tracks_in_capture = {f"at://{did}/{path}" for did, path, _ in corpus.expected_ops if "fm.plyr.track/" in path}
        assert tracks_in_capture
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            async with asyncio.timeout(60):
                while True:
                    body = (await client.get("/xrpc/fm.plyr.index.getLatestTracks", params={"limit": 100})).json()
                    if {t["uri"] for t in body["tracks"]} & tracks_in_capture:
                        break
                    await asyncio.sleep(0.5)
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 60) == 0
        for name in ("broker", "ingest", "projector", "api"):
            assert (tmp_path / "data" / "logs" / f"{name}.log").is_file()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()


async def test_up_without_postgres_says_what_to_do(tmp_path: Path) -> None:
    capture = tmp_path / "capture.bin"
    write_frames(capture, [])
    process = await up(capture, tmp_path, f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert b"no Postgres at" in err and b"PLYR_DATABASE_URL" in err and b"Traceback" not in err


async def test_up_with_an_embedded_postgres(tmp_path: Path) -> None:
    corpus = mixed_corpus(60, plyr_share=0.5, seed=12)
    capture = tmp_path / "capture.bin"
    write_frames(capture, [f for _, f in corpus.frames])
    port = free_port()
    process = await up(capture, tmp_path, "", "--port", str(port), "--embedded-postgres")
    try:
        assert process.stdout is not None
        said = b""
        async with asyncio.timeout(90):
            while b"plyr-index is up" not in said:
                said += await process.stdout.readline()
        assert b"embedded PostgreSQL" in said
        tracks = {f"at://{did}/{path}" for did, path, _ in corpus.expected_ops if "fm.plyr.track/" in path}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client, asyncio.timeout(60):
            while (
                not {t["uri"] for t in (await client.get("/xrpc/fm.plyr.index.getLatestTracks")).json()["tracks"]}
                & tracks
            ):
                await asyncio.sleep(0.5)
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 60) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        # As root the cluster lives outside tmp_path (see runtime.embedded_pg).
        shutil.rmtree(data_directory(tmp_path / "data" / "postgres"), ignore_errors=True)


async def test_embedded_postgres_starts_with_the_given_server_settings(tmp_path: Path) -> None:
    # What bench.projector_apply --server write-heavy and bench.api_mix --server in-memory rely on:
    # each setting reaches the server (shared buffers kept small here), and pg_prewarm is there.
    settings = {**WRITE_HEAVY, **IN_MEMORY, "shared_buffers": "64MB", "work_mem": "7MB"}
    with running_embedded(tmp_path / "postgres", tmp_path / "postgres.log", settings, keep=False) as server:
        conn = await asyncpg.connect(server.admin_url)
        try:
            shown = {name: await conn.fetchval(f"SHOW {name}") for name in settings}
            await conn.execute("CREATE EXTENSION pg_prewarm")
            assert await conn.fetchval("SELECT pg_prewarm('pg_class')") > 0
        finally:
            await conn.close()
    assert shown == settings
    assert not server.directory.exists()  # a scratch server is removed with its block
