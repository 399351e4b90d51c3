"""Track queries: latest, top, one track, its likers, its timed comments."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request

from api import views
from api.cursor import Int32, decode
from api.errors import NotFound
from api.queries.common import Where, ctx, page, resolve_actor, track_views, with_cursor
from api.sql import TRACK_COLUMNS, TRACKS, visible
from api.xrpc import FEED_ANSWERS, Params, add_query

_NS = "fm.plyr.index."


async def get_latest_tracks(request: Request, p: Params) -> dict[str, Any]:
    c = ctx(request)
    where = Where(p["limit"] + 1)
    if p["artist"] is not None:
        where.add("t.did = {}", (await resolve_actor(c, p["artist"]))["did"])
    if p["album"] is not None:
        where.add("t.album = {}", p["album"])
    after = decode("latest", p["cursor"], (datetime, str))
    if after is not None:
        where.add("(t.sort_at, t.uri) < ({}, {})", *after)
    rows = await c.pool.fetch(
        f"SELECT {TRACK_COLUMNS} FROM {TRACKS} {where.sql()} ORDER BY t.sort_at DESC, t.uri DESC LIMIT $1",
        *where.args,
    )
    shown, cursor = page(rows, p["limit"], "latest", lambda r: (r["sort_at"], r["uri"]))
    return with_cursor({"tracks": await track_views(c, shown)}, cursor)


async def get_top_tracks(request: Request, p: Params) -> dict[str, Any]:
    c = ctx(request)
    window = p["window"]
    if window == "all":
        after = decode("top:all", p["cursor"], (Int32, str))
        # tracks_by_likes holds the order (its count is the track's like_count, kept by the same recount).
        cond = "" if after is None else "WHERE (b.like_count, b.uri) < ($2, $3)"
        rows = await c.pool.fetch(
            f"SELECT {TRACK_COLUMNS}, b.like_count AS likers FROM tracks_by_likes b JOIN {TRACKS} ON t.uri = b.uri"
            f" {cond} ORDER BY b.like_count DESC, b.uri DESC LIMIT $1",
            p["limit"] + 1,
            *(after or ()),
        )
        shown, cursor = page(rows, p["limit"], "top:all", lambda r: (r["likers"], r["uri"]))
    else:
        # The projector's ranking snapshot for the window; visibility is re-checked at read time.
        tag = f"top:{window}"
        after = decode(tag, p["cursor"], (Int32,))
        rows = await c.pool.fetch(
            f"SELECT {TRACK_COLUMNS}, tt.likers, tt.rank FROM top_tracks tt JOIN {TRACKS} ON t.uri = tt.uri"
            " WHERE tt.time_window = $1 AND tt.rank > $2 ORDER BY tt.rank LIMIT $3",
            window,
            after[0] if after else 0,
            p["limit"] + 1,
        )
        shown, cursor = page(rows, p["limit"], tag, lambda r: (r["rank"],))
    tracks = await track_views(c, shown)
    items = [{"likers": r["likers"], "track": t} for r, t in zip(shown, tracks, strict=True)]
    return with_cursor({"items": items}, cursor)


async def visible_track(request: Request, uri: str) -> dict[str, Any]:
    """The view of one visible track; NotFound otherwise."""
    c = ctx(request)
    row = await c.pool.fetchrow(f"SELECT {TRACK_COLUMNS} FROM {TRACKS} WHERE t.uri = $1", uri)
    if row is None:
        raise NotFound(f"no visible track {uri}")
    return (await track_views(c, [row]))[0]


async def get_track(request: Request, p: Params) -> dict[str, Any]:
    return {"track": await visible_track(request, p["uri"])}


async def get_track_likers(request: Request, p: Params) -> dict[str, Any]:
    c = ctx(request)
    await visible_track(request, p["uri"])
    after = decode("likers", p["cursor"], (datetime, str))
    cond = "" if after is None else "AND (lk.created_at, lk.uri) < ($3, $4)"
    rows = await c.pool.fetch(
        f"SELECT lk.uri, lk.did, lk.created_at, la.handle, la.avatar FROM likes lk {visible('la', 'lk.did')}"
        f" WHERE lk.subject_uri = $1 {cond} ORDER BY lk.created_at DESC, lk.uri DESC LIMIT $2",
        p["uri"],
        p["limit"] + 1,
        *(after or ()),
    )
    shown, cursor = page(rows, p["limit"], "likers", lambda r: (r["created_at"], r["uri"]))
    likes = [
        {
            "uri": r["uri"],
            "actor": views.artist_ref(r["did"], r["handle"], r["avatar"]),
            "createdAt": views.when(r["created_at"]),
        }
        for r in shown
    ]
    return with_cursor({"likes": likes}, cursor)


async def get_track_comments(request: Request, p: Params) -> dict[str, Any]:
    c = ctx(request)
    await visible_track(request, p["uri"])
    after = decode("comments", p["cursor"], (int, str))
    cond = "" if after is None else "AND (cm.timestamp_ms, cm.uri) > ($3, $4)"
    rows = await c.pool.fetch(
        "SELECT cm.uri, cm.did, cm.text, cm.timestamp_ms, cm.created_at, cm.updated_at, ca.handle, ca.avatar"
        f" FROM comments cm {visible('ca', 'cm.did')}"
        f" WHERE cm.subject_uri = $1 {cond} ORDER BY cm.timestamp_ms, cm.uri LIMIT $2",
        p["uri"],
        p["limit"] + 1,
        *(after or ()),
    )
    shown, cursor = page(rows, p["limit"], "comments", lambda r: (r["timestamp_ms"], r["uri"]))
    return with_cursor({"comments": [views.comment_view(r) for r in shown]}, cursor)


def register(router: APIRouter) -> None:
    """Serve the track queries."""
    add_query(router, _NS + "getLatestTracks", get_latest_tracks, shared=FEED_ANSWERS)
    add_query(router, _NS + "getTopTracks", get_top_tracks, shared=FEED_ANSWERS)
    add_query(router, _NS + "getTrack", get_track)
    add_query(router, _NS + "getTrackLikers", get_track_likers)
    add_query(router, _NS + "getTrackComments", get_track_comments)
