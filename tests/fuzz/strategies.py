"""Hypothesis strategies for hostile bytes and values.

- :func:`mutated`: a real seed (a frame, a CAR, a node, an envelope) with a few byte-level edits: bit
  flips, bytes set to CBOR-significant values, truncation, deleted / duplicated / inserted runs, and
  splices with another seed.
- :data:`RAW_CBOR`: any CBOR item, not only DAG-CBOR: non-shortest heads, indefinite lengths, floats
  and simple values, tags, invalid UTF-8 text, map keys out of order, duplicated or not strings.
- :data:`DEEP`: one item nested thousands of levels deep, the shape that exhausts recursive decoders.
- :data:`VALUES`: data-model values (what a strict encoder can write), :data:`JSON`: JSON-ish values
  including floats, huge integers and lone surrogates.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from ingest.ipld import dagcbor
from ingest.ipld.cid import CID

# Bytes that mean something to a CBOR reader: head boundaries (23/24/27), indefinite (31), each major
# type's first byte, tag 42, false/true/null/undefined, half/single/double floats, break.
INTERESTING: tuple[int, ...] = (0x00, 0x01, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1F, 0x20, 0x3F, 0x40, 0x41, 0x58)
INTERESTING += (0x5F, 0x60, 0x61, 0x78, 0x7F, 0x80, 0x81, 0x98, 0x9F, 0xA0, 0xA1, 0xB8, 0xBF, 0xC0, 0xD8, 0x2A)
INTERESTING += (0xF4, 0xF5, 0xF6, 0xF7, 0xF9, 0xFA, 0xFB, 0xFF)

_EDITS = ("flip", "set", "truncate", "delete", "duplicate", "insert", "splice")


def mutate(data: bytes, rng: random.Random, edits: int, others: Sequence[bytes] = ()) -> bytes:
    """``data`` with ``edits`` byte-level edits chosen by ``rng``."""
    out = bytearray(data)
    for _ in range(edits):
        edit = rng.choice(_EDITS)
        if not out:
            out += rng.randbytes(rng.randint(1, 8))
            continue
        n = len(out)
        i = rng.randrange(n)
        j = rng.randint(i, min(n, i + 64))
        if edit == "flip":
            out[i] ^= 1 << rng.randrange(8)
        elif edit == "set":
            out[i] = rng.choice(INTERESTING) if rng.random() < 0.7 else rng.randrange(256)
        elif edit == "truncate":
            del out[i:]
        elif edit == "delete":
            del out[i:j]
        elif edit == "duplicate":
            out[j:j] = out[i:j]
        elif edit == "insert":
            out[i:i] = rng.randbytes(rng.randint(1, 16)) if rng.random() < 0.5 else random_cbor(rng)
        elif others:
            other = rng.choice(others)
            out[i:] = other[rng.randint(0, len(other)) :]
    return bytes(out)


@st.composite
def mutated(draw: st.DrawFn, seeds: Sequence[bytes], max_edits: int = 4) -> bytes:
    """One of ``seeds`` with 1..``max_edits`` byte-level edits.

    The edits come from a seeded generator rather than one draw each: generating stays cheap, so a
    budget buys many more inputs, and a failure still shrinks to fewer edits on a smaller seed index.
    """
    data = draw(st.sampled_from(seeds))
    rng = random.Random(draw(st.integers(0, 2**32)))
    return mutate(data, rng, draw(st.integers(1, max_edits)), seeds)


def head(major: int, value: int, width: int | None = None) -> bytes:
    """A CBOR head; ``width`` (0, 1, 2, 4, 8 argument bytes) forces a possibly non-shortest form."""
    if width is None:
        width = 0 if value < 24 else 1 if value < 0x100 else 2 if value < 0x10000 else 4 if value < 1 << 32 else 8
    if width == 0:
        return bytes(((major << 5) | (value & 0x1F),))
    info = {1: 24, 2: 25, 4: 26, 8: 27}[width]
    return bytes(((major << 5) | info,)) + (value % (1 << (8 * width))).to_bytes(width, "big")


def _rng_head(rng: random.Random, major: int, value: int) -> bytes:
    # One head in eight is written wider than it needs to be (not canonical).
    return head(major, value, rng.choice((0, 1, 2, 4, 8)) if rng.random() < 0.125 and value < 24 else None)


def random_cbor(rng: random.Random, depth: int = 0) -> bytes:
    """One random CBOR item (any major type, valid or not as DAG-CBOR), from ``rng``."""
    roll = rng.random()
    if depth < 4 and roll < 0.3:
        n = rng.choice((0, 1, 2, 3, 5))
        items = b"".join(random_cbor(rng, depth + 1) for _ in range(n))
        if rng.random() < 0.1:
            return b"\x9f" + items + b"\xff"
        return _rng_head(rng, 4, n) + items
    if depth < 4 and roll < 0.5:
        n = rng.choice((0, 1, 2, 4))
        keys = [rng.choice(("a", "b", "op", "t", "seq", "$type", "", "\u00e9")) for _ in range(n)]
        if rng.random() < 0.7:
            keys.sort(key=lambda k: (len(k.encode()), k.encode()))
        body = b"".join(
            (_rng_head(rng, 3, len(k.encode())) + k.encode() if rng.random() < 0.9 else random_cbor(rng, 4))
            + random_cbor(rng, depth + 1)
            for k in keys
        )
        return _rng_head(rng, 5, n) + body
    if roll < 0.55:
        return head(6, rng.choice((42, 42, 42, 0, 1, 55799))) + random_cbor(rng, depth + 1)
    if roll < 0.75:
        major = rng.choice((0, 1))
        value = rng.choice((0, 1, 23, 24, 255, 256, 2**31, 2**63 - 1, 2**63, 2**64 - 1, rng.getrandbits(64)))
        return _rng_head(rng, major, value)
    if roll < 0.92:
        major = rng.choice((2, 3))
        if rng.random() < 0.3:
            content = rng.randbytes(rng.randint(0, 12))
        else:
            content = "".join(
                chr(rng.choice((0x61, 0xE9, 0x20AC, 0x1F600, 0))) for _ in range(rng.randint(0, 6))
            ).encode()
        if rng.random() < 0.2:
            cid = CID.for_dag_cbor(content)
            content = b"\x00" + cid.raw
            return b"\xd8\x2a" + head(2, len(content)) + content
        return _rng_head(rng, major, len(content)) + content
    return rng.choice((b"\xf4", b"\xf5", b"\xf6", b"\xf7", b"\xf8\x20", b"\xf9\x3c\x00", b"\xfb" + bytes(8), b"\xff"))


_WIDTHS = st.sampled_from([None, None, None, 0, 1, 2, 4, 8])


@st.composite
def _int_item(draw: st.DrawFn) -> bytes:
    value = draw(st.integers(0, 2**64 - 1) | st.integers(0, 30) | st.sampled_from([2**63 - 1, 2**63, 2**64 - 1]))
    return head(draw(st.sampled_from([0, 1])), value, draw(_WIDTHS))


@st.composite
def _string_item(draw: st.DrawFn) -> bytes:
    major = draw(st.sampled_from([2, 3]))
    content = draw(st.binary(max_size=40) | st.text(max_size=20).map(lambda s: s.encode("utf-8")))
    return head(major, len(content), draw(_WIDTHS)) + content


@st.composite
def _link_item(draw: st.DrawFn) -> bytes:
    raw = draw(
        st.builds(lambda b: b"\x00" + CID.for_dag_cbor(b).raw, st.binary(max_size=4))
        | st.builds(lambda b: b"\x00" + CID.for_raw(b).raw, st.binary(max_size=4))
        | st.binary(max_size=40)
    )
    return b"\xd8\x2a" + head(2, len(raw)) + raw


_SIMPLE = st.sampled_from(
    [b"\xf4", b"\xf5", b"\xf6", b"\xf7", b"\xf8\x20", b"\xf9\x3c\x00", b"\xfa\x7f\xc0\x00\x00", b"\xfb" + b"\x00" * 8]
)

_LEAVES = _int_item() | _string_item() | _link_item() | _SIMPLE


@st.composite
def _array(draw: st.DrawFn, items: st.SearchStrategy[bytes]) -> bytes:
    values = draw(st.lists(items, max_size=5))
    if draw(st.integers(0, 9)) == 0:
        return b"\x9f" + b"".join(values) + b"\xff"  # indefinite length
    return head(4, len(values), draw(_WIDTHS)) + b"".join(values)


@st.composite
def _map(draw: st.DrawFn, items: st.SearchStrategy[bytes]) -> bytes:
    key = st.text(max_size=6).map(lambda s: head(3, len(s.encode())) + s.encode()) | items
    pairs = draw(st.lists(st.tuples(key, items), max_size=5))
    body = b"".join(k + v for k, v in pairs)
    if draw(st.integers(0, 9)) == 0:
        return b"\xbf" + body + b"\xff"
    return head(5, len(pairs), draw(_WIDTHS)) + body


@st.composite
def _tagged(draw: st.DrawFn, items: st.SearchStrategy[bytes]) -> bytes:
    return head(6, draw(st.sampled_from([0, 1, 2, 24, 42, 55799]) | st.integers(0, 2**32))) + draw(items)


_SEEDED_CBOR = st.integers(0, 2**32).map(lambda seed: random_cbor(random.Random(seed)))
# One item in four is built draw by draw (it shrinks well); the rest come from a seeded generator,
# which costs a tenth as much to make, so a budget buys more inputs.
RAW_CBOR: st.SearchStrategy[bytes] = st.one_of(
    st.recursive(_LEAVES, lambda inner: _array(inner) | _map(inner) | _tagged(inner), max_leaves=8),
    _SEEDED_CBOR,
    _SEEDED_CBOR,
    _SEEDED_CBOR,
)


@st.composite
def _deep(draw: st.DrawFn) -> bytes:
    depth = draw(st.sampled_from([63, 64, 65, 128, 129, 1_000, 5_000, 50_000, 200_000]) | st.integers(1, 3_000))
    opener = draw(st.sampled_from([b"\x81", b"\xa1\x61a", b"\x9f", b"\xd8\x2a"]))
    leaf = draw(st.sampled_from([b"\xf6", b"\x01", b"", b"\xff"]))
    return opener * depth + leaf


DEEP: st.SearchStrategy[bytes] = _deep()

VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=dagcbor.INT64_MIN, max_value=dagcbor.INT64_MAX)
    | st.text(max_size=20)
    | st.binary(max_size=40)
    | st.builds(CID.for_raw, st.binary(max_size=8))
    | st.builds(CID.for_dag_cbor, st.binary(max_size=8)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)
"""Data-model values: whatever :func:`dagcbor.encode` can write."""

CANONICAL: st.SearchStrategy[bytes] = VALUES.map(dagcbor.encode)

ANY_CBOR: st.SearchStrategy[bytes] = RAW_CBOR | CANONICAL | DEEP

_TEXT = st.text(max_size=30) | st.text(max_size=10).map(lambda s: s + "\ud800") | st.sampled_from(["", "\x00", "$type"])

_ODD_TEXT = ("", "\x00", "$type", "$link", "$bytes", "blob", "\ud800", "a" * 3_000, "e\u0301" * 50, "did:plc:x")
_ODD_NUMBERS = (0, -1, 2**63, -(2**63) - 1, 2**64, 10**30, 0.5, -0.0, float("nan"), float("inf"), True, False)


def random_json(rng: random.Random, depth: int = 0) -> Any:
    """One JSON-ish value from ``rng``, wider than JSON (NaN, infinities, huge integers, lone surrogates)."""
    roll = rng.random()
    if depth < 4 and roll < 0.2:
        return [random_json(rng, depth + 1) for _ in range(rng.choice((0, 1, 2, 3)))]
    if depth < 4 and roll < 0.4:
        keys = rng.sample(("a", "$type", "ref", "$link", "uri", "cid", "size", "mimeType", "title", "x"), 3)
        return {k: random_json(rng, depth + 1) for k in keys[: rng.randint(0, 3)]}
    if roll < 0.6:
        return rng.choice(_ODD_TEXT) if rng.random() < 0.5 else "".join(chr(rng.randrange(0x250)) for _ in range(5))
    if roll < 0.85:
        return rng.choice(_ODD_NUMBERS) if rng.random() < 0.6 else rng.randint(-(2**70), 2**70)
    return rng.choice((None, True, False, 1.5))


JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.sampled_from(_ODD_NUMBERS) | st.floats() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
) | st.integers(0, 2**32).map(lambda seed: random_json(random.Random(seed)))
"""JSON-ish values, wider than JSON: NaN, infinities, integers past int64, lone surrogates."""


def deep_json(depth: int, leaf: Any = None, *, as_list: bool = False) -> Any:
    """A value nested ``depth`` levels deep (built iteratively: no recursion limit involved)."""
    value = leaf
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    return value
