"""``plyr-index migrate``: apply every migration set into its schema."""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg

from runtime.logging import configure, get_logger
from runtime.settings import SettingsError, load_platform
from schemas.migrate import migrate

# set name → schema it is applied into. Later sets (read models) add theirs here.
SETS = {"ingest": "plyr_ingest", "read": "plyr_read"}


async def _apply(database_url: str) -> None:
    log = get_logger("migrate")
    conn = await asyncpg.connect(database_url)
    try:
        for set_name, schema in SETS.items():
            applied = await migrate(conn, set_name, schema)
            log.info("migrated", set=set_name, schema=schema, applied=applied)
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    """Apply migrations to ``PLYR_DATABASE_URL``."""
    argparse.ArgumentParser(prog="plyr-index migrate", description=__doc__).parse_args(argv)
    try:
        platform = load_platform()
    except SettingsError as err:
        print(f"plyr-index migrate: {err}", file=sys.stderr)  # noqa: T201
        return 2
    configure(platform.log_level, platform.log_format)
    asyncio.run(_apply(platform.database_url))
    return 0
