"""Record validation against atproto's interop lexicon fixtures and the fm.plyr lexicons."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lexicons.validate import Catalog, Invalid, Valid, validate_record
from tests.fixtures.interop import INTEROP_DIR

LEX = INTEROP_DIR / "lexicon"
PLYR = Catalog.builtin()
CID = "bafyreie5cvv4h45feadgeuwhbcutmh6t2ceseocckahdoe6uat64zmz454"
REF = {"uri": "at://did:plc:abc/fm.plyr.track/3kabc2xyz22a2", "cid": CID}


def interop_catalog() -> Catalog:
    return Catalog.from_dir(LEX / "catalog")


@pytest.mark.parametrize("case", json.loads((LEX / "record-data-valid.json").read_text()), ids=lambda c: c["name"])
def test_interop_valid_records(case: dict[str, Any]) -> None:
    assert validate_record(interop_catalog(), "example.lexicon.record", case["data"]) == Valid()


@pytest.mark.parametrize("case", json.loads((LEX / "record-data-invalid.json").read_text()), ids=lambda c: c["name"])
def test_interop_invalid_records(case: dict[str, Any]) -> None:
    assert isinstance(validate_record(interop_catalog(), "example.lexicon.record", case["data"]), Invalid)


def track(**fields: Any) -> dict[str, Any]:
    return {
        "$type": "fm.plyr.track",
        "title": "T",
        "artist": "A",
        "fileType": "mp3",
        "createdAt": "2026-01-01T00:00:00Z",
        **fields,
    }


def test_plyr_records_valid() -> None:
    blob = {"$type": "blob", "ref": {"$link": CID}, "mimeType": "audio/mpeg", "size": 10}
    good = [
        (
            "fm.plyr.track",
            track(
                audioBlob=blob,
                features=[{"did": "did:plc:abc"}],
                duration=3,
                labels={"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "nsfw"}]},
            ),
        ),
        ("fm.plyr.like", {"$type": "fm.plyr.like", "subject": REF, "createdAt": "2026-01-01T00:00:00Z"}),
        (
            "fm.plyr.comment",
            {
                "$type": "fm.plyr.comment",
                "subject": REF,
                "text": "x",
                "timestampMs": 0,
                "createdAt": "2026-01-01T00:00:00Z",
            },
        ),
        ("fm.plyr.list", {"$type": "fm.plyr.list", "items": [{"subject": REF}], "createdAt": "2026-01-01T00:00:00Z"}),
        ("fm.plyr.actor.profile", {"$type": "fm.plyr.actor.profile", "bio": "hi", "createdAt": "2026-01-01T00:00:00Z"}),
    ]
    for collection, record in good:
        assert validate_record(PLYR, collection, record) == Valid(), collection


@pytest.mark.parametrize(
    ("collection", "record", "where"),
    [
        ("fm.plyr.track", {k: v for k, v in track().items() if k != "title"}, "$"),
        ("fm.plyr.track", track(title="x" * 257), "$.title"),
        ("fm.plyr.track", track(createdAt="yesterday"), "$.createdAt"),
        ("fm.plyr.track", track(features=[{"did": "nope"}]), "$.features[0].did"),
        (
            "fm.plyr.track",
            track(audioBlob={"$type": "blob", "ref": {"$link": CID}, "mimeType": "image/png", "size": 1}),
            "$.audioBlob",
        ),
        ("fm.plyr.track", track(duration=-1), "$.duration"),
        ("fm.plyr.track", track(duration=True), "$.duration"),
        (
            "fm.plyr.like",
            {"$type": "fm.plyr.like", "subject": {"uri": REF["uri"]}, "createdAt": "2026-01-01T00:00:00Z"},
            "$.subject",
        ),
        (
            "fm.plyr.comment",
            {
                "$type": "fm.plyr.comment",
                "subject": REF,
                "text": "x",
                "timestampMs": -5,
                "createdAt": "2026-01-01T00:00:00Z",
            },
            "$.timestampMs",
        ),
        (
            "fm.plyr.list",
            {"$type": "fm.plyr.list", "items": [{"subject": REF}] * 501, "createdAt": "2026-01-01T00:00:00Z"},
            "$.items",
        ),
        (
            "fm.plyr.actor.profile",
            {"$type": "fm.plyr.actor.profile", "bio": "é" * 257, "createdAt": "2026-01-01T00:00:00Z"},
            "$.bio",
        ),
        ("fm.plyr.track", {**track(), "$type": "fm.plyr.like"}, "$.$type"),
        ("app.bsky.feed.post", {"$type": "app.bsky.feed.post"}, "$"),
    ],
)
def test_plyr_records_invalid(collection: str, record: dict[str, Any], where: str) -> None:
    result = validate_record(PLYR, collection, record)
    assert isinstance(result, Invalid) and result.path == where, result


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10) | st.floats(allow_nan=True),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["$type", "title", "artist", "fileType", "createdAt", "features", "audioBlob", "items", "subject", "x"]
            ),
            inner,
            max_size=6,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["fm.plyr.track", "fm.plyr.list", "fm.plyr.like"]), json_values)
def test_never_raises(collection: str, record: object) -> None:
    assert isinstance(validate_record(PLYR, collection, record), Valid | Invalid)
