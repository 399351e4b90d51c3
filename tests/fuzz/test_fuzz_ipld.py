"""Fuzz the strict DAG-CBOR codec (ingest/ipld/dagcbor.py) and the CAR reader (ingest/ipld/car.py),
seeded with the blocks and CAR slices of real frames.

Allowed outcomes: ``dagcbor.decode`` gives a value or DagCborError (with a reason from REASONS), and
what it accepts is canonical (``encode(decode(b)) == b``); ``from_json`` gives a value or DagCborError;
``read_car`` gives a CarFile or CarError, and ``get_verified`` a block, None or CarError(cid_mismatch).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.ipld import dagcbor
from ingest.ipld.car import CarError, CarFile, read_car, write_car
from ingest.ipld.cid import CID
from ingest.ipld.varint import encode_varint
from tests.fuzz import seeds
from tests.fuzz.harness import Refused, attempt, fuzz
from tests.fuzz.strategies import ANY_CBOR, DEEP, JSON, VALUES, deep_json, mutated, random_cbor

pytestmark = pytest.mark.fuzz


def _decode(data: bytes) -> None:
    value = attempt("dagcbor.decode", (dagcbor.DagCborError,), dagcbor.decode, data)
    if isinstance(value, Refused):
        assert isinstance(value.error, dagcbor.DagCborError) and value.error.reason in dagcbor.REASONS
        return
    assert dagcbor.encode(value) == data, "an accepted encoding must be the canonical one"
    as_json = attempt("dagcbor.to_json", (dagcbor.DagCborError,), dagcbor.to_json, value)
    if not isinstance(as_json, Refused):
        back = attempt("dagcbor.from_json", (dagcbor.DagCborError,), dagcbor.from_json, as_json)
        assert isinstance(back, Refused) or back == value


@fuzz(500)
@given(mutated(seeds.blocks()))
def test_dagcbor_mutated_real_blocks(data: bytes) -> None:
    _decode(data)


@fuzz(300)
@given(ANY_CBOR)
def test_dagcbor_any_cbor(data: bytes) -> None:
    _decode(data)


@fuzz(40)
@given(DEEP)
def test_dagcbor_deep(data: bytes) -> None:
    _decode(data)


@fuzz(300)
@given(JSON)
def test_dagcbor_from_any_json(value: object) -> None:
    back = attempt("dagcbor.from_json", (dagcbor.DagCborError,), dagcbor.from_json, value)
    if not isinstance(back, Refused):
        attempt("dagcbor.encode", (dagcbor.DagCborError,), dagcbor.encode, back)


@fuzz(10)
@given(st.sampled_from([63, 64, 65, 1_000, 100_000]), st.booleans())
def test_dagcbor_deep_values(depth: int, as_list: bool) -> None:
    value = deep_json(depth, 1, as_list=as_list)
    attempt("dagcbor.from_json", (dagcbor.DagCborError,), dagcbor.from_json, value)
    attempt("dagcbor.encode", (dagcbor.DagCborError,), dagcbor.encode, value)
    attempt("dagcbor.to_json", (dagcbor.DagCborError,), dagcbor.to_json, value)


@fuzz(200)
@given(VALUES)
def test_dagcbor_round_trip(value: object) -> None:
    data = dagcbor.encode(value)
    assert dagcbor.decode(data) == value


def _read(data: bytes) -> None:
    car = attempt("car.read_car", (CarError,), lambda: read_car(data, max_blocks=2_000))
    if isinstance(car, Refused):
        return
    assert isinstance(car, CarFile)
    for cid in list(car.blocks)[:20]:
        block = attempt("car.get_verified", (CarError,), car.get_verified, cid)
        assert isinstance(block, Refused) or block is None or block == car.blocks[cid]


@fuzz(500)
@given(mutated(seeds.cars()))
def test_car_mutated_real_slices(data: bytes) -> None:
    _read(data)


@st.composite
def _built_cars(draw: st.DrawFn) -> bytes:
    """CARs put together from parts: real or random headers, sections whose lengths, CIDs and blocks
    may each be wrong, and many tiny blocks."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    blocks = seeds.blocks()
    if rng.random() < 0.8:
        roots = [CID.for_dag_cbor(rng.choice(blocks)) for _ in range(rng.choice((0, 1, 1, 2)))]
        header = dagcbor.encode({"version": rng.choice((1, 1, 1, 2, 0)), "roots": roots})
    else:
        header = random_cbor(rng)
    out = bytearray(encode_varint(len(header)) + header)
    for _ in range(rng.choice((0, 1, 3, 10, 300))):
        block = rng.choice(blocks) if rng.random() < 0.5 else rng.randbytes(rng.randint(0, 4))
        cid = CID.for_dag_cbor(block).raw
        roll = rng.random()
        if roll < 0.1:
            cid = CID.for_dag_cbor(b"other").raw  # a block under another block's CID
        elif roll < 0.2:
            cid = bytes((1, 0x55, 0x00, 0))  # identity hash, empty digest: the tiniest CID
            block = b""
        elif roll < 0.25:
            cid = rng.randbytes(rng.randint(0, 40))
        length = len(cid) + len(block)
        if rng.random() < 0.05:
            length = rng.choice((0, length - 1, length + 1, 2**62))
        out += encode_varint(max(0, length)) + cid + block
    return bytes(out)


@fuzz(400)
@given(_built_cars())
def test_car_built_from_parts(data: bytes) -> None:
    _read(data)


def test_car_with_a_million_tiny_blocks_is_refused_quickly() -> None:
    # Five bytes a section (length, then a CIDv1 with an empty identity digest): 1,000,000 blocks in 5 MB.
    section = encode_varint(4) + bytes((1, 0x55, 0x00, 0))
    data = write_car([], {}) + section * 1_000_000
    with pytest.raises(CarError) as err:
        read_car(data)
    assert err.value.reason == "too_many_blocks"
