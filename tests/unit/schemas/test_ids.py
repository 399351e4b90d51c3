"""Identifier syntax against atproto's interop syntax fixtures; the collection filter; TIDs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.ids import (
    CidStr,
    CollectionFilter,
    Did,
    Handle,
    Nsid,
    RecordKey,
    Tid,
    is_at_identifier,
    is_at_uri,
    is_cid_syntax,
    is_datetime,
    is_did,
    is_handle,
    is_nsid,
    is_record_key,
    is_tid,
    parse_at_uri,
    parse_record_uri,
    tid_from_datetime,
    tid_to_datetime,
)
from tests.fixtures.interop import INTEROP_DIR

SYNTAX = INTEROP_DIR / "syntax"


def lines(name: str) -> list[str]:
    text = (SYNTAX / name).read_text(encoding="utf-8")
    return [ln for ln in text.split("\n") if ln.strip() and not ln.startswith("#")]


CASES: list[tuple[str, Callable[[str], bool]]] = [
    ("did", is_did),
    ("handle", is_handle),
    ("nsid", is_nsid),
    ("recordkey", is_record_key),
    ("tid", is_tid),
    ("datetime", is_datetime),
    ("cid", is_cid_syntax),
    ("atidentifier", is_at_identifier),
]


@pytest.mark.parametrize(("name", "pred"), CASES, ids=[c[0] for c in CASES])
def test_interop_syntax_fixtures(name: str, pred: Callable[[str], bool]) -> None:
    valid = lines(f"{name}_syntax_valid.txt")
    invalid = lines(f"{name}_syntax_invalid.txt")
    assert valid and invalid
    assert [v for v in valid if not pred(v)] == []
    assert [v for v in invalid if pred(v)] == []


def test_datetimes_that_look_right_but_do_not_parse_are_rejected() -> None:
    # datetime_parse_invalid.txt: syntactically plausible, but not real moments (e.g. month 13).
    bad = lines("datetime_parse_invalid.txt")
    assert bad and [v for v in bad if is_datetime(v)] == []


def test_at_uri_fixtures_for_record_uris() -> None:
    # Our AT-URIs name records: at://authority[/collection[/rkey]], no query or fragment. The
    # fixtures' general AT-URI grammar also allows those, so only check what records use.
    for v in lines("aturi_syntax_valid.txt"):
        if "#" not in v and "?" not in v and v.count("/") <= 4 and not v.endswith("/"):
            assert is_at_uri(v), v
    for v in lines("aturi_syntax_invalid.txt"):
        assert not is_at_uri(v), v
    parts = parse_at_uri("at://did:plc:abc/fm.plyr.track/3kabc2xyz22a2")
    assert parts is not None and (parts.collection, parts.rkey) == ("fm.plyr.track", "3kabc2xyz22a2")


def test_collection_filter() -> None:
    f = CollectionFilter.parse("fm.plyr.*")
    assert f.matches("fm.plyr.track") and f.matches("fm.plyr.actor.profile")
    assert not f.matches("fm.plyrx.track") and not f.matches("fm.plyr") and not f.matches("app.bsky.feed.post")
    both = CollectionFilter.parse("fm.plyr.track, app.bsky.feed.*")
    assert both.matches("fm.plyr.track") and both.matches("app.bsky.feed.like") and not both.matches("fm.plyr.like")
    assert str(both) == "fm.plyr.track,app.bsky.feed.*"
    star = CollectionFilter.parse("*")
    assert star.matches("anything.at.all") and str(star) == "*"
    for bad in ["", "fm..plyr", "fm.*.track", "*.plyr", "fm", "fm.plyr.tr@ck"]:
        with pytest.raises(ValueError):
            CollectionFilter.parse(bad)


def test_tid_round_trip_and_order() -> None:
    a = datetime(2026, 1, 1, tzinfo=UTC)
    b = datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    ta, tb = tid_from_datetime(a, 5), tid_from_datetime(b, 0)
    assert is_tid(ta) and is_tid(tb) and ta < tb
    assert tid_to_datetime(ta) == a


def test_annotated_types_in_models() -> None:
    class M(BaseModel):
        did: Did
        nsid: Nsid

    assert M(did="did:plc:abc", nsid="fm.plyr.track").did == "did:plc:abc"
    with pytest.raises(ValidationError, match="did"):
        M(did="plc:abc", nsid="fm.plyr.track")


# Strings near each syntax's edges that the fixtures do not spell: a trailing newline (which a
# Python "$" would accept), the dot-only record keys, the CIDv0 prefix, the length bounds.
EDGES = [
    "did:plc:abc\n",
    "did:plc:" + "a" * 2040,
    "did:plc:" + "a" * 2041,
    "alice.test\n",
    "fm.plyr.track\n",
    ".",
    "..",
    "...",
    ".a",
    "a" * 512,
    "a" * 513,
    "3jzfcijpj2z2a\n",
    "Qmb" + "a" * 10,
    "Qma" + "a" * 10,
    "Qmba",
    "bafyrei" + "a" * 249,
    "bafyrei" + "a" * 250,
    "",
]


@pytest.mark.parametrize(
    ("name", "pred", "kind"),
    [
        ("did", is_did, Did),
        ("handle", is_handle, Handle),
        ("nsid", is_nsid, Nsid),
        ("recordkey", is_record_key, RecordKey),
        ("tid", is_tid, Tid),
        ("cid", is_cid_syntax, CidStr),
    ],
)
def test_pydantic_types_accept_exactly_what_the_predicates_do(
    name: str, pred: Callable[[str], bool], kind: Any
) -> None:
    # The types hand the predicates' expressions to pydantic-core's own regex engine: the two must
    # agree on every fixture, both ways, and on the edges.
    adapter: TypeAdapter[str] = TypeAdapter(kind)

    def accepted(value: str) -> bool:
        try:
            adapter.validate_python(value)
        except ValidationError:
            return False
        return True

    strings = lines(f"{name}_syntax_valid.txt") + lines(f"{name}_syntax_invalid.txt") + EDGES
    assert [s for s in strings if accepted(s) != pred(s)] == []
    assert any(pred(s) for s in strings) and not all(pred(s) for s in strings)


def test_a_record_uri_names_its_repo_by_did() -> None:
    did = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
    assert parse_record_uri(f"at://{did}/fm.plyr.track/3trackaaaaaaa") == (did, "fm.plyr.track", "3trackaaaaaaa")
    for bad in (f"at://{did}", f"at://{did}/fm.plyr.track", "at://artist.test/fm.plyr.track/3trackaaaaaaa", "x"):
        assert parse_record_uri(bad) is None, bad
