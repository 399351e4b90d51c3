"""A list (album, playlist) with its items in the record's order, from the index."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api import views
from api.errors import NotFound
from api.queries.common import ctx, track_views
from api.sql import LIST_COLUMNS, LISTS, TRACK_COLUMNS, TRACKS
from api.xrpc import Params, add_query


async def get_list(request: Request, p: Params) -> dict[str, Any]:
    c = ctx(request)
    row = await c.pool.fetchrow(f"SELECT {LIST_COLUMNS} FROM {LISTS} WHERE l.uri = $1", p["uri"])
    if row is None:
        raise NotFound(f"no visible list {p['uri']}")
    items = await c.pool.fetch(
        "SELECT position, subject_uri, subject_cid FROM list_items WHERE list_uri = $1 ORDER BY position", p["uri"]
    )
    subjects = sorted({i["subject_uri"] for i in items})
    shown = await c.pool.fetch(f"SELECT {TRACK_COLUMNS} FROM {TRACKS} WHERE t.uri = ANY($1)", subjects)
    by_uri = dict(zip((r["uri"] for r in shown), await track_views(c, shown), strict=True))
    # An item whose track is indexed but not visible (its repo hidden, or the track taken down here) is
    # "hidden"; one not indexed (yet) "notIndexed".
    indexed = {
        r["uri"]
        for r in await c.pool.fetch(
            "SELECT uri FROM tracks WHERE uri = ANY($1) UNION ALL SELECT uri FROM record_takedowns WHERE uri = ANY($1)",
            subjects,
        )
    }
    out = []
    for i in items:
        track = by_uri.get(i["subject_uri"])
        reason = None if track is not None else ("hidden" if i["subject_uri"] in indexed else "notIndexed")
        out.append(views.list_item_view(i["position"], i["subject_uri"], i["subject_cid"], track, reason))
    return {"list": views.list_view(row), "items": out}


def register(router: APIRouter) -> None:
    """Serve the list query."""
    add_query(router, "fm.plyr.index.getList", get_list)
