"""Trees that lie consistently: one node of a real MST rewritten and every node above it re-linked.

Mutating a node's bytes in place only exercises the hash check. :func:`mutant` instead rewrites one
node reachable from a root (a field changed, its bytes edited, a random item or a block nested far too
deep put in its place) and re-encodes each ancestor with the new link, so every link hashes right and
the new root vouches for exactly the lie. A signed commit over that root gets past the signature.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from ingest.ipld import dagcbor
from ingest.ipld.cid import CID
from tests.fuzz.strategies import mutate, random_cbor


def _links(node: Any) -> list[CID]:
    if type(node) is not dict:
        return []
    out = [node.get("l")]
    entries = node.get("e")
    if type(entries) is list:
        out += [e.get("t") for e in entries if type(e) is dict]
    return [c for c in out if type(c) is CID]


def _parents(blocks: Mapping[CID, bytes], root: CID) -> dict[CID, CID | None]:
    """Each node reachable from ``root`` (and present) → the node that links it (None for the root)."""
    out: dict[CID, CID | None] = {root: None}
    todo = [root]
    while todo:
        cid = todo.pop()
        for child in _links(dagcbor.decode(blocks[cid])):
            if child in blocks and child not in out:
                out[child] = cid
                todo.append(child)
    return out


_PARENTS: dict[CID, dict[CID, CID | None]] = {}


def _parents_of(blocks: Mapping[CID, bytes], root: CID) -> dict[CID, CID | None]:
    """:func:`_parents`, kept per root (the seed trees never change)."""
    if root not in _PARENTS:
        _PARENTS[root] = _parents(blocks, root)
    return _PARENTS[root]


def _relink(node: Any, old: CID, new: CID) -> Any:
    if node.get("l") == old:
        node["l"] = new
    for e in node["e"]:
        if e.get("t") == old:
            e["t"] = new
    return node


def _replace(blocks: Mapping[CID, bytes], root: CID, target: CID, data: bytes) -> tuple[CID, dict[CID, bytes]]:
    """The tree with ``target``'s block replaced by ``data``, every ancestor re-linked; its new root."""
    parents = _parents_of(blocks, root)
    out = dict(blocks)
    old, new = target, CID.for_dag_cbor(data)
    out[new] = data
    parent = parents[target]
    while parent is not None:
        block = dagcbor.encode(_relink(dagcbor.decode(blocks[parent]), old, new))
        old, new = parent, CID.for_dag_cbor(block)
        out[new] = block
        parent = parents[parent]
    return new, out


def _edit_node(node: Any, rng: random.Random, known: list[CID]) -> Any:
    """One structural lie in a decoded node."""
    entries = node["e"]
    roll = rng.randrange(12)
    if entries and roll < 6:
        e = rng.choice(entries)
        field = rng.choice(("p", "k", "v", "t"))
        e[field] = rng.choice(
            (
                rng.choice((-1, 0, 1, 2**40, 255, 256, len(e["k"]) + 1)),
                rng.randbytes(rng.randint(0, 8)),
                b"\xff\xfe",
                rng.choice(known),
                CID.for_dag_cbor(rng.randbytes(4)),
                None,
                "text",
                [],
            )
        )
    elif entries and roll == 6:
        i, j = rng.randrange(len(entries)), rng.randrange(len(entries))
        entries[i], entries[j] = entries[j], entries[i]
    elif entries and roll == 7:
        entries.insert(rng.randrange(len(entries)), dict(rng.choice(entries)))
    elif entries and roll == 8:
        del entries[rng.randrange(len(entries))]
    elif roll == 9:
        node["l"] = rng.choice((None, rng.choice(known), CID.for_dag_cbor(b"absent"), b"\x01", 7))
    elif roll == 10:
        node.pop(rng.choice(("l", "e")))
    else:
        node[rng.choice(("x", "e", "l"))] = rng.choice(([], {}, None, [1], "e"))
    return node


def mutant(blocks: Mapping[CID, bytes], root: CID, rng: random.Random) -> tuple[CID, dict[CID, bytes], bytes]:
    """A tree with one node rewritten: (new root, blocks, the new node's bytes)."""
    target = rng.choice(sorted(_parents_of(blocks, root), key=lambda c: c.raw))
    roll = rng.random()
    if roll < 0.6:
        data = dagcbor.encode(_edit_node(dagcbor.decode(blocks[target]), rng, list(blocks)))
    elif roll < 0.85:
        data = mutate(blocks[target], rng, rng.randint(1, 3))
    elif roll < 0.95:
        data = random_cbor(rng)
    else:
        data = b"\xa2\x61e\x80\x61l" + b"\x81" * rng.choice((100, 5_000, 100_000)) + b"\xf6"
    new_root, out = _replace(blocks, root, target, data)
    return new_root, out, data
