"""The inversion's node reader: it reads exactly what the writer writes, as the strict walker does, and nothing else."""

from __future__ import annotations

import libipld
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.ipld import dagcbor
from ingest.ipld.cid import CID
from ingest.verify import mst
from ingest.verify.node_bytes import encode_node, read_node
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


def test_reads_every_node_the_writer_writes() -> None:
    for data in _sample_nodes():
        fields = _as_read(data)
        assert _decoded(data) == fields
        assert read_node(data) == fields


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=300), st.binary(max_size=4), max_size=40))
def test_reads_nodes_of_any_keys(entries: dict[str, bytes]) -> None:
    # Suffixes past 23 and 255 bytes take the one- and two-byte length heads.
    tree = mst.build({k: CID.for_raw(v) for k, v in entries.items()})
    for data in tree.blocks.values():
        assert read_node(data) == _as_read(data)


def _node(entries: list[dict[str, object]], left: object = None) -> bytes:
    return dagcbor.encode({"l": left, "e": entries})


def test_gives_no_verdict_on_what_is_not_the_writers_form() -> None:
    key = b"fm.plyr.track/3aaaaaaaaaaaa"
    leaf = _value("leaf")
    good = _node([{"p": 0, "k": key, "v": leaf, "t": None}])
    assert read_node(good) == ([key], [leaf.raw], [None, None], [0])
    second = b"fm.plyr.track/3aaaaaaaaaaab"
    cases = [
        good.replace(b"\x61p\x00", b"\x61p\x18\x00"),  # a prefix length in two bytes
        good.replace(b"\x58\x1b", b"\x59\x00\x1b"),  # a key head in three bytes
        good.replace(b"\xa2\x61e\x81", b"\xa2\x61e\x98\x01"),  # the entry count in two bytes
        good.replace(b"\xa2\x61e\x81", b"\xa2\x61e\x82"),  # a count that is not the entries'
        good.replace(b"\xa2\x61e\x81", b"\xa2\x61e\x80"),
        good + b"\x00",  # trailing bytes
        good[:-1],  # truncated
        _node([{"p": 0, "k": key, "v": leaf.raw, "t": None}]),  # link as bytes
        _node([{"p": 0, "k": key.decode(), "v": leaf, "t": None}]),  # key as text
        _node([{"p": 0, "k": key, "v": CID.for_raw(b"x"), "t": None, "x": 1}]),  # a field more
        _node([], CID.from_bytes(b"\x01\x71\x13\x03abc")),  # a link that is not sha2-256
        _node([{"p": 3, "k": key, "v": leaf, "t": None}]),  # the first key sharing a prefix
        _node([{"p": 0, "k": key, "v": leaf, "t": None}, {"p": len(key) + 1, "k": b"b", "v": leaf, "t": None}]),
        _node([{"p": 0, "k": second, "v": leaf, "t": None}, {"p": 26, "k": b"a", "v": leaf, "t": None}]),  # order
        _node([{"p": 0, "k": key, "v": leaf, "t": None}, {"p": 20, "k": second[20:], "v": leaf, "t": None}]),
        _node([{"p": 0, "k": key, "v": leaf, "t": None}, {"p": 27, "k": b"", "v": leaf, "t": None}]),  # twice
        _node([{"p": 0, "k": b"fm.plyr.track/\xff", "v": leaf, "t": None}]),  # not UTF-8
        b"",
    ]
    for data in cases:
        assert read_node(data) is None, data


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(_sample_nodes()), st.data())
def test_whatever_it_reads_is_what_the_writer_writes_and_the_walker_reads(data: bytes, draw: st.DataObject) -> None:
    # Mutate a real node anywhere: bytes changed, cut out or put in. Whatever is still read is read
    # as the strict walker reads it, and the writer turns it back into the very same bytes.
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
    fields = read_node(bytes(mutated))
    if fields is not None:
        assert fields == _as_read(bytes(mutated))
        assert encode_node(*fields) == bytes(mutated)
