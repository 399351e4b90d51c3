"""Records taken down by an operator: their read-model rows held aside, and put back on restore.

A taken-down record leaves its table (``tracks``, ``likes``, ``comments``, ``lists`` with its items)
for ``held_records``, so no read needs a visibility join for it and the store's usual recounts leave
it out of every count. Versions that arrive while it is down are written as usual and then held
again, replacing the held row, so a restore shows the latest version. The ledger is not touched.

Called only by :mod:`projector.store` inside its batch transaction (these functions open none), in
this order: :func:`moderate` before the batch's writes, :func:`hold` after them. The caller recounts
the tracks and artists returned by :func:`touched`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import asyncpg

from projector.fold.rows import COMMENT, LIKE, LIST, TRACK

_TABLES = {TRACK: "tracks", LIKE: "likes", COMMENT: "comments", LIST: "lists"}
# A track's counts went stale while it was held: it comes back at zero, so the caller's recount
# writes the true counts and the all-time order (which compares against the old values) follows.
_RECOUNTED = '{"like_count": 0, "comment_count": 0}'


# A version written while its record is held arrives as a new row, but indexedAt is when the index
# first saw this life of the record, as for any update: the held row's time is kept (and a track's sort
# time, the earlier of createdAt and indexedAt, follows it).
_FIRST_SEEN = "EXCLUDED.row || jsonb_build_object('indexed_at', held_records.row->'indexed_at'"
_KEEP_FIRST_SEEN = {
    collection: _FIRST_SEEN
    + (
        ", 'sort_at', to_jsonb(LEAST((EXCLUDED.row->>'created_at')::timestamptz,"
        " (held_records.row->>'indexed_at')::timestamptz)))"
        if collection == TRACK
        else ")"
    )
    for collection in _TABLES
}


@dataclass(frozen=True, slots=True)
class RecordModeration:
    """The batch's last word on one record: taken down (True) or restored (False)."""

    did: str
    collection: str
    takedown: bool
    reason: str | None


async def touched(conn: asyncpg.Connection, moderated: Mapping[str, RecordModeration]) -> tuple[set[str], set[str]]:
    """The tracks whose counts and the artists whose totals a batch's record moderation changes: a
    track itself and its artist; a like's or comment's subject, read from its table or its held row."""
    tracks = {uri for uri, m in moderated.items() if m.collection == TRACK}
    artists = {m.did for m in moderated.values() if m.collection == TRACK}
    subjects = [uri for uri, m in moderated.items() if m.collection in (LIKE, COMMENT)]
    if subjects:
        for r in await conn.fetch(
            "SELECT subject_uri AS s FROM likes WHERE uri = ANY($1)"
            " UNION SELECT subject_uri FROM comments WHERE uri = ANY($1)"
            " UNION SELECT row->>'subject_uri' FROM held_records WHERE uri = ANY($1)",
            subjects,
        ):
            tracks.add(r["s"])
    return tracks, artists


async def moderate(conn: asyncpg.Connection, moderated: Mapping[str, RecordModeration]) -> None:
    """Apply the batch's record takedowns and restores: a restored record's held rows go back to their
    tables (the batch's own writes then update them); a taken-down one is listed, and :func:`hold`
    moves it aside once the batch has written."""
    restored = [uri for uri, m in moderated.items() if not m.takedown]
    if restored:
        await _release(conn, restored)
        await conn.execute("DELETE FROM record_takedowns WHERE uri = ANY($1)", restored)
    down = [(uri, m) for uri, m in moderated.items() if m.takedown]
    if down:
        await conn.execute(
            "INSERT INTO record_takedowns (uri, did, collection, reason)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])"
            " ON CONFLICT (uri) DO UPDATE SET reason = EXCLUDED.reason",
            [uri for uri, _ in down],
            [m.did for _, m in down],
            [m.collection for _, m in down],
            [m.reason for _, m in down],
        )


async def hold(conn: asyncpg.Connection, candidates: Iterable[str]) -> None:
    """Move the rows of those ``candidates`` (uris the batch wrote or took down) that are taken down
    into ``held_records``, replacing what was held for them."""
    # Takedowns are rare: a batch's thousands of uris are matched against them only when there are any.
    if not await conn.fetchval("SELECT EXISTS (SELECT FROM record_takedowns)"):
        return
    uris = [
        r["uri"]
        for r in await conn.fetch("SELECT uri FROM record_takedowns WHERE uri = ANY($1)", sorted(set(candidates)))
    ]
    if not uris:
        return
    for collection, table in _TABLES.items():
        row = f"to_jsonb({table})"
        if collection == LIST:
            row += (
                " || jsonb_build_object('items', coalesce((SELECT jsonb_agg(to_jsonb(i) ORDER BY i.position)"
                " FROM list_items i WHERE i.list_uri = lists.uri), '[]'::jsonb))"
            )
        await conn.execute(
            f"INSERT INTO held_records (uri, did, collection, row) SELECT uri, did, $2, {row} FROM {table}"
            f" WHERE uri = ANY($1) ON CONFLICT (uri) DO UPDATE SET row = {_KEEP_FIRST_SEEN[collection]}",
            uris,
            collection,
        )
        await conn.execute(f"DELETE FROM {table} WHERE uri = ANY($1)", uris)
    await conn.execute("DELETE FROM tracks_by_likes WHERE uri = ANY($1)", uris)


async def forget(conn: asyncpg.Connection, uris: list[str]) -> None:
    """Drop what is held for records the batch deleted: a restore then has nothing to bring back."""
    if uris:
        await conn.execute("DELETE FROM held_records WHERE uri = ANY($1)", uris)


async def purge(conn: asyncpg.Connection, dids: list[str]) -> None:
    """Drop the takedowns and held rows of deleted repos."""
    await conn.execute("DELETE FROM record_takedowns WHERE did = ANY($1)", dids)


async def _release(conn: asyncpg.Connection, uris: list[str]) -> None:
    for collection, table in _TABLES.items():
        await conn.execute(
            f"INSERT INTO {table} SELECT (jsonb_populate_record(NULL::{table}, row || $3::jsonb)).* FROM held_records"
            " WHERE uri = ANY($1) AND collection = $2 ON CONFLICT (uri) DO NOTHING",
            uris,
            collection,
            _RECOUNTED if collection == TRACK else "{}",
        )
    await conn.execute(
        "INSERT INTO list_items SELECT (jsonb_populate_recordset(NULL::list_items, row->'items')).*"
        " FROM held_records WHERE uri = ANY($1) AND collection = $2 ON CONFLICT DO NOTHING",
        uris,
        LIST,
    )
    # A track comes back into the all-time order at zero; the caller's recount moves it.
    await conn.execute(
        "INSERT INTO tracks_by_likes (uri, like_count) SELECT uri, 0 FROM held_records"
        " WHERE uri = ANY($1) AND collection = $2 ON CONFLICT DO NOTHING",
        uris,
        TRACK,
    )
    await conn.execute("DELETE FROM held_records WHERE uri = ANY($1)", uris)
