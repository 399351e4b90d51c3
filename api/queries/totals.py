"""Totals over visible content, from the counts the projector keeps on each artist (no scan of likes)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.queries.common import ctx
from api.xrpc import FEED_ANSWERS, Params, add_query


async def get_totals(request: Request, p: Params) -> dict[str, Any]:
    row = await ctx(request).pool.fetchrow(
        "SELECT coalesce(sum(track_count), 0)::bigint AS tracks, count(*) FILTER (WHERE track_count > 0) AS artists,"
        " coalesce(sum(likes_received), 0)::bigint AS likes, coalesce(sum(total_duration), 0)::bigint AS duration"
        " FROM artists WHERE active AND NOT local_takedown"
    )
    assert row is not None
    return {"tracks": row["tracks"], "artists": row["artists"], "likes": row["likes"], "duration": row["duration"]}


def register(router: APIRouter) -> None:
    """Serve totals (cacheable for a few seconds: they move with every like)."""
    add_query(router, "fm.plyr.index.getTotals", get_totals, cache="public, max-age=10", shared=FEED_ANSWERS)
