"""Sync 1.1 op inversion: undo a commit's ops on its partial MST and find the previous root
(atproto.com/specs/sync#commit-validation-mst-operation-inversion).

Owns :func:`invert_ops`. From the new commit's ``data`` root and the MST nodes of the commit's CAR
slice it undoes each op (create → remove the key; update → set the value back to ``prev``; delete →
put ``prev`` back) and returns the root CID of the tree that results, which must be the commit's
``prevData``. Only the nodes an op reaches are read; the rest of the tree stays as the links to it.

Invariants:
- Every node read is checked against the link it was reached by (sha2-256), so it is what the signed
  root vouches for.
- Every node read in exactly the writer's form (the honest case: :func:`node_bytes.read_node`) is
  held to that form and to the key rules as it is read. A node in another form takes the general
  road (:func:`_decode_node`) and is held to the canonical form (:meth:`_Node.check`) when the
  inversion rewrites it (its entries change, or it is split or merged), and so is the root: a link
  stored as a byte string, a non-minimal head, keys out of order or not maximally compressed are
  refused as the strict walker refuses them. Such a node that the inversion only passes through
  keeps its bytes, with child links swapped for others of the same length; those bytes reappear in
  the previous tree, whose root must be ``prevData``, the root the caller already holds, so it is as
  canonical as that tree. With no root held, nothing vouches for the parts of the tree the commit
  does not touch either.
- The edits keep the tree canonical (empty nodes dropped, the root trimmed to its highest key), so
  the result is the root of the previous key set whatever the order of the ops; ops are undone in the
  reference order anyway (deletes first, then by path), the order the slice was cut for.
- Whatever the slice holds, the outcome is a root CID or an :class:`InversionError` whose reason is an
  :class:`InversionFailure`: a node the inversion needs and the slice lacks is ``missing_block``.
  Recursion follows layers, which fall by one per level from at most 128, so it is bounded.

Speed: a commit is verified on the ingest hot path, and reading a node through the strict codec
(≈60 µs) and writing it back (≈45 µs) would cost more than the signature check. A node is read by
:func:`node_bytes.read_node`, a reader for this one fixed shape that accepts only the writer's exact
bytes (≈2 µs a node compiled, every check included, where a libipld decode, a pattern match and
the key checks took ≈10 µs). Where it gives no verdict the block is
decoded by libipld (the node schema fixes which fields are links, so links coming back as bytes is
no ambiguity) and, before any edit, written back by :func:`node_bytes.encode_node`, a writer whose
output is byte-for-byte ``mst.encode_node``'s (tests hold it to that), and compared. A node passed
through is not written at all: the new child link is swapped into its bytes, and so is an updated
value.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Final, cast

from libipld import decode_dag_cbor as _decode_dag_cbor

from ingest.ipld.cid import CID, CIDError
from ingest.messages import RepoOp
from ingest.verify.mst import key_height
from ingest.verify.node_bytes import encode_node as _encode_node
from ingest.verify.node_bytes import link as _link
from ingest.verify.node_bytes import prefix_len as _prefix_len
from ingest.verify.node_bytes import read_node


class InversionFailure(StrEnum):
    """Why the ops of a commit could not be undone on its slice."""

    INVALID_OP = "invalid_op"  # unknown action, cid/prev present or absent against the action, a path twice
    OP_MISMATCH = "op_mismatch"  # the tree does not hold what an op says (a created key absent, an update's cid...)
    MISSING_BLOCK = "missing_block"  # a node the inversion has to read is not in the slice
    MALFORMED_NODE = "malformed_node"  # a node that does not hash to its link or is not a canonical MST node


class InversionError(ValueError):
    """The ops could not be undone on the slice; ``reason`` says why."""

    def __init__(self, reason: InversionFailure, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason


# CIDv1, dag-cbor, sha2-256, 32 bytes: the only CIDs MST nodes are stored under.
_NODE_CID_PREFIX: Final = b"\x01\x71\x12\x20"
_SHA256_CID_LEN: Final = 36


class _Node:
    """A node being edited: keys in order, their values, and ``len(keys) + 1`` subtrees around them.

    ``subs[i]`` holds the keys between ``keys[i-1]`` and ``keys[i]`` (``subs[0]`` is the node's ``l``,
    ``subs[i+1]`` entry i's ``t``): a loaded node, the raw CID of one not read, or None.
    ``cid`` is the node's raw CID while it is known: as read, or once sealed; None while it changes.
    ``read_cid`` is the CID it was read under (None for a node made here), which is the link its
    parent still holds in its own bytes. ``data`` is the block as read, kept while the node's keys,
    values and the presence of its subtrees are unchanged, so only child links can differ and they are
    swapped into the bytes in place. ``pres`` are the keys' prefix lengths, kept up to date by each
    edit (computing them afresh for a whole node costs more than writing it).
    ``unchecked`` is true for a node read but not yet held to the canonical form (:meth:`check`);
    ``checked`` says the reader has held it to that form already.
    ``opened`` are the indices of the subtrees read in place while ``data`` is kept.
    """

    __slots__ = ("cid", "data", "keys", "opened", "pres", "read_cid", "subs", "unchecked", "vals")

    def __init__(
        self,
        keys: list[bytes],
        vals: list[bytes],
        subs: list[_Node | bytes | None],
        pres: list[int],
        cid: bytes | None = None,
        data: bytes | None = None,
        *,
        checked: bool = False,
    ) -> None:
        self.keys = keys
        self.vals = vals
        self.subs = subs
        self.cid = cid
        self.read_cid = cid
        self.data = data
        self.pres = pres
        self.unchecked = data is not None and not checked
        # Indices of the subtrees read in place (by _descend) while ``data`` is kept: the only links
        # sealing may have to swap, so it need not look at the others.
        self.opened: list[int] = []

    def is_empty(self) -> bool:
        return not self.keys and self.subs[0] is None

    def check(self) -> None:
        """Refuse a node read that is not exactly what ``mst.encode_node`` writes; once, before any edit.

        Only a node of the general road (:func:`_decode_node`) is unchecked: ``read_node`` checked the
        others as it read them. The test is that writing the fields as read back gives the same
        bytes: the writer emits only ``{"e": [{"k": bytes, "p": uint, "t": link|null, "v": link}...],
        "l": link|null}`` in canonical form, so equal bytes mean the block is that shape, with links as
        tag-42 links (libipld returns links and byte strings alike as bytes) and every head minimal.
        What writing back cannot see is checked after: each prefix length within the key before (the
        first one 0), key order, maximal prefix compression, UTF-8 keys.
        """
        if not self.unchecked:
            return
        self.unchecked = False
        assert self.data is not None and self.read_cid is not None
        cid, keys, pres = self.read_cid, self.keys, self.pres
        links = [c.read_cid if isinstance(c, _Node) else c for c in self.subs]
        try:
            written = _encode_node(keys, self.vals, links, pres)
        except (TypeError, IndexError, OverflowError) as err:
            raise _malformed(cid, f"not an MST node: {err!r}") from err
        if written != self.data:
            raise _malformed(cid, "not an MST node in canonical form")
        # The bytes matched, so every prefix length is a non-negative integer as written, and each key
        # is the key before cut to its prefix length plus its suffix.
        if pres and pres[0]:
            raise _malformed(cid, "the first key shares a prefix with nothing")
        previous = keys[0] if keys else b""
        for key, p in zip(keys[1:], pres[1:], strict=True):
            if p > len(previous):
                raise _malformed(cid, "a prefix length past the key before")
            # The suffix is key[p:]: it must be non-empty and sort after the key before at byte p,
            # which is both order and maximal compression (equal there would have been shared).
            if len(key) == p or (p < len(previous) and key[p] <= previous[p]):
                raise _malformed(cid, "keys out of order or prefix compression not maximal")
            previous = key
        try:
            # One decode for all keys: joined by an ASCII byte, the whole is UTF-8 exactly when each is.
            b"/".join(keys).decode("utf-8")
        except UnicodeDecodeError as err:
            raise _malformed(cid, "a key is not UTF-8") from err

    def reshaped(self) -> None:
        """Note an edit beyond a child link, which writes the node afresh: check it as read first."""
        self.check()
        self.cid = None
        self.data = None

    def insert_entry(self, g: int, key: bytes, value: bytes, low: _Node | None, high: _Node | None) -> None:
        """Put ``key`` at index ``g``, with ``low`` and ``high`` the halves of the subtree it cuts."""
        self.reshaped()
        keys = self.keys
        keys.insert(g, key)
        self.vals.insert(g, value)
        self.pres.insert(g, _prefix_len(keys[g - 1], key) if g else 0)
        if g + 1 < len(keys):
            self.pres[g + 1] = _prefix_len(key, keys[g + 1])
        self.subs[g : g + 1] = [low, high]

    def remove_entry(self, g: int, merged: _Node | bytes | None) -> bytes:
        """Take out entry ``g``, ``merged`` replacing the subtrees on both sides of it; its value."""
        self.reshaped()
        keys = self.keys
        del keys[g]
        del self.pres[g]
        if g < len(keys):
            self.pres[g] = _prefix_len(keys[g - 1], keys[g]) if g else 0
        self.subs[g : g + 2] = [merged]
        return self.vals.pop(g)


def _new(keys: list[bytes], vals: list[bytes], subs: list[_Node | bytes | None], pres: list[int]) -> _Node | None:
    """A node made here, or None when it would hold nothing (an empty node is never linked)."""
    if not keys and subs[0] is None:
        return None
    return _Node(keys, vals, subs, pres)


def _name(raw: bytes) -> str:
    """A link for an error message: its CID, or its hex when it is not a CID at all."""
    try:
        return str(CID(raw))
    except CIDError:
        return f"0x{raw[:40].hex()}"


def _malformed(cid: bytes, why: str) -> InversionError:
    return InversionError(InversionFailure.MALFORMED_NODE, f"node {_name(cid)}: {why}")


def _decode_node(cid: bytes, data: bytes) -> _Node:
    """Read a node block that hashed to ``cid``: its keys, values and links, typed for the walk.

    libipld decodes it (DAG-CBOR, but not held to the canonical form; the node schema fixes which
    fields are links, so links coming back as bytes is no ambiguity). Only what the walk relies on is
    checked here (links are bytes or null, values bytes, keys bytes); the canonical form is checked by
    :meth:`_Node.check` when the node is rewritten (see the module docstring).
    """
    try:
        raw = _decode_dag_cbor(data)
    except (ValueError, TypeError, OverflowError, RecursionError) as err:
        # RecursionError: libipld's answer to nesting past its depth limit.
        raise _malformed(cid, f"not DAG-CBOR: {err}") from err
    keys: list[bytes] = []
    vals: list[bytes] = []
    pres: list[int] = []
    try:
        links: list[_Node | bytes | None] = [raw["l"]]
        previous = b""
        for e in raw["e"]:
            p = e["p"]
            # bytes + anything but bytes is a TypeError, and so is slicing by anything but an int.
            previous = previous[:p] + e["k"]
            keys.append(previous)
            pres.append(p)
            vals.append(e["v"])
            links.append(e["t"])
    except (KeyError, TypeError, IndexError, ValueError) as err:
        raise _malformed(cid, f"not an MST node: {err!r}") from err
    # Read back as plain objects: compiled, a read through the list's declared type would itself
    # raise TypeError on a value of another type, before this test could name the fault. The walk
    # reads values too (replace takes the old one before the node is checked), so they are tested here.
    read: Sequence[object] = links
    for sub in read:
        if sub is not None and type(sub) is not bytes:
            raise _malformed(cid, "a subtree link is not a link or null")
    # (A name of its own: assigning to ``read`` would narrow it back to list[bytes].)
    values: Sequence[object] = vals
    for value in values:
        if type(value) is not bytes:
            raise _malformed(cid, "a value is not a link")
    return _Node(keys, vals, links, pres, cid, data)


def _absent(key: bytes) -> InversionError:
    return InversionError(InversionFailure.OP_MISMATCH, f"{key!r} is not in the tree")


class _Tree:
    """The partial tree under a root, read from ``blocks`` only where an edit reaches."""

    def __init__(self, root: bytes, blocks: Mapping[bytes, bytes]) -> None:
        self._blocks = blocks
        node = self._load(root)
        # The root's first key sets the layers of the whole walk: hold it to the canonical form.
        node.check()
        if node.keys:
            self.root: _Node | bytes = node
            self.layer: int | None = key_height(node.keys[0].decode("utf-8"))
        elif node.subs[0] is None:
            self.root, self.layer = node, None  # the empty tree
        else:
            raise _malformed(root, "a root with no entries but a subtree: the tree was not trimmed")

    def _load(self, cid: bytes) -> _Node:
        data = self._blocks.get(cid)
        if data is None:
            raise InversionError(InversionFailure.MISSING_BLOCK, f"node {_name(cid)} is not in the slice")
        if cid[:4] != _NODE_CID_PREFIX or hashlib.sha256(data).digest() != cid[4:]:
            raise _malformed(cid, "the block does not hash to its dag-cbor sha2-256 link")
        fields = read_node(data)
        if fields is None:
            return _decode_node(cid, data)
        keys, vals, links, pres = fields
        # The list is read_node's own, fresh: typed for the walk without a copy.
        return _Node(keys, vals, cast("list[_Node | bytes | None]", links), pres, cid, data, checked=True)

    def _loaded(self, sub: _Node | bytes) -> _Node:
        return sub if isinstance(sub, _Node) else self._load(sub)

    def _root(self) -> _Node:
        root = self._loaded(self.root)
        self.root = root
        return root

    # ------------------------------------------------------------------------------ structural edits

    def _split(self, sub: _Node | bytes | None, key: bytes, layer: int) -> tuple[_Node | None, _Node | None]:
        """The subtree ``sub`` (at ``layer``) cut into the keys below and above ``key``."""
        if sub is None:
            return None, None
        if layer < 0:
            raise InversionError(InversionFailure.MALFORMED_NODE, "a subtree below layer 0")
        node = self._loaded(sub)
        node.check()
        g = bisect_left(node.keys, key)
        if g < len(node.keys) and node.keys[g] == key:
            raise InversionError(InversionFailure.MALFORMED_NODE, f"{key!r} sits below the layer of its height")
        low, high = self._split(node.subs[g], key, layer - 1)
        return (
            _new(node.keys[:g], node.vals[:g], [*node.subs[:g], low], node.pres[:g]),
            # The first key of the upper half starts a node: nothing before it to share a prefix with.
            _new(
                node.keys[g:],
                node.vals[g:],
                [high, *node.subs[g + 1 :]],
                [0, *node.pres[g + 1 :]] if g < len(node.keys) else [],
            ),
        )

    def _merge(self, a: _Node | bytes | None, b: _Node | bytes | None, layer: int) -> _Node | bytes | None:
        """Two adjacent subtrees at ``layer`` (all of ``a`` below all of ``b``) joined into one."""
        if a is None:
            return b
        if b is None:
            return a
        if layer < 0:
            raise InversionError(InversionFailure.MALFORMED_NODE, "subtrees below layer 0")
        na, nb = self._loaded(a), self._loaded(b)
        na.check()
        nb.check()
        middle = self._merge(na.subs[-1], nb.subs[0], layer - 1)
        pres = na.pres + nb.pres
        if na.keys and nb.keys:
            pres[len(na.keys)] = _prefix_len(na.keys[-1], nb.keys[0])
        return _Node(na.keys + nb.keys, na.vals + nb.vals, [*na.subs[:-1], middle, *nb.subs[1:]], pres)

    def _descend(self, node: _Node, g: int) -> _Node | None:
        """Child ``g`` of ``node``, read and kept in place; None if there is none."""
        sub = node.subs[g]
        if sub is None or isinstance(sub, _Node):
            return sub
        child = self._load(sub)
        node.subs[g] = child
        node.opened.append(g)
        return child

    # ------------------------------------------------------------------------------------ the edits

    def insert(self, key: bytes, height: int, value: bytes) -> None:
        """Add ``key`` (absent) with ``value``."""
        root = self._root()
        if self.layer is None:
            self.root, self.layer = _Node([key], [value], [None, None], [0]), height
            return
        layer = self.layer
        if height > layer:
            # The key belongs above the root: cut the whole tree around it and stack wrapper nodes
            # (no entries, one subtree) for the layers in between.
            low, high = self._split(root, key, layer)
            for _ in range(layer + 1, height):
                low = None if low is None else _Node([], [], [low], [])
                high = None if high is None else _Node([], [], [high], [])
            self.root, self.layer = _Node([key], [value], [low, high], [0]), height
            return
        node = root
        while True:
            node.cid = None
            g = bisect_left(node.keys, key)
            if g < len(node.keys) and node.keys[g] == key:
                raise InversionError(InversionFailure.OP_MISMATCH, f"{key!r} is already in the tree")
            if layer == height:
                low, high = self._split(node.subs[g], key, layer - 1)
                node.insert_entry(g, key, value, low, high)
                return
            child = self._descend(node, g)
            if child is None:
                child = _Node([], [], [None], [])
                node.reshaped()
                node.subs[g] = child
            node, layer = child, layer - 1

    def remove(self, key: bytes, height: int) -> bytes:
        """Take ``key`` out of the tree; its value."""
        root = self._root()
        if self.layer is None or height > self.layer:
            raise _absent(key)
        layer = self.layer
        path: list[tuple[_Node, int]] = []
        node = root
        while True:
            node.cid = None
            g = bisect_left(node.keys, key)
            if layer == height:
                if g == len(node.keys) or node.keys[g] != key:
                    raise _absent(key)
                value = node.remove_entry(g, self._merge(node.subs[g], node.subs[g + 1], layer - 1))
                break
            child = self._descend(node, g)
            if child is None:
                raise _absent(key)
            path.append((node, g))
            node, layer = child, layer - 1
        # A node left with nothing is unlinked, which may empty its parent in turn.
        while path and node.is_empty():
            node, g = path.pop()
            node.reshaped()
            node.subs[g] = None
        self._trim()
        return value

    def _trim(self) -> None:
        """Drop root nodes with no entries of their own, so the root holds the highest key."""
        while True:
            root = self._root()
            if root.keys:
                return
            if root.subs[0] is None:
                self.layer = None
                return
            assert self.layer is not None  # a root with a subtree has a layer
            self.root, self.layer = root.subs[0], self.layer - 1

    def replace(self, key: bytes, height: int, value: bytes) -> bytes:
        """Set the value of ``key`` (present); the value it had."""
        node = self._root()
        layer = self.layer
        if layer is None or height > layer:
            raise _absent(key)
        while True:
            node.cid = None
            g = bisect_left(node.keys, key)
            if layer == height:
                if g == len(node.keys) or node.keys[g] != key:
                    raise _absent(key)
                old = node.vals[g]
                node.check()
                node.cid = None
                node.vals[g] = value
                # Only the value changes: swap it into the bytes (the node is canonical, so where the
                # old link occurs exactly once it is the value's), else write the node afresh.
                data = node.data
                if data is not None:
                    old_link = _link(old)
                    node.data = data.replace(old_link, _link(value)) if data.count(old_link) == 1 else None
                return old
            child = self._descend(node, g)
            if child is None:
                raise _absent(key)
            node, layer = child, layer - 1

    # --------------------------------------------------------------------------------------- result

    def root_cid(self) -> CID:
        """The CID of the tree as edited: changed nodes are written and hashed, bottom up."""
        raw = _seal(self.root)
        assert raw is not None  # the root is a node, if an empty one
        return CID(raw)


def _seal(sub: _Node | bytes | None) -> bytes | None:
    """The raw CID of a subtree, writing and hashing the nodes that changed below it."""
    if not isinstance(sub, _Node):
        return sub
    node = sub
    if node.cid is not None:
        return node.cid
    data = node.data
    if data is not None:
        # Only child links changed (the subtrees read in place), and every link is the same 36 bytes:
        # swap them into the bytes as read rather than writing the node again. A link found other
        # than exactly once (a value equal to the child's CID) falls back to writing the node.
        subs = node.subs
        for g in node.opened:
            child = subs[g]
            assert isinstance(child, _Node) and child.read_cid is not None  # opened: read in place, not moved
            link = _seal(child)
            assert link is not None
            if link != child.read_cid:
                old = _link(child.read_cid)
                if data.count(old) != 1:
                    node.check()
                    data = None
                    break
                data = data.replace(old, _link(link))
    if data is None:
        links = [_seal(s) if isinstance(s, _Node) else s for s in node.subs]
        data = _encode_node(node.keys, node.vals, links, node.pres)
    node.cid = _NODE_CID_PREFIX + hashlib.sha256(data).digest()
    return node.cid


def _checked_cid(raw: bytes | None, what: str) -> bytes:
    if raw is None:
        raise InversionError(InversionFailure.INVALID_OP, f"{what} is missing")
    # The common case, which CID() would accept: v1, a one-byte codec, sha2-256, 32 bytes.
    if len(raw) == _SHA256_CID_LEN and raw[0] == 1 and raw[1] < 0x80 and raw[2:4] == b"\x12\x20":
        return raw
    try:
        CID(raw)
    except CIDError as err:
        raise InversionError(InversionFailure.INVALID_OP, f"{what} is not a CID: {err}") from err
    return raw


def _order(op: RepoOp) -> tuple[bool, str]:
    return op.action != "delete", op.path


def invert_ops(root: CID, ops: Sequence[RepoOp], blocks: Mapping[CID, bytes]) -> CID:
    """The root of the tree before ``ops``, from the tree under ``root`` and the slice ``blocks``.

    ``root`` is the new commit's ``data``; the result must equal its ``prevData``. Raises
    :class:`InversionError` when an op is malformed, contradicts the tree, or needs a node the
    slice does not carry.
    """
    seen: set[str] = set()
    for op in ops:
        if op.path in seen:
            raise InversionError(InversionFailure.INVALID_OP, f"{op.path!r} appears in two ops")
        seen.add(op.path)
        if op.action == "create":
            _checked_cid(op.cid, "a create's cid")
            if op.prev is not None:
                raise InversionError(InversionFailure.INVALID_OP, f"create of {op.path!r} with a prev")
        elif op.action == "update":
            _checked_cid(op.cid, "an update's cid")
            _checked_cid(op.prev, "an update's prev (a pre-Sync 1.1 op cannot be inverted)")
        elif op.action == "delete":
            _checked_cid(op.prev, "a delete's prev (a pre-Sync 1.1 op cannot be inverted)")
            if op.cid is not None:
                raise InversionError(InversionFailure.INVALID_OP, f"delete of {op.path!r} with a cid")
        else:
            raise InversionError(InversionFailure.INVALID_OP, f"unknown action {op.action!r}")
        try:
            if not op.path.encode("utf-8"):
                raise InversionError(InversionFailure.INVALID_OP, "an empty path")
        except UnicodeEncodeError as err:
            raise InversionError(InversionFailure.INVALID_OP, f"path {op.path!r} is not UTF-8") from err

    tree = _Tree(root.raw, {cid.raw: data for cid, data in blocks.items()})
    for op in sorted(ops, key=_order):
        key = op.path.encode("utf-8")
        height = key_height(op.path)
        if op.action == "create":
            if tree.remove(key, height) != op.cid:
                raise InversionError(InversionFailure.OP_MISMATCH, f"{op.path!r} holds another value than created")
        elif op.action == "update":
            assert op.prev is not None
            if tree.replace(key, height, op.prev) != op.cid:
                raise InversionError(InversionFailure.OP_MISMATCH, f"{op.path!r} holds another value than updated")
        else:
            assert op.prev is not None
            tree.insert(key, height, op.prev)
    return tree.root_cid()
