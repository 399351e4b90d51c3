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
    # With each item, whether its track is indexed at all: one not visible (its repo hidden, or the
    # track taken down here) is "hidden", one not indexed (yet) "notIndexed".
    items = await c.pool.fetch(
        "SELECT i.position, i.subject_uri, i.subject_cid,"
        " EXISTS (SELECT FROM tracks x WHERE x.uri = i.subject_uri)"
        " OR EXISTS (SELECT FROM record_takedowns d WHERE d.uri = i.subject_uri) AS indexed"
        " FROM list_items i WHERE i.list_uri = $1 ORDER BY i.position",
        p["uri"],
    )
    subjects = sorted({i["subject_uri"] for i in items if i["indexed"]})
    shown = await c.pool.fetch(f"SELECT {TRACK_COLUMNS} FROM {TRACKS} WHERE t.uri = ANY($1)", subjects)
    by_uri = dict(zip((r["uri"] for r in shown), await track_views(c, shown), strict=True))
    out = []
    for i in items:
        track = by_uri.get(i["subject_uri"])
        reason = None if track is not None else ("hidden" if i["indexed"] else "notIndexed")
        out.append(views.list_item_view(i["position"], i["subject_uri"], i["subject_cid"], track, reason))
    return {"list": views.list_view(row), "items": out}


def register(router: APIRouter) -> None:
    """Serve the list query."""
    add_query(router, "fm.plyr.index.getList", get_list)
