"""The activity feed: new tracks, likes, comments, playlists created, albums released, tracks added to
lists — read from the projector's change log, newest first, showing only what is still there and
visible now."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api import views
from api.cursor import decode
from api.queries.common import ctx, page, track_views, with_cursor
from api.sql import LIST_COLUMNS, LISTS, TRACK_COLUMNS, TRACKS, visible
from api.xrpc import FEED_ANSWERS, Params, add_query

_TRACK_OK = f"EXISTS (SELECT 1 FROM {TRACKS} WHERE t.uri = {{}})"
_LIST_OK = f"EXISTS (SELECT 1 FROM {LISTS} WHERE l.uri = ch.uri)"
_STILL_THERE = (
    "CASE ch.kind"
    f" WHEN 'track.created' THEN {_TRACK_OK.format('ch.uri')}"
    f" WHEN 'like.created' THEN EXISTS (SELECT 1 FROM likes WHERE likes.uri = ch.uri)"
    f"   AND {_TRACK_OK.format('ch.subject_uri')}"
    f" WHEN 'comment.created' THEN EXISTS (SELECT 1 FROM comments WHERE comments.uri = ch.uri)"
    f"   AND {_TRACK_OK.format('ch.subject_uri')}"
    f" WHEN 'list.created' THEN ch.detail->>'listType' IN ('album', 'playlist') AND {_LIST_OK}"
    f" WHEN 'list.item_added' THEN {_LIST_OK} AND {_TRACK_OK.format('ch.subject_uri')}"
    " ELSE false END"
)
_KINDS = {
    "track.created": "track",
    "like.created": "like",
    "comment.created": "comment",
    "list.item_added": "addedToList",
}


async def get_activity(request: Request, p: Params) -> dict[str, Any]:
    c = ctx(request)
    after = decode("activity", p["cursor"], (int,))
    rows = await c.pool.fetch(
        "SELECT ch.seq, ch.kind, ch.did, ch.uri, ch.subject_uri, ch.detail, ch.at, ca.handle, ca.avatar"
        f" FROM changes ch {visible('ca', 'ch.did')}"
        " WHERE ch.kind IN ('track.created', 'like.created', 'comment.created', 'list.created', 'list.item_added')"
        f" AND ch.seq < $2 AND {_STILL_THERE} ORDER BY ch.seq DESC LIMIT $1",
        p["limit"] + 1,
        after[0] if after else 2**62,
    )
    shown, cursor = page(rows, p["limit"], "activity", lambda r: (r["seq"],))
    track_uris = {r["uri"] if r["kind"] == "track.created" else r["subject_uri"] for r in shown} - {None}
    list_uris = {r["uri"] for r in shown if r["kind"].startswith("list.")}
    track_rows = await c.pool.fetch(f"SELECT {TRACK_COLUMNS} FROM {TRACKS} WHERE t.uri = ANY($1)", sorted(track_uris))
    tracks = dict(zip((r["uri"] for r in track_rows), await track_views(c, track_rows), strict=True))
    lists = {
        r["uri"]: views.list_view(r)
        for r in await c.pool.fetch(f"SELECT {LIST_COLUMNS} FROM {LISTS} WHERE l.uri = ANY($1)", sorted(list_uris))
    }
    items = []
    for r in shown:
        kind = _KINDS.get(r["kind"]) or (r["detail"] or {}).get("listType", "playlist")
        item: dict[str, Any] = {
            "kind": kind,
            "actor": views.artist_ref(r["did"], r["handle"], r["avatar"]),
            "uri": r["uri"],
            "at": views.when(r["at"]),
        }
        track = tracks.get(r["uri"] if r["kind"] == "track.created" else r["subject_uri"])
        if track is not None:
            item["track"] = track
        if r["uri"] in lists:
            item["list"] = lists[r["uri"]]
        items.append(item)
    return with_cursor({"items": items}, cursor)


def register(router: APIRouter) -> None:
    """Serve the activity feed."""
    add_query(router, "fm.plyr.index.getActivity", get_activity, shared=FEED_ANSWERS)
