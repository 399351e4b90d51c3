"""Op inversion on atproto's commit-proof fixtures, on random trees and ops, and on slices that lie."""

from __future__ import annotations

import contextlib
import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.ipld import dagcbor
from ingest.ipld.cid import CID
from ingest.messages import RepoOp
from ingest.verify import mst
from ingest.verify.inversion import InversionError, InversionFailure, invert_ops
from ingest.verify.node_bytes import encode_node, prefix_len
from tests.fixtures.interop import INTEROP_DIR

PROOFS = json.loads((INTEROP_DIR / "firehose" / "commit-proof-fixtures.json").read_text())
EXAMPLE_KEYS = [k for k in (INTEROP_DIR / "mst" / "example_keys.txt").read_text().split("\n") if k]
EMPTY = mst.build({}).root


def _value(n: object) -> CID:
    return CID.for_dag_cbor(dagcbor.encode({"n": str(n)}))


def _create(path: str, cid: CID) -> RepoOp:
    return RepoOp("create", path, cid.raw, None)


def _update(path: str, cid: CID, prev: CID) -> RepoOp:
    return RepoOp("update", path, cid.raw, prev.raw)


def _delete(path: str, prev: CID) -> RepoOp:
    return RepoOp("delete", path, None, prev.raw)


def _fixture(case: dict[str, Any]) -> tuple[mst.MstTree, list[RepoOp], dict[CID, bytes]]:
    """The tree after the fixture's commit, its ops, and exactly the blocks the fixture lists."""
    leaf = CID.decode(case["leafValue"])
    entries = dict.fromkeys(case["keys"], leaf)
    entries.update(dict.fromkeys(case["adds"], leaf))
    for key in case["dels"]:
        del entries[key]
    after = mst.build(entries)
    ops = [_create(k, leaf) for k in case["adds"]] + [_delete(k, leaf) for k in case["dels"]]
    blocks = {CID.decode(c): after.blocks[CID.decode(c)] for c in case["blocksInProof"]}
    return after, ops, blocks


def test_fixture_count() -> None:
    assert len(PROOFS) == 6


@pytest.mark.parametrize("case", PROOFS, ids=[c["comment"] for c in PROOFS])
def test_commit_proof_fixtures(case: dict[str, Any]) -> None:
    after, ops, blocks = _fixture(case)
    assert str(after.root) == case["rootAfterCommit"]
    assert str(invert_ops(after.root, ops, blocks)) == case["rootBeforeCommit"]
    # The op order in the message does not matter.
    assert str(invert_ops(after.root, ops[::-1], blocks)) == case["rootBeforeCommit"]


@pytest.mark.parametrize("case", PROOFS, ids=[c["comment"] for c in PROOFS])
def test_commit_proof_fixtures_missing_a_block(case: dict[str, Any]) -> None:
    after, ops, blocks = _fixture(case)
    with pytest.raises(InversionError) as err:
        invert_ops(after.root, ops, {c: b for c, b in blocks.items() if c != after.root})
    assert err.value.reason is InversionFailure.MISSING_BLOCK
    # Without any one block the inversion either did not need it or says the proof is incomplete.
    missing = 0
    for cid in blocks:
        try:
            root = invert_ops(after.root, ops, {c: b for c, b in blocks.items() if c != cid})
        except InversionError as e:
            assert e.reason is InversionFailure.MISSING_BLOCK
            missing += 1
        else:
            assert str(root) == case["rootBeforeCommit"]
    assert missing >= 1


def _nodes(tree: mst.MstTree) -> list[tuple[bytes, mst.Node]]:
    return [(data, mst.decode_node(data)) for data in tree.blocks.values()]


def _rewrite(node: mst.Node) -> bytes:
    keys = [e.key.encode() for e in node.entries]
    links = [None if node.left is None else node.left.raw] + [
        None if e.right is None else e.right.raw for e in node.entries
    ]
    previous = ["", *(e.key for e in node.entries)]
    pres = [mst.common_prefix_len(a, e.key) for a, e in zip(previous, node.entries, strict=False)]
    return encode_node(keys, [e.value.raw for e in node.entries], links, pres)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40), st.binary(max_size=40))
def testprefix_len(a: bytes, b: bytes) -> None:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    assert prefix_len(a, b) == n


def test_node_writer_is_mstencode_node() -> None:
    trees = [mst.build({k: CID.for_raw(k.encode()) for k in EXAMPLE_KEYS}), mst.build({}), mst.build({"a": _value(1)})]
    for case in PROOFS:
        trees.append(_fixture(case)[0])
    for tree in trees:
        for data, node in _nodes(tree):
            assert _rewrite(node) == data == mst.encode_node(node)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=300), st.binary(max_size=4), max_size=40))
def test_node_writer_on_any_keys(entries: dict[str, bytes]) -> None:
    # Keys of any length (heads past 23 and 255 bytes) and any characters.
    tree = mst.build({k: CID.for_raw(v) for k, v in entries.items()})
    for data, node in _nodes(tree):
        assert _rewrite(node) == data


_KEY = st.builds(
    lambda c, r: f"{c}/{r}",
    st.sampled_from(["fm.plyr.track", "fm.plyr.like", "app.bsky.feed.post"]),
    st.text("234567abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=13),
)


@settings(max_examples=150, deadline=None)
@given(
    before=st.dictionaries(_KEY, st.integers(0, 3), max_size=120),
    writes=st.lists(st.tuples(_KEY, st.integers(0, 7), st.booleans()), max_size=6),
    seed=st.integers(0, 2**32),
)
def test_inversion_on_random_commits(before: dict[str, int], writes: list[tuple[str, int, bool]], seed: int) -> None:
    """Any commit's ops undone on its covering proof give the tree before it, in any op order."""
    old = {k: _value(v) for k, v in before.items()}
    new = dict(old)
    ops: list[RepoOp] = []
    for key, v, remove in writes:
        if any(op.path == key for op in ops):
            continue
        if key in new and remove:
            ops.append(_delete(key, new.pop(key)))
        elif key in new:
            value = _value(f"u{v}")
            ops.append(_update(key, value, new[key]))
            new[key] = value
        else:
            new[key] = _value(v)
            ops.append(_create(key, new[key]))
    after = mst.build(new)
    blocks = {after.root: after.blocks[after.root]}
    for op in ops:
        blocks.update(mst.covering_proof_blocks(after, op.path))
    random.Random(seed).shuffle(ops)
    assert invert_ops(after.root, ops, blocks) == mst.build(old).root


def test_whole_tree_created_and_deleted() -> None:
    entries = {k: _value(k) for k in EXAMPLE_KEYS[:40]}
    tree = mst.build(entries)
    # A repo's first commit: every key created; undone, the empty tree.
    assert invert_ops(tree.root, [_create(k, v) for k, v in entries.items()], tree.blocks) == EMPTY
    # Everything deleted: undone from the empty tree, the full one.
    empty = mst.build({})
    assert invert_ops(EMPTY, [_delete(k, v) for k, v in entries.items()], empty.blocks) == tree.root
    assert invert_ops(tree.root, [], tree.blocks) == tree.root


def _tree_and_blocks(keys: list[str]) -> tuple[mst.MstTree, dict[CID, bytes]]:
    tree = mst.build({k: _value(k) for k in keys})
    blocks: dict[CID, bytes] = {}
    for k in keys:
        blocks.update(mst.covering_proof_blocks(tree, k))
    return tree, blocks


def _reason(root: CID, ops: list[RepoOp], blocks: dict[CID, bytes]) -> InversionFailure:
    with pytest.raises(InversionError) as err:
        invert_ops(root, ops, blocks)
    return err.value.reason


def test_ops_that_contradict_the_tree() -> None:
    keys = EXAMPLE_KEYS[:30]
    tree, blocks = _tree_and_blocks([*keys, "fm.plyr.track/3zzzzzzzzzzzz"])
    present, value = keys[3], _value(keys[3])
    absent = "fm.plyr.track/3aaaaaaaaaaaa"
    for ops in (
        [_create(present, _value("other"))],  # created with another CID than the tree holds
        [_create(absent, _value(1))],  # created, but not in the tree
        [_update(present, _value("other"), value)],  # updated to another CID than the tree holds
        [_update(absent, _value(1), _value(2))],
        [_delete(present, value)],  # deleted, but still in the tree
    ):
        assert _reason(tree.root, ops, blocks) is InversionFailure.OP_MISMATCH, ops


def test_malformed_ops() -> None:
    tree, blocks = _tree_and_blocks(EXAMPLE_KEYS[:10])
    k, v = EXAMPLE_KEYS[0], _value(EXAMPLE_KEYS[0])
    for ops in (
        [RepoOp("upsert", k, v.raw, None)],
        [RepoOp("create", k, v.raw, v.raw)],  # a create has no prev
        [RepoOp("create", k, None, None)],
        [RepoOp("delete", k, v.raw, v.raw)],  # a delete has no cid
        [RepoOp("delete", k, None, None)],  # a legacy delete without prev cannot be undone
        [RepoOp("update", k, v.raw, None)],  # nor a legacy update
        [RepoOp("create", k, b"\x01\x71\x12", None)],  # not a CID
        [RepoOp("create", "", v.raw, None)],
        [RepoOp("create", "a/\ud800", v.raw, None)],  # not UTF-8
        [_create(k, v), _delete(k, v)],  # one path twice
    ):
        assert _reason(tree.root, ops, blocks) is InversionFailure.INVALID_OP, ops


def _store(blocks: dict[CID, bytes], data: bytes) -> CID:
    cid = CID.for_dag_cbor(data)
    blocks[cid] = data
    return cid


def test_malformed_nodes() -> None:
    leaf = _value("leaf")
    key = b"fm.plyr.track/3aaaaaaaaaaaa"
    op = [_create(key.decode(), leaf)]

    def node(**entry: Any) -> dict[str, Any]:
        return {"l": None, "e": [{"p": 0, "k": key, "v": leaf, "t": None, **entry}]}

    cases: list[bytes] = [
        dagcbor.encode(node(v=leaf.raw)),  # the value link as a byte string
        dagcbor.encode(node(k=key.decode())),  # the key as a text string
        dagcbor.encode(node(p=True)),
        dagcbor.encode(node(p=None)),
        dagcbor.encode(node(p=-1)),
        dagcbor.encode(node(p=2**40)),
        dagcbor.encode({"l": None, "e": [{"p": 0, "k": key, "v": leaf}]}),  # no t
        dagcbor.encode({"l": None, "e": [], "x": 1}),
        dagcbor.encode([1, 2]),
        dagcbor.encode({"l": None, "e": "nope"}),
        b"\xa2\x61e\x80\x61l",  # truncated
        b"not cbor at all",
        # Two keys, the second not compressed as far as it could be.
        dagcbor.encode(
            {
                "l": None,
                "e": [{"p": 0, "k": key, "v": leaf, "t": None}, {"p": 3, "k": key[3:-1] + b"b", "v": leaf, "t": None}],
            }
        ),
        # Keys out of order.
        dagcbor.encode(
            {"l": None, "e": [{"p": 0, "k": key, "v": leaf, "t": None}, {"p": 0, "k": b"a", "v": leaf, "t": None}]}
        ),
        dagcbor.encode(node(k=b"\xff\xfe")),  # not UTF-8
    ]
    for data in cases:
        blocks: dict[CID, bytes] = {}
        root = _store(blocks, data)
        assert _reason(root, op, blocks) is InversionFailure.MALFORMED_NODE, data
    # A block that does not hash to its link.
    good = mst.build({key.decode(): leaf})
    assert _reason(good.root, op, {good.root: good.blocks[good.root] + b"\x00"}) is InversionFailure.MALFORMED_NODE
    # A root with no entries of its own: a tree that was not trimmed.
    blocks = dict(good.blocks)
    untrimmed = _store(blocks, mst.encode_node(mst.Node(good.root, ())))
    assert _reason(untrimmed, op, blocks) is InversionFailure.MALFORMED_NODE
    # A node that is not CBOR of a dag-cbor CID at all.
    raw = CID.for_raw(good.blocks[good.root])
    assert _reason(raw, op, {raw: good.blocks[good.root]}) is InversionFailure.MALFORMED_NODE


def test_a_node_whose_value_is_not_a_link_is_refused_when_an_update_reads_it() -> None:
    # An update's inversion reads the value it replaces before the node is checked. The compiled
    # fuzz run once got a TypeError there instead of this refusal (a null value in a rewritten slice);
    # values are now tested as the node is decoded, and this holds the refusal for each kind of value.
    leaf, other = _value("leaf"), _value("other")
    key = b"fm.plyr.track/3aaaaaaaaaaaa"
    for value in (None, 7, "text"):
        blocks: dict[CID, bytes] = {}
        root = _store(blocks, dagcbor.encode({"l": None, "e": [{"p": 0, "k": key, "v": value, "t": None}]}))
        assert _reason(root, [_update(key.decode(), other, leaf)], blocks) is InversionFailure.MALFORMED_NODE


def test_value_equal_to_a_child_link_is_rewritten_not_spliced() -> None:
    # A node whose child changed keeps its bytes with the child's link swapped in place, unless that
    # link also appears as a value of the node: then it is written afresh, and the root still matches.
    entries = {k: _value(k) for k in EXAMPLE_KEYS[:80]}
    for n in range(1000):
        new_key = f"fm.plyr.track/3new{n:09d}"
        after = mst.build({**entries, new_key: _value(new_key)})
        path = list(mst.proof_blocks(after, new_key))
        root = mst.decode_node(after.blocks[path[0]])
        if len(path) >= 3 and new_key not in {e.key for e in root.entries}:
            break
    child = path[1]
    # Give a key of the root node the child's CID as its value; nothing below the root changes.
    entries[root.entries[0].key] = child
    before = mst.build(entries)
    after = mst.build({**entries, new_key: _value(new_key)})
    assert mst.decode_node(after.blocks[after.root]).entries[0].value == child
    assert child in after.blocks
    blocks = mst.covering_proof_blocks(after, new_key)
    assert invert_ops(after.root, [_create(new_key, _value(new_key))], blocks) == before.root


def _key_of_height(height: int, prefix: str) -> bytes:
    for i in range(100_000):
        key = f"{prefix}{i:06d}"
        if mst.key_height(key) == height:
            return key.encode()
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    "defect",
    [
        {"v": "bytes"},  # the value link stored as a byte string
        {"p": "non-minimal"},  # a prefix length written in two bytes
    ],
    ids=["link_as_bytes", "non_minimal_head"],
)
def test_a_malformed_node_below_the_root_is_refused_where_it_is_rewritten(defect: dict[str, str]) -> None:
    leaf = _value("leaf")
    high = _key_of_height(1, "fm.plyr.track/b")
    low = _key_of_height(0, "fm.plyr.track/a")
    blocks: dict[CID, bytes] = {}
    entry: dict[str, Any] = {"p": 0, "k": low, "v": leaf.raw if defect.get("v") else leaf, "t": None}
    child = dagcbor.encode({"l": None, "e": [entry]})
    if defect.get("p"):
        # {"p": 0} written as 0x18 0x00 instead of 0x00: not DAG-CBOR the strict codec accepts.
        child = child.replace(b"\x61p\x00", b"\x61p\x18\x00")
    child_cid = _store(blocks, child)
    root = _store(blocks, dagcbor.encode({"l": child_cid, "e": [{"p": 0, "k": high, "v": leaf, "t": None}]}))
    # Removing the low key rewrites the child node, which must then be canonical.
    assert _reason(root, [_create(low.decode(), leaf)], blocks) is InversionFailure.MALFORMED_NODE


_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20)
    | st.just(EMPTY),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["e", "l", "k", "p", "t", "v"]), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_VALUES, st.sampled_from(["create", "update", "delete"]))
def test_any_block_as_a_node_is_refused_not_crashed_on(value: Any, action: str) -> None:
    blocks: dict[CID, bytes] = {}
    root = _store(blocks, dagcbor.encode(value))
    v = _value(1).raw
    op = RepoOp(
        action, "fm.plyr.track/3aaaaaaaaaaaa", None if action == "delete" else v, v if action != "create" else None
    )
    with contextlib.suppress(InversionError):
        invert_ops(root, [op], blocks)


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_a_node_nested_too_deep_for_the_decoder_is_a_malformed_node(depth: int) -> None:
    # A hostile repo can sign a root (or link a subtree) whose block nests thousands of lists deep:
    # libipld refuses it with a RecursionError, which used to escape invert_ops.
    blocks: dict[CID, bytes] = {}
    root = _store(blocks, b"\xa2\x61e\x80\x61l" + b"\x81" * depth + b"\xf6")
    with pytest.raises(InversionError) as err:
        invert_ops(root, [_create("fm.plyr.track/3aaaaaaaaaaaa", _value(1))], blocks)
    assert err.value.reason is InversionFailure.MALFORMED_NODE


def test_a_subtree_link_that_is_not_a_cid_is_refused_with_its_reason() -> None:
    # A node the inversion only passes through is not held to the canonical form, so its subtree
    # link can be a byte string that is no CID at all; naming it in the error used to raise CIDError.
    keys = {f"fm.plyr.track/3k{i:011d}": _value(i) for i in range(200)}
    tree = mst.build(keys)
    root = dagcbor.decode(tree.blocks[tree.root])
    child = dagcbor.decode(tree.blocks[root["l"]])
    assert child["l"] is not None  # the first key sits below the child's left link
    blocks = dict(tree.blocks)
    root["l"] = _store(blocks, dagcbor.encode({**child, "l": b"\x01"}))
    new_root = _store(blocks, dagcbor.encode(root))
    first = min(keys)
    with pytest.raises(InversionError) as err:
        invert_ops(new_root, [_create(first, keys[first])], blocks)
    assert err.value.reason is InversionFailure.MISSING_BLOCK


def test_prefix_lengths_are_held_to_the_key_before_where_a_node_is_rewritten() -> None:
    # A prefix length past the key before (or a first key's non-zero one) is in canonical byte form:
    # node_bytes.read_node gives no verdict on it, and on the general road writing it back differs
    # (key[p:] is not the suffix read), so the node is refused there, as mst.decode_node refuses it.
    leaf = _value("leaf")
    first, second = _key_of_height(0, "fm.plyr.track/a"), _key_of_height(0, "fm.plyr.track/b")
    good = mst.build({first.decode(): leaf, second.decode(): leaf})
    assert [e.key for e in mst.decode_node(good.blocks[good.root]).entries] == [first.decode(), second.decode()]
    assert (
        invert_ops(good.root, [_create(second.decode(), leaf)], good.blocks) == mst.build({first.decode(): leaf}).root
    )
    cases = [
        [{"p": 3, "k": first, "v": leaf, "t": None}],
        [{"p": 0, "k": first, "v": leaf, "t": None}, {"p": len(first) + 2, "k": b"b", "v": leaf, "t": None}],
    ]
    for entries in cases:
        blocks: dict[CID, bytes] = {}
        root = _store(blocks, dagcbor.encode({"l": None, "e": entries}))
        with pytest.raises(mst.MstError):
            mst.decode_node(blocks[root])
        assert _reason(root, [_create(first.decode(), leaf)], blocks) is InversionFailure.MALFORMED_NODE
