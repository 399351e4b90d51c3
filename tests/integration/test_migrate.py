"""Migrations: plyr-index migrate creates both schemas; applying twice changes nothing."""

from __future__ import annotations

import asyncio
import os

import asyncpg
import pytest

from schemas.migrate import MigrationError, load, migrate, quote_schema
from tests.fixtures.processes import spawn_cli

pytestmark = pytest.mark.integration


async def test_migrate_cli_creates_schemas_and_is_idempotent(database_url: str, pool: asyncpg.Pool) -> None:
    env = {**os.environ, "PLYR_DATABASE_URL": database_url}
    for _ in range(2):
        proc = await spawn_cli("migrate", env=env, capture_stderr=True)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
    for table in ("plyr_ingest.cursors", "plyr_read.tracks", "plyr_read.records", "plyr_read.offsets"):
        assert await pool.fetchval("SELECT to_regclass($1) IS NOT NULL", table), table
    versions = await pool.fetch("SELECT version FROM plyr_read.schema_migrations")
    assert [r["version"] for r in versions] == [m.version for m in load("read")]
    async with pool.acquire() as conn:
        assert await migrate(conn, "read", "plyr_read") == []


def test_names_are_checked() -> None:
    for bad in ["Public", "a;drop", "x" * 64, ""]:
        with pytest.raises(MigrationError):
            quote_schema(bad)
    with pytest.raises(MigrationError):
        load("no_such_set")
