"""The atproto Merkle Search Tree (atproto.com/specs/repository#mst-structure).

Owns building, proving and walking the MST that maps repo paths to record CIDs. A key's
height is the number of leading zero bits of sha256(key) divided by two (fanout 4). A node at layer L
holds the keys of height L in order; the keys between two of them (all lower) live in the subtree
linked from the left one's ``t`` (or from the node's ``l`` before the first entry), which is a node at
layer L-1, possibly one with no entries of its own. Keys are compressed against the previous entry of
the same node (``p`` shared bytes, then the rest ``k``). Nodes are DAG-CBOR
``{"l": CID|None, "e": [{"p": int, "k": bytes, "v": CID, "t": CID|None}]}``.

Invariants: the tree is a function of the key/value set alone, so :func:`build` gives the same root as
any history of inserts and deletes; :func:`walk` accepts only that canonical shape (heights match
layers, every layer present, keys strictly increasing, maximal prefix compression, root trimmed), so a
root CID vouches for exactly one key set; every node read is checked against its CID, since blocks
usually come from an unverified CAR. Every refusal is an :class:`MstError`.

Proofs: :func:`proof_blocks` is the bare root-to-key path; :func:`covering_proof_blocks` adds the
neighbouring subtree edges that inverting an op needs, which is what a Sync 1.1 commit's CAR slice
carries (atproto.com/specs/sync, and ``blocksInProof`` in the interop commit-proof fixtures).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ingest.ipld import dagcbor
from ingest.ipld.cid import CID


class MstError(ValueError):
    """A node is missing or malformed, or the tree is not in its canonical shape."""


def _height(raw_key: bytes) -> int:
    digest = int.from_bytes(hashlib.sha256(raw_key).digest(), "big")
    return (256 - digest.bit_length()) // 2


def key_height(key: str) -> int:
    """The layer of ``key``: leading zero bits of sha256(key), counted in 2-bit pairs."""
    return _height(key.encode("utf-8"))


def _prefix_len(a: bytes, b: bytes) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def common_prefix_len(a: str, b: str) -> int:
    """How many leading UTF-8 bytes two keys share."""
    return _prefix_len(a.encode("utf-8"), b.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class Entry:
    """One key of a node, its value, and the subtree of the keys between it and the next entry."""

    key: str
    value: CID
    right: CID | None


@dataclass(frozen=True, slots=True)
class Node:
    """A decoded node: the subtree before the first entry, then the entries in key order."""

    left: CID | None
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class MstTree:
    """A built tree: its root and every node block by CID."""

    root: CID
    blocks: dict[CID, bytes]


def encode_node(node: Node) -> bytes:
    """The DAG-CBOR block of a node, with maximal key prefix compression."""
    entries: list[dict[str, Any]] = []
    previous = b""
    for entry in node.entries:
        raw_key = entry.key.encode("utf-8")
        p = _prefix_len(previous, raw_key)
        entries.append({"p": p, "k": raw_key[p:], "v": entry.value, "t": entry.right})
        previous = raw_key
    return dagcbor.encode({"l": node.left, "e": entries})


def decode_node(data: bytes) -> Node:
    """Parse a node block; MstError if it is not exactly a node."""
    try:
        raw = dagcbor.decode(data)
    except dagcbor.DagCborError as err:
        raise MstError(f"node is not DAG-CBOR: {err}") from err
    if type(raw) is not dict or raw.keys() != {"l", "e"} or type(raw["e"]) is not list:
        raise MstError("node must be exactly {l, e} with e a list")
    left = raw["l"]
    if left is not None and type(left) is not CID:
        raise MstError("l must be a link or null")
    entries: list[Entry] = []
    previous = b""
    for e in raw["e"]:
        if type(e) is not dict or e.keys() != {"p", "k", "v", "t"}:
            raise MstError("entry must be exactly {p, k, v, t}")
        p, k, v, t = e["p"], e["k"], e["v"], e["t"]
        if type(p) is not int or type(k) is not bytes or type(v) is not CID:
            raise MstError("entry p, k, v must be int, bytes, link")
        if t is not None and type(t) is not CID:
            raise MstError("t must be a link or null")
        if not 0 <= p <= len(previous):
            raise MstError("prefix length beyond the previous key")
        if p < len(previous) and k and k[0] == previous[p]:
            raise MstError("prefix compression is not maximal")
        full = previous[:p] + k
        try:
            key = full.decode("utf-8")
        except UnicodeDecodeError as err:
            raise MstError("key is not UTF-8") from err
        entries.append(Entry(key, v, t))
        previous = full
    return Node(left, tuple(entries))


def _build_layer(items: list[tuple[bytes, int, str, CID]], layer: int, blocks: dict[CID, bytes]) -> CID:
    """Store the node at ``layer`` holding ``items`` (sorted, all of height <= layer); its CID."""
    left: CID | None = None
    entries: list[Entry] = []
    below: list[tuple[bytes, int, str, CID]] = []

    def close_gap() -> None:
        # The keys collected since the last entry of this layer become the subtree on its right.
        nonlocal left
        sub = _build_layer(below, layer - 1, blocks) if below else None
        below.clear()
        if entries:
            last = entries[-1]
            entries[-1] = Entry(last.key, last.value, sub)
        else:
            left = sub

    for item in items:
        if item[1] == layer:
            close_gap()
            entries.append(Entry(item[2], item[3], None))
        else:
            below.append(item)
    close_gap()
    data = encode_node(Node(left, tuple(entries)))
    cid = CID.for_dag_cbor(data)
    blocks[cid] = data
    return cid


def build(entries: Mapping[str, CID]) -> MstTree:
    """The MST holding exactly ``entries``."""
    items: list[tuple[bytes, int, str, CID]] = []
    for key, value in entries.items():
        try:
            raw_key = key.encode("utf-8")
        except UnicodeEncodeError as err:
            raise MstError(f"key {key!r} is not valid UTF-8") from err
        items.append((raw_key, _height(raw_key), key, value))
    items.sort(key=lambda item: item[0])
    blocks: dict[CID, bytes] = {}
    if not items:
        data = encode_node(Node(None, ()))
        root = CID.for_dag_cbor(data)
        return MstTree(root, {root: data})
    root = _build_layer(items, max(item[1] for item in items), blocks)
    return MstTree(root, blocks)


def _path(tree: MstTree, key: str, out: dict[CID, bytes]) -> tuple[Node, int] | None:
    """Add the nodes from the root down to ``key`` to ``out``; (node, entry index) if ``key`` is present."""
    cid: CID | None = tree.root
    while cid is not None:
        node = decode_node(_block(tree.blocks, cid))
        out[cid] = tree.blocks[cid]
        nxt = node.left
        for i, entry in enumerate(node.entries):
            if entry.key == key:
                return node, i
            if entry.key > key:
                break
            nxt = entry.right
        cid = nxt
    return None


def _spine(blocks: Mapping[CID, bytes], cid: CID | None, out: dict[CID, bytes], *, rightmost: bool) -> None:
    while cid is not None:
        node = decode_node(_block(blocks, cid))
        out[cid] = blocks[cid]
        # The rightmost child is the last entry's subtree, or ``l`` in a node with no entries.
        cid = node.entries[-1].right if rightmost and node.entries else node.left


def _block(blocks: Mapping[CID, bytes], cid: CID) -> bytes:
    data = blocks.get(cid)
    if data is None:
        raise MstError(f"missing node {cid}")
    # Blocks usually come straight from an unverified CAR; checking here is what lets a root CID vouch
    # for the walk, and it also rules out cycles.
    if not cid.matches(data):
        raise MstError(f"node does not hash to {cid}")
    return data


def proof_blocks(tree: MstTree, key: str) -> dict[CID, bytes]:
    """The node blocks on the path from the root down to where ``key`` is or would be."""
    out: dict[CID, bytes] = {}
    _path(tree, key, out)
    return out


def covering_proof_blocks(tree: MstTree, key: str) -> dict[CID, bytes]:
    """The blocks a Sync 1.1 commit carries for an op on ``key``: enough to invert it.

    That is the path to ``key`` and, if ``key`` is in the tree, the inner edges of its two neighbouring
    subtrees (the rightmost spine on its left, the leftmost spine on its right), which removing the key
    merges. This reproduces ``blocksInProof`` of the interop commit-proof fixtures.
    """
    out: dict[CID, bytes] = {}
    found = _path(tree, key, out)
    if found is not None:
        node, i = found
        before = node.entries[i - 1].right if i else node.left
        _spine(tree.blocks, before, out, rightmost=True)
        _spine(tree.blocks, node.entries[i].right, out, rightmost=False)
    return out


def _visit(cid: CID, layer: int, blocks: Mapping[CID, bytes], last: list[str]) -> Iterator[tuple[str, CID]]:
    """The entries under the non-root node ``cid``, which must sit at ``layer``."""
    if layer < 0:
        raise MstError(f"subtree {cid} below layer 0")
    node = decode_node(_block(blocks, cid))
    if not node.entries and node.left is None:
        raise MstError(f"empty node {cid} inside the tree")
    yield from _entries(node, layer, blocks, last)


def _entries(node: Node, layer: int, blocks: Mapping[CID, bytes], last: list[str]) -> Iterator[tuple[str, CID]]:
    if node.left is not None:
        yield from _visit(node.left, layer - 1, blocks, last)
    for entry in node.entries:
        if key_height(entry.key) != layer:
            raise MstError(f"key {entry.key!r} is not of height {layer}")
        # One running "last key" for the whole walk also proves each subtree sits between its keys.
        if last and entry.key <= last[0]:
            raise MstError(f"key {entry.key!r} out of order")
        last[:] = [entry.key]
        yield entry.key, entry.value
        if entry.right is not None:
            yield from _visit(entry.right, layer - 1, blocks, last)


def walk(root: CID, blocks: Mapping[CID, bytes]) -> Iterator[tuple[str, CID]]:
    """Every (key, value) under ``root``, in key order; MstError on a missing or malformed node."""
    node = decode_node(_block(blocks, root))
    if not node.entries:
        if node.left is not None:
            raise MstError("root with no entries but a subtree: the tree was not trimmed")
        return
    # Layers strictly decrease downwards, so the walk is at most 129 nodes deep and cannot cycle.
    yield from _entries(node, key_height(node.entries[0].key), blocks, [])
