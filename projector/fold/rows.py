"""A validated record → the values of its read-model row, per collection (pure).

Input records are in atproto JSON form and have passed their lexicon, so required fields exist and
have the right types; optional ones may be absent. Times are parsed here; ``sort_at`` is the earlier
of createdAt and indexedAt so a future-dated record cannot jump a feed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

# The indexed collections.
TRACK, LIKE, LIST, COMMENT, PROFILE = (
    "fm.plyr.track",
    "fm.plyr.like",
    "fm.plyr.list",
    "fm.plyr.comment",
    "fm.plyr.actor.profile",
)


def parse_time(value: object) -> datetime | None:
    """An atproto datetime string as an aware datetime (None if absent)."""
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)


def _json(value: object) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


@dataclass(frozen=True, slots=True)
class TrackRow:
    """Values of a ``tracks`` row (uri, did, rkey and indexed_at are added by the store)."""

    cid: str
    title: str
    artist: str
    album: str | None
    duration: int | None
    file_type: str
    audio_url: str | None
    audio_blob_cid: str | None
    audio_blob_mime: str | None
    audio_blob_size: int | None
    image_url: str | None
    features: str
    feature_dids: list[str]
    description: str | None
    labels: str | None
    support_gate: str | None
    created_at: datetime


def track(record: dict[str, Any], cid: str) -> TrackRow:
    """The tracks row of an fm.plyr.track record."""
    blob = record.get("audioBlob")
    features = record.get("features") or []
    ref = blob.get("ref") if isinstance(blob, dict) else None
    created = parse_time(record["createdAt"])
    assert created is not None
    return TrackRow(
        cid=cid,
        title=record["title"],
        artist=record["artist"],
        album=record.get("album"),
        duration=record.get("duration"),
        file_type=record["fileType"],
        audio_url=record.get("audioUrl"),
        audio_blob_cid=ref.get("$link") if isinstance(ref, dict) else None,
        audio_blob_mime=blob.get("mimeType") if isinstance(blob, dict) else None,
        audio_blob_size=blob.get("size") if isinstance(blob, dict) else None,
        image_url=record.get("imageUrl"),
        features=orjson.dumps(features).decode(),
        feature_dids=[f["did"] for f in features],
        description=record.get("description"),
        labels=_json(record.get("labels")),
        support_gate=_json(record.get("supportGate")),
        created_at=created,
    )


@dataclass(frozen=True, slots=True)
class SubjectRow:
    """A like: its subject strongRef and time."""

    subject_uri: str
    subject_cid: str
    created_at: datetime


def like(record: dict[str, Any]) -> SubjectRow:
    """The likes row of an fm.plyr.like record."""
    created = parse_time(record["createdAt"])
    assert created is not None
    return SubjectRow(record["subject"]["uri"], record["subject"]["cid"], created)


@dataclass(frozen=True, slots=True)
class CommentRow:
    """A timed comment."""

    subject_uri: str
    subject_cid: str
    text: str
    timestamp_ms: int
    created_at: datetime
    updated_at: datetime | None


def comment(record: dict[str, Any]) -> CommentRow:
    """The comments row of an fm.plyr.comment record."""
    created = parse_time(record["createdAt"])
    assert created is not None
    return CommentRow(
        record["subject"]["uri"],
        record["subject"]["cid"],
        record["text"],
        record["timestampMs"],
        created,
        parse_time(record.get("updatedAt")),
    )


@dataclass(frozen=True, slots=True)
class ListRow:
    """A list (album, playlist, liked) and its ordered items."""

    cid: str
    name: str | None
    list_type: str | None
    items: list[tuple[str, str]]
    created_at: datetime
    updated_at: datetime | None


def list_(record: dict[str, Any], cid: str) -> ListRow:
    """The lists row and items of an fm.plyr.list record."""
    created = parse_time(record["createdAt"])
    assert created is not None
    items = [(i["subject"]["uri"], i["subject"]["cid"]) for i in record["items"]]
    return ListRow(cid, record.get("name"), record.get("listType"), items, created, parse_time(record.get("updatedAt")))


@dataclass(frozen=True, slots=True)
class ProfileRow:
    """The profile fields of an artist."""

    bio: str | None
    avatar: str | None
    created_at: datetime | None


def profile(record: dict[str, Any]) -> ProfileRow:
    """The artist fields of an fm.plyr.actor.profile record."""
    return ProfileRow(record.get("bio"), record.get("avatar"), parse_time(record.get("createdAt")))
