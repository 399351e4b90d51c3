"""What every query handler needs: the app's pool and settings, actor lookup, track views, paging."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from fastapi import Request

from api import views
from api.cursor import Key, encode
from api.errors import NotFound
from api.settings import ApiSettings
from api.sql import ARTIST_COLUMNS, visible


@dataclass(frozen=True, slots=True)
class Ctx:
    """The request's view of the app."""

    pool: asyncpg.Pool
    settings: ApiSettings


def ctx(request: Request) -> Ctx:
    """The pool and settings the app was started with."""
    return Ctx(request.app.state.pool, request.app.state.settings)


async def resolve_actor(c: Ctx, actor: str) -> asyncpg.Record:
    """The visible artists row of a DID or handle; NotFound otherwise."""
    column = "did" if actor.startswith("did:") else "handle"
    row = await c.pool.fetchrow(
        f"SELECT {ARTIST_COLUMNS} FROM artists a WHERE a.{column} = $1 AND a.active AND NOT a.local_takedown",
        actor if column == "did" else actor.lower(),
    )
    if row is None:
        raise NotFound(f"no visible account {actor}")
    return row


async def track_views(c: Ctx, rows: Sequence[asyncpg.Record]) -> list[dict[str, Any]]:
    """Views of track rows, featured artists resolved in one lookup (hidden ones keep just their DID)."""
    dids = sorted({f["did"] for r in rows for f in (r["features"] or [])})
    people: dict[str, asyncpg.Record] = {}
    if dids:
        for p in await c.pool.fetch(
            f"SELECT a.did, a.handle, a.avatar FROM unnest($1::text[]) AS d(did) {visible('a', 'd.did')}", dids
        ):
            people[p["did"]] = p
    return [views.track_view(r, people, c.settings.public_url) for r in rows]


class Where:
    """Conditions of a query and their parameters, numbered as they are added (after ``fixed`` ones)."""

    def __init__(self, *fixed: Any) -> None:
        self.args: list[Any] = list(fixed)
        self._parts: list[str] = []

    def add(self, clause: str, *values: Any) -> None:
        """``clause`` with a ``{}`` for each of ``values``, which become the next parameters."""
        first = len(self.args) + 1
        self.args.extend(values)
        self._parts.append(clause.format(*(f"${first + i}" for i in range(len(values)))))

    def sql(self) -> str:
        """``WHERE ...``, or nothing."""
        return "WHERE " + " AND ".join(self._parts) if self._parts else ""


def page(
    rows: Sequence[asyncpg.Record], limit: int, tag: str, key: Callable[[asyncpg.Record], tuple[Key, ...]]
) -> tuple[Sequence[asyncpg.Record], str | None]:
    """Rows fetched with ``LIMIT limit + 1``: the page, and a cursor when there is more."""
    if len(rows) <= limit:
        return rows, None
    shown = rows[:limit]
    return shown, encode(tag, *key(shown[-1]))


def with_cursor(body: dict[str, Any], cursor: str | None) -> dict[str, Any]:
    """``body`` plus ``cursor`` when there is a next page."""
    if cursor is not None:
        body["cursor"] = cursor
    return body
