"""Per-repo sync state (I/O): what verifying a repo's next commit needs, and where the repo stands.

One row per repo in scope (:file:`schemas/sql/ingest/0002_repos.sql`): the rev, data root and commit
CID of the last commit accepted, and a :class:`SyncState`. The ingester keeps all of them in memory
(plyr's repos number in the thousands) and writes back the ones that changed; a backfill or resync
request from another process is a row set to ``backfilling``/``resyncing``, which the ingester picks
up from :meth:`RepoStateStore.pending`.

Two implementations share the :class:`RepoStateStore` contract: Postgres for real runs, memory for
unit tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

import asyncpg

from ingest.cursor import INGEST_SCHEMA
from schemas.migrate import quote_schema


class SyncState(StrEnum):
    """Where a repo stands (closed: a metric label and a CHECK constraint)."""

    SYNCHRONIZED = "synchronized"
    DESYNCHRONIZED = "desynchronized"
    BACKFILLING = "backfilling"
    RESYNCING = "resyncing"


@dataclass(frozen=True, slots=True)
class RepoStatus:
    """What we hold for one repo. ``rev``/``data``/``commit`` are None until a commit or an export of
    the repo was verified; ``reason`` says why a repo is desynchronized or was queued."""

    did: str
    rev: str | None = None
    data: str | None = None
    commit: str | None = None
    state: SyncState = SyncState.SYNCHRONIZED
    reason: str | None = None
    pds: str | None = None

    def moved(self, **changes: object) -> RepoStatus:
        """A copy with ``changes``."""
        return replace(self, **changes)  # type: ignore[arg-type]


class RepoStateStore(Protocol):
    """Loads and saves per-repo state."""

    async def load_all(self) -> dict[str, RepoStatus]: ...

    async def get(self, did: str) -> RepoStatus | None: ...

    async def save(self, repos: Iterable[RepoStatus]) -> None: ...

    async def pending(self) -> list[RepoStatus]: ...

    async def request(self, dids: Sequence[str], state: SyncState, reason: str) -> None: ...


class MemoryRepoStateStore:
    """Repo state in a dict: for tests and offline runs."""

    def __init__(self) -> None:
        self.repos: dict[str, RepoStatus] = {}

    async def load_all(self) -> dict[str, RepoStatus]:
        """Every repo held."""
        return dict(self.repos)

    async def get(self, did: str) -> RepoStatus | None:
        """One repo's state, if held."""
        return self.repos.get(did)

    async def save(self, repos: Iterable[RepoStatus]) -> None:
        """Store these states (last one per DID wins)."""
        for repo in repos:
            self.repos[repo.did] = repo

    async def pending(self) -> list[RepoStatus]:
        """Repos that are not synchronized, oldest request first."""
        return [r for r in self.repos.values() if r.state is not SyncState.SYNCHRONIZED]

    async def request(self, dids: Sequence[str], state: SyncState, reason: str) -> None:
        """Queue a backfill or resync of ``dids`` (adding repos not held yet)."""
        for did in dids:
            self.repos[did] = self.repos.get(did, RepoStatus(did)).moved(state=state, reason=reason)


_COLUMNS = "did, rev, data_cid, commit_cid, sync_state, reason, pds"


def _status(row: asyncpg.Record) -> RepoStatus:
    return RepoStatus(
        row["did"],
        row["rev"],
        row["data_cid"],
        row["commit_cid"],
        SyncState(row["sync_state"]),
        row["reason"],
        row["pds"],
    )


class PostgresRepoStateStore:
    """Repo state in ``plyr_ingest.repos`` (migration set ``ingest``)."""

    def __init__(self, pool: asyncpg.Pool, schema: str = INGEST_SCHEMA) -> None:
        self._pool = pool
        self._table = f"{quote_schema(schema)}.repos"

    async def load_all(self) -> dict[str, RepoStatus]:
        """Every repo held."""
        return {r["did"]: _status(r) for r in await self._pool.fetch(f"SELECT {_COLUMNS} FROM {self._table}")}

    async def get(self, did: str) -> RepoStatus | None:
        """One repo's state, if held."""
        row = await self._pool.fetchrow(f"SELECT {_COLUMNS} FROM {self._table} WHERE did = $1", did)
        return None if row is None else _status(row)

    async def save(self, repos: Iterable[RepoStatus]) -> None:
        """Store these states in one statement (last one per DID wins)."""
        latest = {r.did: r for r in repos}
        if not latest:
            return
        rows = list(latest.values())
        await self._pool.execute(
            f"INSERT INTO {self._table} ({_COLUMNS})"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])"
            " ON CONFLICT (did) DO UPDATE SET rev = EXCLUDED.rev, data_cid = EXCLUDED.data_cid,"
            " commit_cid = EXCLUDED.commit_cid, sync_state = EXCLUDED.sync_state, reason = EXCLUDED.reason,"
            " pds = EXCLUDED.pds, updated_at = now()",
            [r.did for r in rows],
            [r.rev for r in rows],
            [r.data for r in rows],
            [r.commit for r in rows],
            [r.state.value for r in rows],
            [r.reason for r in rows],
            [r.pds for r in rows],
        )

    async def pending(self) -> list[RepoStatus]:
        """Repos that are not synchronized, oldest request first."""
        return [
            _status(r)
            for r in await self._pool.fetch(
                f"SELECT {_COLUMNS} FROM {self._table} WHERE sync_state <> 'synchronized' ORDER BY updated_at"
            )
        ]

    async def request(self, dids: Sequence[str], state: SyncState, reason: str) -> None:
        """Queue a backfill or resync of ``dids`` (adding repos not held yet); the ingester picks it up."""
        await self._pool.execute(
            f"INSERT INTO {self._table} (did, sync_state, reason) SELECT unnest($1::text[]), $2, $3"
            " ON CONFLICT (did) DO UPDATE SET sync_state = EXCLUDED.sync_state, reason = EXCLUDED.reason,"
            " updated_at = now()",
            list(dids),
            state.value,
            reason,
        )
