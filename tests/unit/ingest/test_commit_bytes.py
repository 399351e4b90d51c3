"""The commit block's fast reader: it reads exactly what the strict decoder reads, or leaves it to it."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.ipld import dagcbor
from ingest.ipld.cid import CID
from ingest.verify.commit_bytes import CommitFields, read_canonical_commit

DATA = CID.for_dag_cbor(b"data")
PREV = CID.for_dag_cbor(b"prev")
SIG = bytes(range(64))


def _commit(**changes: Any) -> dict[str, Any]:
    fields = {"did": "did:plc:abc", "version": 3, "data": DATA, "rev": "3kabcdefghijk", "prev": None, "sig": SIG}
    return fields | changes


def _strict(block: bytes) -> CommitFields | None:
    """What the general road reads, in the fast reader's terms, for the blocks the reader covers."""
    obj = dagcbor.decode(block)
    unsigned = dagcbor.encode({k: v for k, v in obj.items() if k != "sig"})
    return CommitFields(obj["did"], obj["rev"], obj["data"], obj["prev"], obj["sig"], unsigned)


def test_reads_the_canonical_v3_commit() -> None:
    for fields in (_commit(), _commit(prev=PREV), _commit(did="did:web:" + "x" * 200), _commit(did="did:plc:é")):
        block = dagcbor.encode(fields)
        assert read_canonical_commit(block) == _strict(block)


def test_leaves_everything_else_to_the_strict_decoder() -> None:
    others = [
        _commit(version=2),
        _commit(extra=1),
        _commit(rev="3kabc"),
        _commit(sig=SIG[:63]),
        _commit(did="did:web:" + "x" * 300),
        _commit(data=CID(b"\x01\x71\x00\x03abc")),
        _commit(prev=b"\x00" * 36),
    ]
    missing = _commit()
    del missing["prev"]
    for fields in [*others, missing]:
        assert read_canonical_commit(dagcbor.encode(fields)) is None
    block = dagcbor.encode(_commit())
    assert read_canonical_commit(block[:-1]) is None
    assert read_canonical_commit(block + b"\x00") is None
    # A non-minimal text head for the did (0x78 with a length below 24).
    assert read_canonical_commit(b"\xa6\x63did\x78\x0b" + block[6:]) is None


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0), st.integers(min_value=1, max_value=255), st.booleans())
def test_a_changed_byte_is_read_as_the_strict_decoder_reads_it_or_refused(position: int, xor: int, prev: bool) -> None:
    block = bytearray(dagcbor.encode(_commit(prev=PREV if prev else None)))
    block[position % len(block)] ^= xor
    fields = read_canonical_commit(bytes(block))
    if fields is not None:
        assert fields == _strict(bytes(block))
