"""SQL fragments every read shares: the visible-repo rule and the column sets the views read.

Visibility is decided here once: a repo's content is shown only while its account is active upstream
and not taken down locally. Every list, count, search and stream joins through it.
"""

from __future__ import annotations


# Join an artists row ``alias`` for ``did_expr`` only when that repo is visible.
def visible(alias: str, did_expr: str) -> str:
    """``JOIN artists <alias>`` restricted to visible repos."""
    return f"JOIN artists {alias} ON {alias}.did = {did_expr} AND {alias}.active AND NOT {alias}.local_takedown"


def utc_text(column: str) -> str:
    """A timestamptz ``column`` as an atproto datetime (UTC, milliseconds, ``Z``), as ``views.when``."""
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"


_FEATURE_DID = "f.v->>'did'"
# A track's view (``fm.plyr.index.defs#trackView``), all of it but the streamUrl, built by Postgres as
# JSON text that the response embeds unparsed (``views.track_view``). Feeds answer fifty of these a
# page: decoding twenty-one columns a row into Python objects and building the dicts again took half
# the API's CPU for such a page. Null fields are left out (json_strip_nulls), as the lexicon's objects
# expect; featured artists are resolved here, a hidden one keeping just its DID. Keys in view order.
TRACK_VIEW = (
    "json_strip_nulls(json_build_object("
    "'uri', t.uri, 'cid', t.cid, 'title', t.title,"
    " 'artist', json_build_object('did', t.did, 'name', t.artist, 'handle', ta.handle, 'avatar', ta.avatar),"
    " 'features', CASE WHEN t.features = '[]' THEN '[]'::json ELSE (SELECT"
    " json_agg(json_build_object('did', f.v->>'did', 'handle', fa.handle, 'avatar', fa.avatar) ORDER BY f.n)"
    " FROM jsonb_array_elements(t.features) WITH ORDINALITY AS f(v, n)"
    f" LEFT {visible('fa', _FEATURE_DID)}) END,"
    " 'album', t.album, 'duration', t.duration, 'imageUrl', t.image_url, 'description', t.description,"
    " 'labels', t.labels, 'supportGate', t.support_gate, 'fileType', t.file_type,"
    " 'likeCount', t.like_count, 'commentCount', t.comment_count,"
    f" 'createdAt', {utc_text('t.created_at')}, 'indexedAt', {utc_text('t.indexed_at')}))"
)
# What a track's view is read from: the JSON, and what the stream URL, cursors and joins need.
TRACK_COLUMNS = f"{TRACK_VIEW}::text AS view, t.uri, t.did, t.rkey, t.sort_at"

# Tracks of visible repos, with their artist as ``ta``.
TRACKS = f"tracks t {visible('ta', 't.did')}"

LIST_COLUMNS = (
    "l.uri, l.cid, l.did, l.name, l.list_type, l.item_count, l.created_at, l.updated_at, l.indexed_at,"
    " la.handle AS artist_handle, la.avatar AS artist_avatar"
)
LISTS = f"lists l {visible('la', 'l.did')}"

ARTIST_COLUMNS = "a.did, a.handle, a.bio, a.avatar, a.track_count, a.likes_received, a.total_duration, a.indexed_at"
