"""The MST against atproto's interop fixtures (heights, prefixes, commit proofs) and malformed trees."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import count
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.ipld import dagcbor
from ingest.ipld.cid import CID
from ingest.verify import mst
from tests.fixtures.interop import INTEROP_DIR

MST_DIR = INTEROP_DIR / "mst"
PROOFS = json.loads((INTEROP_DIR / "firehose" / "commit-proof-fixtures.json").read_text())
EXAMPLE_KEYS = [k for k in (MST_DIR / "example_keys.txt").read_text().split("\n") if k]
EMPTY_ROOT = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
LEAF = CID.for_dag_cbor(dagcbor.encode({"$type": "fm.plyr.track", "title": "t"}))


def _keys_of_height(height: int, n: int, prefix: str = "fm.plyr.track/") -> list[str]:
    found: list[str] = []
    for i in count():
        key = f"{prefix}{i:06d}"
        if mst.key_height(key) == height:
            found.append(key)
            if len(found) == n:
                return found
    raise AssertionError("unreachable")


def _store(blocks: dict[CID, bytes], value: Any) -> CID:
    data = dagcbor.encode(value)
    cid = CID.for_dag_cbor(data)
    blocks[cid] = data
    return cid


def _entry(p: int, k: bytes, t: CID | None = None) -> dict[str, Any]:
    return {"p": p, "k": k, "v": LEAF, "t": t}


def test_key_heights() -> None:
    cases = json.loads((MST_DIR / "key_heights.json").read_text())
    assert len(cases) == 9
    for case in cases:
        assert mst.key_height(case["key"]) == case["height"], case


def test_common_prefix() -> None:
    cases = json.loads((MST_DIR / "common_prefix.json").read_text())
    assert len(cases) == 13
    for case in cases:
        assert mst.common_prefix_len(case["left"], case["right"]) == case["len"], case
    assert mst.common_prefix_len("é", "è") == 1  # bytes, not characters: both start with 0xc3


@pytest.mark.parametrize("case", PROOFS, ids=[c["comment"] for c in PROOFS])
def test_commit_proof_fixtures(case: dict[str, Any]) -> None:
    leaf = CID.decode(case["leafValue"])
    entries = dict.fromkeys(case["keys"], leaf)
    before = mst.build(entries)
    assert str(before.root) == case["rootBeforeCommit"]
    assert list(mst.walk(before.root, before.blocks)) == sorted(entries.items())
    for key in case["adds"]:
        entries[key] = leaf
    for key in case["dels"]:
        del entries[key]
    after = mst.build(entries)
    assert str(after.root) == case["rootAfterCommit"]
    assert list(mst.walk(after.root, after.blocks)) == sorted(entries.items())
    ops = case["adds"] + case["dels"]
    covering: dict[CID, bytes] = {}
    for key in ops:
        path = mst.proof_blocks(after, key)
        assert next(iter(path)) == after.root
        cover = mst.covering_proof_blocks(after, key)
        assert path.items() <= cover.items()
        covering.update(cover)
    assert sorted(str(c) for c in covering) == sorted(case["blocksInProof"])


def test_example_keys_and_build_order_independence() -> None:
    assert len(EXAMPLE_KEYS) == 156
    entries = {k: CID.for_raw(k.encode()) for k in EXAMPLE_KEYS}
    tree = mst.build(entries)
    assert list(mst.walk(tree.root, tree.blocks)) == sorted(entries.items())
    assert mst.build(dict(reversed(entries.items()))) == tree
    reachable = set()
    for key in EXAMPLE_KEYS:
        reachable |= set(mst.proof_blocks(tree, key))
    assert reachable == set(tree.blocks)  # every block is on some key's path, and no stray ones


def test_empty_tree() -> None:
    empty = mst.build({})
    assert str(empty.root) == EMPTY_ROOT and list(empty.blocks) == [empty.root]
    assert list(mst.walk(empty.root, empty.blocks)) == []
    assert mst.proof_blocks(empty, "a/b") == empty.blocks == mst.covering_proof_blocks(empty, "a/b")


def test_single_key_tree_and_values_matter() -> None:
    one = mst.build({"fm.plyr.track/a": LEAF})
    assert list(mst.walk(one.root, one.blocks)) == [("fm.plyr.track/a", LEAF)]
    assert mst.build({"fm.plyr.track/a": CID.for_raw(b"other")}).root != one.root


def test_proofs_reach_the_key_and_are_not_the_tree() -> None:
    keys = [f"fm.plyr.track/3k{i:011d}" for i in range(300)]
    tree = mst.build(dict.fromkeys(keys, LEAF))
    path = mst.proof_blocks(tree, keys[123])
    assert tree.root in path and len(path) < len(tree.blocks)
    holders = [cid for cid in path if keys[123] in [e.key for e in mst.decode_node(path[cid]).entries]]
    assert holders == [list(path)[-1]]  # the path ends at the node holding the key
    with pytest.raises(mst.MstError):
        list(mst.walk(tree.root, path))  # a proof is not the whole tree
    absent = mst.proof_blocks(tree, "fm.plyr.track/3k00000000123x")
    assert tree.root in absent
    with pytest.raises(mst.MstError):
        mst.proof_blocks(mst.MstTree(tree.root, {}), keys[0])


def test_node_codec_round_trip() -> None:
    a, b, c = "fm.plyr.track/aaa", "fm.plyr.track/aab", "fm.plyr.zzz/1"
    node = mst.Node(None, (mst.Entry(a, LEAF, None), mst.Entry(b, LEAF, LEAF), mst.Entry(c, LEAF, None)))
    data = mst.encode_node(node)
    assert mst.decode_node(data) == node
    raw = dagcbor.decode(data)
    assert [(e["p"], e["k"]) for e in raw["e"]] == [(0, a.encode()), (16, b"b"), (8, b"zzz/1")]


def _raw(blocks: dict[CID, bytes], data: bytes) -> CID:
    cid = CID.for_dag_cbor(data)
    blocks[cid] = data
    return cid


def _node(blocks: dict[CID, bytes], left: CID | None, *entries: str | tuple[str, CID]) -> CID:
    """Store a node with maximal prefix compression but whatever order/heights the test asks for."""
    items = tuple(mst.Entry(e, LEAF, None) if isinstance(e, str) else mst.Entry(e[0], LEAF, e[1]) for e in entries)
    return _raw(blocks, mst.encode_node(mst.Node(left, items)))


def _forged(blocks: dict[CID, bytes], cid: CID) -> CID:
    """Swap the block of ``cid`` for another valid node that does not hash to it."""
    blocks[cid] = mst.encode_node(mst.Node(None, ()))
    return cid


def _bad_trees() -> list[tuple[str, str, dict[CID, bytes], CID]]:
    h0 = _keys_of_height(0, 2)
    h1 = _keys_of_height(1, 1)
    h2 = _keys_of_height(2, 1)
    early = _keys_of_height(0, 1, prefix="a/")[0]  # sorts before every "fm..." key
    a, b = h0[0].encode(), h0[1].encode()
    # (case, the fragment of the MstError message that says it failed for the intended reason, tree)
    makers: list[tuple[str, str, Callable[[dict[CID, bytes]], CID]]] = [
        ("not cbor", "node is not DAG-CBOR", lambda bl: _raw(bl, b"\xff")),
        ("not a map", "node must be exactly", lambda bl: _store(bl, [1])),
        ("extra node key", "node must be exactly", lambda bl: _store(bl, {"l": None, "e": [], "x": 1})),
        (
            "entry without t",
            "entry must be exactly",
            lambda bl: _store(bl, {"l": None, "e": [{"p": 0, "k": a, "v": LEAF}]}),
        ),
        ("l not a link", "l must be a link", lambda bl: _store(bl, {"l": b"x", "e": []})),
        (
            "v not a link",
            "entry p, k, v must be",
            lambda bl: _store(bl, {"l": None, "e": [{"p": 0, "k": a, "v": "x", "t": None}]}),
        ),
        ("key not utf8", "key is not UTF-8", lambda bl: _store(bl, {"l": None, "e": [_entry(0, b"\xff")]})),
        ("prefix too long", "prefix length beyond", lambda bl: _store(bl, {"l": None, "e": [_entry(1, a)]})),
        (
            "prefix not maximal",
            "prefix compression is not maximal",
            lambda bl: _store(bl, {"l": None, "e": [_entry(0, a), _entry(0, b)]}),
        ),
        ("keys out of order", "out of order", lambda bl: _node(bl, None, h0[1], h0[0])),
        ("duplicate key", "out of order", lambda bl: _node(bl, None, h0[0], h0[0])),
        ("mixed heights in a node", "is not of height", lambda bl: _node(bl, None, *sorted([h0[0], h1[0]]))),
        ("root not trimmed", "not trimmed", lambda bl: _node(bl, _node(bl, None, h0[0]))),
        ("empty inner node", "empty node", lambda bl: _node(bl, _node(bl, None), h1[0])),
        ("subtree below layer 0", "below layer 0", lambda bl: _node(bl, _node(bl, None, early), h0[0])),
        ("skipped layer", "is not of height", lambda bl: _node(bl, _node(bl, None, early), h2[0])),
        (
            "subtree keys outside their gap",
            "out of order",
            lambda bl: _node(bl, None, (h1[0], _node(bl, None, early))),
        ),
        ("missing subtree", "missing node", lambda bl: _node(bl, CID.for_raw(b"gone"), h1[0])),
        ("forged node", "does not hash", lambda bl: _forged(bl, _node(bl, None, h0[0]))),
    ]
    cases = []
    for name, fragment, make in makers:
        blocks: dict[CID, bytes] = {}
        cases.append((name, fragment, blocks, make(blocks)))
    return cases


BAD_TREES = _bad_trees()


@pytest.mark.parametrize(("name", "fragment", "blocks", "root"), BAD_TREES, ids=[c[0] for c in BAD_TREES])
def test_walk_refuses(name: str, fragment: str, blocks: dict[CID, bytes], root: CID) -> None:
    with pytest.raises(mst.MstError, match=re.escape(fragment)):
        list(mst.walk(root, blocks))


def test_walk_refuses_a_missing_root() -> None:
    with pytest.raises(mst.MstError):
        list(mst.walk(CID.for_raw(b"nothing"), {}))


KEYS = st.text(alphabet="abcdefgh/0123456789.", min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(KEYS, st.binary(max_size=4).map(CID.for_raw), max_size=60), st.randoms())
def test_build_walk_round_trip(entries: dict[str, CID], rnd: Any) -> None:
    tree = mst.build(entries)
    assert list(mst.walk(tree.root, tree.blocks)) == sorted(entries.items())
    shuffled = list(entries.items())
    rnd.shuffle(shuffled)
    assert mst.build(dict(shuffled)).root == tree.root
    for key in list(entries)[:3]:
        rest = {k: v for k, v in entries.items() if k != key}
        assert mst.build({**rest, key: entries[key]}).root == tree.root
