"""Session fixtures for the real services: the broker, a fresh Postgres database, an asyncpg pool.

- ``PLYR_TEST_KAFKA``: use this broker instead of starting tansu.
- ``PLYR_TEST_PG``: admin DSN of the Postgres server (default postgresql://postgres@127.0.0.1:5432/postgres);
  the suite creates and drops its own database ``plyr_index_test_<pid>``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.services import start_broker

pytest_plugins = ["tests.fixtures.s3"]
PG_ADMIN = os.environ.get("PLYR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Kafka-protocol broker for the session."""
    given = os.environ.get("PLYR_TEST_KAFKA")
    if given:
        yield given
        return
    broker = start_broker(tmp_path_factory.mktemp("tansu") / "tansu.log")
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses."""
    return f"test.events.{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    """A fresh database on the real Postgres server, dropped after the session."""
    name = f"plyr_index_test_{os.getpid()}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """An asyncpg pool on the test database."""
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
def repo_root() -> Path:
    """The project's root folder."""
    return Path(__file__).resolve().parents[1]
