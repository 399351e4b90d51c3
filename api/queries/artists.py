"""Artist queries: a profile with totals, an artist's lists, all artists, an account's likes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request

from api import views
from api.cursor import decode
from api.queries.common import Where, ctx, page, resolve_actor, track_views, with_cursor
from api.sql import ARTIST_COLUMNS, LIST_COLUMNS, LISTS, TRACK_COLUMNS, TRACKS
from api.xrpc import FEED_ANSWERS, Params, add_query

_NS = "fm.plyr.index."


async def get_artist(request: Request, p: Params) -> dict[str, Any]:
    return {"artist": views.artist_view(await resolve_actor(ctx(request), p["actor"]))}


async def get_artist_lists(request: Request, p: Params) -> dict[str, Any]:
    c = ctx(request)
    where = Where(p["limit"] + 1)
    where.add("l.did = {}", (await resolve_actor(c, p["actor"]))["did"])
    if p["listType"] is not None:
        where.add("l.list_type = {}", p["listType"])
    after = decode("lists", p["cursor"], (datetime, str))
    if after is not None:
        where.add("(l.created_at, l.uri) < ({}, {})", *after)
    rows = await c.pool.fetch(
        f"SELECT {LIST_COLUMNS} FROM {LISTS} {where.sql()} ORDER BY l.created_at DESC, l.uri DESC LIMIT $1",
        *where.args,
    )
    shown, cursor = page(rows, p["limit"], "lists", lambda r: (r["created_at"], r["uri"]))
    return with_cursor({"lists": [views.list_view(r) for r in shown]}, cursor)


async def list_artists(request: Request, p: Params) -> dict[str, Any]:
    c = ctx(request)
    after = decode("artists", p["cursor"], (datetime, str))
    cond = "" if after is None else "AND (a.indexed_at, a.did) < ($2, $3)"
    rows = await c.pool.fetch(
        f"SELECT {ARTIST_COLUMNS} FROM artists a WHERE a.listed AND a.active AND NOT a.local_takedown"
        f" {cond} ORDER BY a.indexed_at DESC, a.did DESC LIMIT $1",
        p["limit"] + 1,
        *(after or ()),
    )
    shown, cursor = page(rows, p["limit"], "artists", lambda r: (r["indexed_at"], r["did"]))
    return with_cursor({"artists": [views.artist_view(r) for r in shown]}, cursor)


async def get_actor_likes(request: Request, p: Params) -> dict[str, Any]:
    c = ctx(request)
    actor = await resolve_actor(c, p["actor"])
    after = decode("actorLikes", p["cursor"], (datetime, str))
    cond = "" if after is None else "AND (lk.created_at, lk.uri) < ($3, $4)"
    # Only likes of visible tracks: hidden content never shows, not even as someone's like.
    rows = await c.pool.fetch(
        f"SELECT lk.uri AS like_uri, lk.created_at AS liked_at, {TRACK_COLUMNS} FROM likes lk"
        f" JOIN {TRACKS} ON t.uri = lk.subject_uri WHERE lk.did = $1 {cond}"
        " ORDER BY lk.created_at DESC, lk.uri DESC LIMIT $2",
        actor["did"],
        p["limit"] + 1,
        *(after or ()),
    )
    shown, cursor = page(rows, p["limit"], "actorLikes", lambda r: (r["liked_at"], r["like_uri"]))
    who = views.artist_ref(actor["did"], actor["handle"], actor["avatar"])
    tracks = await track_views(c, shown)
    likes = [
        {"uri": r["like_uri"], "actor": who, "createdAt": views.when(r["liked_at"]), "track": t}
        for r, t in zip(shown, tracks, strict=True)
    ]
    return with_cursor({"likes": likes}, cursor)


def register(router: APIRouter) -> None:
    """Serve the artist queries."""
    add_query(router, _NS + "getArtist", get_artist)
    add_query(router, _NS + "getArtistLists", get_artist_lists)
    add_query(router, _NS + "listArtists", list_artists, shared=FEED_ANSWERS)
    add_query(router, _NS + "getActorLikes", get_actor_likes)
