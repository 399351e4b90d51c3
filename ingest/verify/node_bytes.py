"""The byte form of MST nodes on the inversion's hot path: a writer, and a test of the canonical form.

Owns :func:`encode_node`, which writes ``{"e": [{"k","p","t","v"}...], "l"}`` byte for byte as
``mst.encode_node`` does (tests hold it to that), and :func:`is_canonical`, which says whether a
node's bytes are exactly what that writer writes for the fields a decoder reads from them, without
writing anything; where it says no (or the node is one it does not cover) the caller writes the
fields back and compares.

Why a test of our own: a commit is verified on the ingest hot path, and proving a node canonical by
writing it back costs more than decoding it (libipld, ≈1 µs). The canonical form of this one fixed
shape is a regular language once key suffixes are bounded and the entry count is given (a suffix's
head fixes its length, so the pattern spells one alternative per length), so one compiled pattern
per entry count proves a node in C (≈0.8 µs).

What :func:`is_canonical` accepting ``data`` for ``count`` guarantees: the block is ``{"e": [...],
"l": ...}`` with every head minimal: an entry count of ``count`` and exactly that many entries, each
key suffix head ``0x40+n`` for n < 24 or ``0x58 n`` for 24 <= n < 128 followed by exactly n bytes,
each prefix length ``n`` or ``0x18 n``; every link a tag 42 over 0x00 and a CIDv1 with a one-byte
codec and a 32-byte sha2-256 digest. Every item is then well-formed minimal CBOR, so any decoder reads
the same fields from it, and ``data == encode_node(keys, vals, links, pres)`` for them, provided each
prefix length is within the key before it (which the caller checks with the key order). Valid nodes
it does not cover (more than 255 entries, key suffixes of 128 bytes or more, prefix lengths of 256 or
more, other links) are False. What bytes cannot show is left to the caller: keys in order, prefixes
maximal and within the key before, keys UTF-8.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Final


def _head(major: int, value: int) -> bytes:
    """A CBOR head in its shortest form."""
    base = major << 5
    if value < 24:
        return bytes((base | value,))
    if value < 0x100:
        return bytes((base | 24, value))
    if value < 0x10000:
        return bytes((base | 25,)) + value.to_bytes(2, "big")
    if value < 0x100000000:
        return bytes((base | 26,)) + value.to_bytes(4, "big")
    return bytes((base | 27,)) + value.to_bytes(8, "big")


# Tag 42, a byte string of 37 bytes, the 0x00 multibase prefix: what precedes every 36-byte CID link.
LINK_HEAD: Final = b"\xd8\x2a\x58\x25\x00"
# Heads of byte strings and unsigned integers below 256: key suffixes and prefix lengths.
_BYTES_HEAD: Final = tuple(_head(2, n) for n in range(256))
_UINT_HEAD: Final = tuple(_head(0, n) for n in range(256))


def link(raw: bytes) -> bytes:
    """Tag 42 over the 0x00 multibase prefix and the binary CID."""
    if len(raw) == 36:
        return LINK_HEAD + raw
    return b"\xd8\x2a" + _head(2, len(raw) + 1) + b"\x00" + raw


def prefix_len(a: bytes, b: bytes) -> int:
    """How many leading bytes two keys share, without a Python-level loop over the bytes."""
    n = min(len(a), len(b))
    diff = int.from_bytes(a[:n], "big") ^ int.from_bytes(b[:n], "big")
    return n - (diff.bit_length() + 7) // 8


def encode_node(
    keys: Sequence[bytes], vals: Sequence[bytes], links: Sequence[bytes | None], pres: Sequence[int]
) -> bytes:
    """The canonical DAG-CBOR of ``{"e": [{"k","p","t","v"}...], "l"}``: mst.encode_node's bytes.

    ``pres`` are the keys' prefix lengths (:func:`prefix_len` with the key before). Map keys are
    written in DAG-CBOR order (length, then bytes: e < l and k < p < t < v).
    """
    parts = [b"\xa2\x61e", _head(4, len(keys))]
    for key, val, right, p in zip(keys, vals, links[1:], pres, strict=True):
        n = len(key) - p
        parts += (
            b"\xa4\x61k",
            _BYTES_HEAD[n] if n < 256 else _head(2, n),
            key[p:],
            b"\x61p",
            _UINT_HEAD[p] if p < 256 else _head(0, p),
            b"\x61t\xf6\x61v" if right is None else b"\x61t" + link(right) + b"\x61v",
            LINK_HEAD + val if len(val) == 36 else link(val),
        )
    left = links[0]
    parts.append(b"\x61l\xf6" if left is None else b"\x61l" + link(left))
    return b"".join(parts)


_CID: Final = rb"\x01[\x00-\x7f]\x12\x20.{32}"  # CIDv1, one-byte codec, sha2-256, 32-byte digest
_MAX_SUFFIX: Final = 128
# A key suffix with its minimal head, one alternative per length: the head fixes how many bytes
# follow, which a pattern can only say length by length. Longer suffixes take the general road (a
# record key is at most 512 bytes, but a suffix after the shared prefix is short).
_SUFFIX: Final = b"(?:%s)" % b"|".join(
    [re.escape(_BYTES_HEAD[n]) + (b".{%d}" % n if n else b"") for n in range(_MAX_SUFFIX)]
)
_LINK_HEAD_RE: Final = re.escape(LINK_HEAD)
_UINT: Final = rb"(?:[\x00-\x17]|\x18[\x18-\xff])"  # an unsigned integer below 256, minimal


def _entry(group: bytes) -> bytes:
    """One entry ``{"k": suffix, "p": uint, "t": null | link, "v": link}``, its four parts opened by ``group``."""
    cid = group + _CID + b")"
    return b"\xa4\x61k%s%s)\x61p%s%s)\x61t(?:\xf6|%s%s)\x61v%s%s" % (
        group,
        _SUFFIX,
        group,
        _UINT,
        _LINK_HEAD_RE,
        cid,
        _LINK_HEAD_RE,
        cid,
    )


# Nodes of up to this many entries are covered (an array head of one or two bytes).
_MAX_COUNT: Final = 255


@functools.cache
def _node_pattern(count: int) -> re.Pattern[bytes]:
    """The whole node of ``count`` entries: {"e": [count entries], "l": null | link}."""
    return re.compile(
        rb"\xa2\x61e"
        + re.escape(_head(4, count))
        + b"(?:%s){%d}" % (_entry(b"(?:"), count)
        + rb"\x61l(?:\xf6|"
        + _LINK_HEAD_RE
        + _CID
        + b")",
        re.S,
    )


def is_canonical(data: bytes, count: int) -> bool:
    """Whether ``data`` is a node of ``count`` entries in exactly the writer's byte form, as above.

    ``count`` is the number of entries a decoder read from ``data``. True means the decoded fields
    written by :func:`encode_node` give ``data`` back, provided each prefix length is within the key
    before (which the caller checks with the key order); False means the node is not in that form or
    is one this pattern does not cover, and the caller writes it back to compare.
    """
    return count <= _MAX_COUNT and _node_pattern(count).fullmatch(data) is not None
