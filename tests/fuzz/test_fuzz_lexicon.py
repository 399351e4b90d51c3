"""Fuzz the lexicon validator (lexicons/validate.py): fm.plyr.* records, atproto's interop lexicon
catalog (every lexicon type), and the query outputs of the index's own lexicons.

Seeds are valid records; each input changes them structurally (a value anywhere replaced by any
JSON-ish value, including NaN, integers past int64, lone surrogates and nesting thousands deep; a key
dropped; a ``$type`` swapped). Allowed outcomes: ``Valid`` or ``Invalid`` with a reason and a path;
nothing raises, LexiconError included (the catalogs are not broken).
"""

from __future__ import annotations

import copy
import json
import random
from functools import cache
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lexicons.validate import Catalog, Invalid, Valid, validate_record, validate_value
from tests.fixtures import events as ev
from tests.fixtures.interop import INTEROP_DIR
from tests.fuzz.harness import attempt, fuzz
from tests.fuzz.strategies import JSON, deep_json

pytestmark = pytest.mark.fuzz

PLYR = Catalog.builtin()
CID = "bafyreie5cvv4h45feadgeuwhbcutmh6t2ceseocckahdoe6uat64zmz454"
URI = "at://did:plc:abc/fm.plyr.track/3kabc2xyz22a2"
BLOB = {"$type": "blob", "ref": {"$link": CID}, "mimeType": "audio/mpeg", "size": 10}


@cache
def _interop() -> tuple[Catalog, tuple[Any, ...]]:
    lex = INTEROP_DIR / "lexicon"
    valid = json.loads((lex / "record-data-valid.json").read_text())
    return Catalog.from_dir(lex / "catalog"), tuple(case["data"] for case in valid)


def _plyr_records() -> list[tuple[str, dict[str, Any]]]:
    track = ev.track(
        "T",
        audioBlob=BLOB,
        imageUrl="https://cdn.example/i.png",
        duration=3,
        album="A",
        features=[{"did": "did:plc:abc"}],
        labels={"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "nsfw"}]},
    )
    return [
        ("fm.plyr.track", track),
        ("fm.plyr.like", ev.like(URI, CID)),
        ("fm.plyr.comment", ev.comment(URI, CID, "nice", 1000)),
        ("fm.plyr.list", ev.playlist("Mix", [(URI, CID), (URI, CID)])),
        (
            "fm.plyr.actor.profile",
            {"$type": "fm.plyr.actor.profile", "bio": "hi", "createdAt": "2026-01-01T00:00:00Z"},
        ),
    ]


def _spots(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _spots(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _spots(v, (*path, i))
    return out


def _lie(record: Any, rng: random.Random, replacement: Any) -> Any:
    """``record`` with one structural change at a random place."""
    record = copy.deepcopy(record)
    spot = rng.choice(_spots(record))
    if not spot:
        return replacement
    parent = record
    for step in spot[:-1]:
        parent = parent[step]
    roll = rng.random()
    if roll < 0.6:
        parent[spot[-1]] = replacement
    elif roll < 0.75 and isinstance(parent, dict):
        del parent[spot[-1]]
    elif roll < 0.85:
        parent[spot[-1]] = deep_json(rng.choice((31, 32, 33, 100, 5_000)), parent[spot[-1]], as_list=rng.random() < 0.5)
    elif isinstance(parent, dict):
        parent["$type"] = rng.choice(("blob", "fm.plyr.track", "com.atproto.label.defs#selfLabels", "#x", "", 1))
    return record


def _validate(catalog: Catalog, collection: str, record: Any) -> None:
    out = attempt("lexicon.validate_record", (), validate_record, catalog, collection, record)
    assert isinstance(out, Valid) or (isinstance(out, Invalid) and out.reason and out.path.startswith("$"))


def test_seed_records_are_valid() -> None:
    for collection, record in _plyr_records():
        assert validate_record(PLYR, collection, record) == Valid(), collection


@fuzz(500)
@given(st.integers(0, 2**32), JSON)
def test_plyr_records_with_a_lie(seed: int, replacement: Any) -> None:
    rng = random.Random(seed)
    collection, record = rng.choice(_plyr_records())
    _validate(
        PLYR,
        rng.choice((collection, collection, collection, "fm.plyr.like", "fm.plyr.unknown")),
        _lie(record, rng, replacement),
    )


@fuzz(300)
@given(st.integers(0, 2**32), JSON)
def test_interop_records_with_a_lie(seed: int, replacement: Any) -> None:
    rng = random.Random(seed)
    catalog, records = _interop()
    _validate(catalog, "example.lexicon.record", _lie(rng.choice(records), rng, replacement))


@fuzz(200)
@given(st.sampled_from(sorted(PLYR.documents)), JSON)
def test_any_value_against_any_main_def(nsid: str, value: Any) -> None:
    main = PLYR.documents[nsid]["defs"].get("main", {})
    schema = main.get("output", {}).get("schema", main) if main.get("type") == "query" else main
    if main.get("type") == "record":
        _validate(PLYR, nsid, value)
    if schema.get("type") in ("object", "ref", "union", "record"):
        out = attempt("lexicon.validate_value", (), validate_value, PLYR, schema, value, nsid)
        assert isinstance(out, Valid | Invalid)
