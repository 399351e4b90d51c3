"""Read-model rows → the views of ``fm.plyr.index.defs`` (pure; no I/O).

Columns are selected under fixed aliases by :mod:`api.sql`, so each view reads one row shape.
Optional fields are left out rather than sent as null, as lexicon objects expect.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

Row = Mapping[str, Any]


def when(value: datetime) -> str:
    """An atproto datetime: UTC, milliseconds, ``Z``."""
    # asyncpg hands timestamptz over in UTC already; formatted by hand, as every feed row formats two
    # (%-formatting measured faster here than isoformat() or an f-string).
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond // 1000,
    )  # fmt: skip


def _some(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def artist_ref(did: str, handle: str | None, avatar: str | None = None, name: str | None = None) -> dict[str, Any]:
    """Who: a DID with what the index knows of it."""
    return _some(did=did, handle=handle, name=name, avatar=avatar)


# Optional fields of a track view: (view key, column), left out when the column is NULL.
_TRACK_OPTIONAL = (
    ("album", "album"),
    ("duration", "duration"),
    ("imageUrl", "image_url"),
    ("description", "description"),
    ("labels", "labels"),
    ("supportGate", "support_gate"),
)


def track_view(row: Row, people: Mapping[str, Row], public_url: str) -> dict[str, Any]:
    """A track row (``api.sql.TRACK_COLUMNS``) with its featured artists looked up in ``people``.
    Built field by field rather than through ``_some``: feeds build fifty of these per page."""
    features = []
    for feature in row["features"] or ():
        known = people.get(feature["did"])
        handle = known["handle"] if known is not None else None
        features.append(artist_ref(feature["did"], handle, known["avatar"] if known is not None else None))
    did = row["did"]
    artist = {"did": did, "name": row["artist"]}
    if (handle := row["artist_handle"]) is not None:
        artist["handle"] = handle
    if (avatar := row["artist_avatar"]) is not None:
        artist["avatar"] = avatar
    view: dict[str, Any] = {"uri": row["uri"], "cid": row["cid"], "title": row["title"], "artist": artist}
    view["features"] = features
    for key, column in _TRACK_OPTIONAL:
        if (value := row[column]) is not None:
            view[key] = value
    view["fileType"] = row["file_type"]
    view["likeCount"] = row["like_count"]
    view["commentCount"] = row["comment_count"]
    view["createdAt"] = when(row["created_at"])
    view["indexedAt"] = when(row["indexed_at"])
    # A did:web with a port holds "%3A"; quoted, it survives the server's path decoding.
    path_did = did if did.startswith("did:plc:") else quote(did, safe=":")
    view["streamUrl"] = f"{public_url.rstrip('/')}/stream/{path_did}/{row['rkey']}"
    return view


def artist_view(row: Row) -> dict[str, Any]:
    """An artists row with its totals."""
    return _some(
        did=row["did"],
        handle=row["handle"],
        bio=row["bio"],
        avatar=row["avatar"],
        trackCount=row["track_count"],
        likesReceived=row["likes_received"],
        totalDuration=row["total_duration"],
        indexedAt=when(row["indexed_at"]),
    )


def list_view(row: Row) -> dict[str, Any]:
    """A lists row (``api.sql.LIST_COLUMNS``)."""
    return _some(
        uri=row["uri"],
        cid=row["cid"],
        name=row["name"],
        listType=row["list_type"],
        artist=artist_ref(row["did"], row["artist_handle"], row["artist_avatar"]),
        itemCount=row["item_count"],
        createdAt=when(row["created_at"]),
        updatedAt=when(row["updated_at"]) if row["updated_at"] is not None else None,
        indexedAt=when(row["indexed_at"]),
    )


def list_item_view(
    position: int, subject_uri: str, subject_cid: str, track: dict[str, Any] | None, reason: str | None
) -> dict[str, Any]:
    """One item of a list in the record's order; unavailable items are kept, with the reason."""
    return _some(
        position=position,
        subject={"uri": subject_uri, "cid": subject_cid},
        available=track is not None,
        reason=reason,
        track=track,
    )


def comment_view(row: Row) -> dict[str, Any]:
    """A comments row joined with its author."""
    return _some(
        uri=row["uri"],
        author=artist_ref(row["did"], row["handle"], row["avatar"]),
        text=row["text"],
        timestampMs=row["timestamp_ms"],
        createdAt=when(row["created_at"]),
        updatedAt=when(row["updated_at"]) if row["updated_at"] is not None else None,
    )
