"""Lexicon documents themselves: the interop fixtures' valid and invalid lexicons, then every lexicon
this project ships (records and the index's own queries)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lexicons.schema import check_lexicon, def_names
from lexicons.validate import Catalog
from tests.fixtures.interop import INTEROP_DIR


def _fixtures(name: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((INTEROP_DIR / "lexicon" / name).read_text())
    return cases


@pytest.mark.parametrize("case", _fixtures("lexicon-valid.json"), ids=lambda c: c["name"])
def test_interop_valid_lexicons_pass(case: dict[str, Any]) -> None:
    assert check_lexicon(case["lexicon"]) == []


@pytest.mark.parametrize("case", _fixtures("lexicon-invalid.json"), ids=lambda c: c["name"])
def test_interop_invalid_lexicons_fail(case: dict[str, Any]) -> None:
    assert check_lexicon(case["lexicon"]) != []


CATALOG = Catalog.builtin()


@pytest.mark.parametrize("nsid", sorted(CATALOG.documents))
def test_every_shipped_lexicon_is_well_formed_and_its_refs_resolve(nsid: str) -> None:
    assert check_lexicon(CATALOG.documents[nsid], def_names(CATALOG.documents)) == []


def test_a_dangling_ref_is_reported() -> None:
    doc = {
        "lexicon": 1,
        "id": "fm.plyr.index.broken",
        "defs": {
            "main": {
                "type": "query",
                "output": {"encoding": "application/json", "schema": {"type": "ref", "ref": "#nope"}},
            }
        },
    }
    assert check_lexicon(doc, def_names(CATALOG.documents)) == [
        "fm.plyr.index.broken#main.output: ref '#nope' does not resolve"
    ]


def test_the_index_namespace_has_its_queries() -> None:
    queries = {n for n, d in CATALOG.documents.items() if d["defs"].get("main", {}).get("type") == "query"}
    assert {"fm.plyr.index.getLatestTracks", "fm.plyr.index.search", "fm.plyr.index.getList"} <= queries
