"""The inversion's canonical-form test: it accepts exactly the bytes the writer writes, and nothing else."""

from __future__ import annotations

import libipld
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.ipld import dagcbor
from ingest.ipld.cid import CID
from ingest.verify import mst
from ingest.verify.node_bytes import encode_node, is_canonical
from tests.fixtures.interop import INTEROP_DIR

EXAMPLE_KEYS = [k for k in (INTEROP_DIR / "mst" / "example_keys.txt").read_text().split("\n") if k]


def _value(n: object) -> CID:
    return CID.for_dag_cbor(dagcbor.encode({"n": str(n)}))


def _sample_nodes() -> list[bytes]:
    trees = [
        mst.build({k: _value(k) for k in EXAMPLE_KEYS}),
        mst.build({}),
        mst.build({"a": _value(1)}),
        mst.build({f"fm.plyr.track/3k{i:011d}": _value(i) for i in range(300)}),
    ]
    return [data for tree in trees for data in tree.blocks.values()]


def _as_read(data: bytes) -> tuple[list[bytes], list[bytes], list[bytes | None], list[int]]:
    node = mst.decode_node(data)
    keys = [e.key.encode() for e in node.entries]
    links = [None if node.left is None else node.left.raw] + [
        None if e.right is None else e.right.raw for e in node.entries
    ]
    pres = [mst.common_prefix_len(a.key, b.key) for a, b in zip(node.entries, node.entries[1:], strict=False)]
    return keys, [e.value.raw for e in node.entries], links, [0, *pres][: len(keys)]


def _decoded(data: bytes) -> tuple[list[bytes], list[bytes], list[bytes | None], list[int]] | None:
    """The fields libipld reads from a node-shaped block, as the inversion reads them; None otherwise."""
    try:
        raw = libipld.decode_dag_cbor(data)
        entries = raw["e"]
        keys, previous = [], b""
        for e in entries:
            previous = previous[: e["p"]] + e["k"]
            keys.append(previous)
        fields = keys, [e["v"] for e in entries], [raw["l"], *[e["t"] for e in entries]], [e["p"] for e in entries]
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError):
        return None
    return fields


def test_accepts_every_node_the_writer_writes() -> None:
    for data in _sample_nodes():
        fields = _decoded(data)
        assert fields == _as_read(data)
        assert is_canonical(data, len(fields[0]))


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=150), st.binary(max_size=4), max_size=40))
def test_accepts_nodes_of_any_keys_or_leaves_them_to_the_general_road(entries: dict[str, bytes]) -> None:
    # Keys past what the pattern spells (suffixes of 128 bytes or more) may be refused, never misread.
    tree = mst.build({k: CID.for_raw(v) for k, v in entries.items()})
    for data in tree.blocks.values():
        fields = _decoded(data)
        assert fields == _as_read(data)
        if all(len(k.encode()) < 128 for k in entries):
            assert is_canonical(data, len(fields[0]))


def test_refuses_what_is_not_canonical() -> None:
    key = b"fm.plyr.track/3aaaaaaaaaaaa"
    leaf = _value("leaf")
    good = dagcbor.encode({"l": None, "e": [{"p": 0, "k": key, "v": leaf, "t": None}]})
    assert is_canonical(good, 1)
    assert not is_canonical(good, 0)
    assert not is_canonical(good, 2)
    cases = [
        good.replace(b"\x61p\x00", b"\x61p\x18\x00"),  # a prefix length in two bytes
        good.replace(b"\x58\x1b", b"\x59\x00\x1b"),  # a key head in three bytes
        good.replace(b"\xa2\x61e\x81", b"\xa2\x61e\x98\x01"),  # the entry count in two bytes
        good.replace(b"\xa2\x61e\x81", b"\xa2\x61e\x82"),  # a count that is not the entries'
        good + b"\x00",  # trailing bytes
        good[:-1],  # truncated
        dagcbor.encode({"l": None, "e": [{"p": 0, "k": key, "v": leaf.raw, "t": None}]}),  # link as bytes
        dagcbor.encode({"l": None, "e": [{"p": 0, "k": key.decode(), "v": leaf, "t": None}]}),  # key as text
        dagcbor.encode({"l": None, "e": [{"p": 0, "k": key, "v": CID.for_raw(b"x"), "t": None, "x": 1}]}),
        dagcbor.encode({"l": CID.from_bytes(b"\x01\x71\x13\x03abc"), "e": []}),  # a link that is not sha2-256
        b"",
    ]
    for data in cases:
        assert not any(is_canonical(data, n) for n in range(3)), data


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(_sample_nodes()), st.data())
def test_whatever_it_accepts_is_what_the_writer_writes_for_the_fields_read(data: bytes, draw: st.DataObject) -> None:
    # Mutate a real node anywhere: bytes changed, cut out or put in. Whatever is still read is read
    # as fields the writer turns back into the very same bytes (given prefixes within the key before).
    mutated = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 3))):
        i = draw.draw(st.integers(0, len(mutated)))
        kind = draw.draw(st.sampled_from(["set", "cut", "put"]))
        if kind == "set" and i < len(mutated):
            mutated[i] = draw.draw(st.integers(0, 255))
        elif kind == "cut":
            del mutated[i : i + draw.draw(st.integers(1, 40))]
        else:
            mutated[i:i] = draw.draw(st.binary(min_size=1, max_size=40))
    fields = _decoded(bytes(mutated))
    if fields is not None and is_canonical(bytes(mutated), len(fields[0])):
        keys, vals, links, pres = fields
        if all(p <= len(k) for k, p in zip([b"", *keys], pres, strict=False)):
            assert encode_node(keys, vals, links, pres) == bytes(mutated)
