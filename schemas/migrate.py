"""Apply the plain-SQL migrations of ``schemas/sql/<set>/NNNN_name.sql`` into a named schema.

Each set (``ingest`` state, and later the read models) is applied into a schema given as a parameter,
so the projector can build a fresh copy of the read models beside the live one and swap. Files run in
order, each in its own transaction with ``search_path`` set to the target schema; applied versions are
recorded in ``<schema>.schema_migrations``. A concurrent migrator waits on an advisory lock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(Exception):
    """A migration set or schema name is wrong, or a migration failed."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file of a set."""

    version: int
    name: str
    sql: str


def load(set_name: str) -> list[Migration]:
    """The migrations of a set, in version order."""
    folder = resources.files("schemas") / "sql" / set_name
    if not folder.is_dir():
        raise MigrationError(f"no migration set {set_name!r}")
    found = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate versions in set {set_name!r}")
    return found


def quote_schema(schema: str) -> str:
    """The schema name as a quoted identifier, after checking it is a plain name."""
    if not _SCHEMA_NAME.match(schema):
        raise MigrationError(f"bad schema name {schema!r}")
    return f'"{schema}"'


async def migrate(conn: asyncpg.Connection, set_name: str, schema: str, *, upto: int | None = None) -> list[str]:
    """Apply what is missing of ``set_name`` into ``schema`` (up to version ``upto`` when given, as a
    test of a later migration on an older, populated schema needs); return the files applied."""
    quoted = quote_schema(schema)
    migrations = load(set_name)
    applied: list[str] = []
    # One lock for all migrators of this schema, so two processes starting together do not race.
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"plyr-migrate:{schema}")
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {quoted}.schema_migrations ("
            " version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch(f"SELECT version FROM {quoted}.schema_migrations")}
        for m in migrations:
            if m.version in done or (upto is not None and m.version > upto):
                continue
            async with conn.transaction():
                await conn.execute(f"SET LOCAL search_path TO {quoted}, public")
                try:
                    await conn.execute(m.sql)
                except asyncpg.PostgresError as err:
                    raise MigrationError(f"{set_name}/{m.name} failed in {schema}: {err}") from err
                await conn.execute(
                    f"INSERT INTO {quoted}.schema_migrations (version, name) VALUES ($1, $2)",
                    m.version,
                    m.name,
                )
            applied.append(m.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"plyr-migrate:{schema}")
    return applied
