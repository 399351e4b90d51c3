"""The byte form of MST nodes on the inversion's hot path: a writer, and a reader of exactly its form.

Owns :func:`encode_node`, which writes ``{"e": [{"k","p","t","v"}...], "l"}`` byte for byte as
``mst.encode_node`` does (tests hold it to that), and :func:`read_node`, which reads a node's fields
only from bytes that are exactly what that writer writes for them, with the key rules the strict
walker holds (order, maximal prefix compression, UTF-8). Where it gives no verdict the inversion
takes its general road: it decodes the node with libipld and, before it rewrites the node, writes
the fields back and compares.

Why a reader of our own: a commit is verified on the ingest hot path, and proving a node canonical
by writing it back costs more than decoding it. The writer's form of this one fixed shape leaves a
reader nothing to choose: every head is minimal and the map keys come in one order, so reading it
byte by byte, refusing any other byte, decodes and proves it at once (compiled, ≈2 µs a node, less
than libipld's decode alone). Links it reads are tag-42 CIDv1s with a one-byte codec and a 32-byte
sha2-256 digest, which is what MST nodes and record values are; a node with another link, or a
suffix, count or prefix length past 16 bits, gets no verdict.
"""

from __future__ import annotations

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


# (keys, vals, links, pres): full keys, value CIDs, the left subtree then each entry's, prefix lengths.
Fields = tuple[list[bytes], list[bytes], list[bytes | None], list[int]]


def read_node(data: bytes) -> Fields | None:
    """The fields of a node in exactly the writer's form, with its keys' rules held; None otherwise.

    Returns the fields as the inversion reads them only when
    ``encode_node`` of them gives ``data`` back and the keys are in order, maximally prefix-compressed
    and UTF-8 (what ``mst.decode_node`` demands). None is no verdict: a node in another form, one
    whose keys break those rules, or one with a link that is not a sha2-256 CIDv1 with a one-byte
    codec, is left to the caller's general road.
    """
    try:
        return _read(data)
    except IndexError:  # truncated: an index past the end
        return None


def _read_link(data: bytes, i: int) -> bytes | None:
    """The 36-byte CID of a link at ``i`` (tag 42, bytes(37), 0x00, CIDv1, a one-byte codec,
    sha2-256), or None."""
    # LINK_HEAD spelled out byte by byte: compiled, each index is a C comparison, while
    # data.startswith(LINK_HEAD, i) is a Python-level call that made the whole reader twice as slow.
    if (
        data[i] != 0xD8
        or data[i + 1] != 0x2A
        or data[i + 2] != 0x58
        or data[i + 3] != 0x25
        or data[i + 4] != 0
        or data[i + 5] != 1
        or data[i + 6] >= 0x80
        or data[i + 7] != 0x12
        or data[i + 8] != 0x20
        or i + 41 > len(data)
    ):
        return None
    return data[i + 5 : i + 41]


def _read_optional_link(data: bytes, i: int) -> tuple[bytes | None, int]:
    """A null or a link at ``i``: its CID (None for null) and the index after it, -1 if it is neither."""
    if data[i] == 0xF6:
        return None, i + 1
    link = _read_link(data, i)
    return link, (-1 if link is None else i + 41)


def _read_uint(data: bytes, i: int, base: int) -> tuple[int, int]:
    """The argument of the head at ``i`` whose major type is ``base >> 5``, and the index after it.

    The value is -1 where the head is of another major type, not minimal, or past 16 bits.
    """
    head = data[i] - base
    if 0 <= head < 24:
        return head, i + 1
    if head == 24:
        value = data[i + 1]
        return (value if value >= 24 else -1), i + 2
    if head == 25:
        value = (data[i + 1] << 8) | data[i + 2]
        return (value if value >= 0x100 else -1), i + 3
    return -1, i


def _read(data: bytes) -> Fields | None:
    # {"e": [...], "l": ...}: map of 2, text "e", then the array head.
    if data[0] != 0xA2 or data[1] != 0x61 or data[2] != 0x65:
        return None
    count, i = _read_uint(data, 3, 0x80)
    if count < 0:
        return None
    keys: list[bytes] = []
    vals: list[bytes] = []
    links: list[bytes | None] = [None]
    pres: list[int] = []
    previous = b""
    for _ in range(count):
        # {"k": suffix, "p": uint, "t": null | link, "v": link}
        if data[i] != 0xA4 or data[i + 1] != 0x61 or data[i + 2] != 0x6B:
            return None
        n, i = _read_uint(data, i + 3, 0x40)
        end = i + n
        # An empty suffix cannot sort after the key before; n is -1 for a head that is not minimal.
        if n <= 0 or end > len(data):
            return None
        suffix = data[i:end]
        if data[end] != 0x61 or data[end + 1] != 0x70:
            return None
        p, i = _read_uint(data, end + 2, 0)
        # Within the key before (so 0 for the first), and the suffix sorts after it at byte p: order
        # and maximal compression both (an equal byte there would have been shared).
        if p < 0 or p > len(previous) or (p < len(previous) and suffix[0] <= previous[p]):
            return None
        key = previous[:p] + suffix if p else suffix
        if data[i] != 0x61 or data[i + 1] != 0x74:
            return None
        right, i = _read_optional_link(data, i + 2)
        if i < 0:
            return None
        if data[i] != 0x61 or data[i + 1] != 0x76:
            return None
        value = _read_link(data, i + 2)
        if value is None:
            return None
        i += 43
        keys.append(key)
        vals.append(value)
        links.append(right)
        pres.append(p)
        previous = key
    if data[i] != 0x61 or data[i + 1] != 0x6C:
        return None
    links[0], i = _read_optional_link(data, i + 2)
    if i < 0:
        return None
    if i != len(data):
        return None
    try:
        # One decode for all keys: joined by an ASCII byte, the whole is UTF-8 exactly when each is.
        b"/".join(keys).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return keys, vals, links, pres
