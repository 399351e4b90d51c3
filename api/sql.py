"""SQL fragments every read shares: the visible-repo rule and the column sets the views read.

Visibility is decided here once: a repo's content is shown only while its account is active upstream
and not taken down locally. Every list, count, search and stream joins through it.
"""

from __future__ import annotations


# Join an artists row ``alias`` for ``did_expr`` only when that repo is visible.
def visible(alias: str, did_expr: str) -> str:
    """``JOIN artists <alias>`` restricted to visible repos."""
    return f"JOIN artists {alias} ON {alias}.did = {did_expr} AND {alias}.active AND NOT {alias}.local_takedown"


TRACK_COLUMNS = (
    "t.uri, t.cid, t.did, t.rkey, t.title, t.artist, t.album, t.duration, t.file_type, t.image_url,"
    " t.description, t.labels, t.support_gate, t.features, t.like_count, t.comment_count, t.created_at,"
    " t.indexed_at, t.sort_at, ta.handle AS artist_handle, ta.avatar AS artist_avatar"
)
# Tracks of visible repos, with their artist as ``ta``.
TRACKS = f"tracks t {visible('ta', 't.did')}"

LIST_COLUMNS = (
    "l.uri, l.cid, l.did, l.name, l.list_type, l.item_count, l.created_at, l.updated_at, l.indexed_at,"
    " la.handle AS artist_handle, la.avatar AS artist_avatar"
)
LISTS = f"lists l {visible('la', 'l.did')}"

ARTIST_COLUMNS = "a.did, a.handle, a.bio, a.avatar, a.track_count, a.likes_received, a.total_duration, a.indexed_at"
