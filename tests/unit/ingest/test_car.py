"""CAR v1: round trips, lazy verification, truncation and malformed headers and sections."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.ipld import dagcbor
from ingest.ipld.car import CarError, CarFile, read_car, write_car
from ingest.ipld.cid import CID
from ingest.ipld.varint import encode_varint
from ingest.verify import mst
from tests.fixtures.interop import INTEROP_DIR


def _blocks(n: int) -> dict[CID, bytes]:
    out = {}
    for i in range(n):
        data = dagcbor.encode({"n": i, "pad": "x" * i})
        out[CID.for_dag_cbor(data)] = data
    return out


def _car_with_header(header: object, blocks: bytes = b"") -> bytes:
    raw = dagcbor.encode(header)
    return encode_varint(len(raw)) + raw + blocks


def _section(cid_raw: bytes, block: bytes) -> bytes:
    return encode_varint(len(cid_raw) + len(block)) + cid_raw + block


def test_round_trip_and_verification() -> None:
    blocks = _blocks(5)
    root = next(iter(blocks))
    car = read_car(write_car([root], blocks))
    assert isinstance(car, CarFile)
    assert car.roots == (root,) and car.blocks == blocks
    assert list(car.blocks) == list(blocks)  # file order is kept
    assert all(car.get_verified(cid) == data for cid, data in blocks.items())
    assert car.get_verified(CID.for_raw(b"absent")) is None


def test_wrong_block_is_caught_only_when_used() -> None:
    blocks = _blocks(2)
    victim, other = list(blocks)
    forged = read_car(write_car([victim], {victim: b"\xa1anc", other: blocks[other]}))
    assert forged.blocks[victim] == b"\xa1anc"  # reading does not hash
    assert forged.get_verified(other) == blocks[other]
    with pytest.raises(CarError) as info:
        forged.get_verified(victim)
    assert info.value.reason == "cid_mismatch"


def test_raw_blocks_and_empty_roots() -> None:
    blob = CID.for_raw(b"audio bytes")
    car = read_car(write_car([], {blob: b"audio bytes"}))
    assert car.roots == () and car.get_verified(blob) == b"audio bytes"
    assert read_car(write_car([blob], {})).blocks == {}


def test_repeated_cid_keeps_the_first_block() -> None:
    cid = CID.for_dag_cbor(b"\xa0")
    data = _car_with_header({"version": 1, "roots": [cid]}, _section(cid.raw, b"\xa0") + _section(cid.raw, b"\xf6"))
    assert read_car(data).blocks == {cid: b"\xa0"}


def test_every_cut_inside_a_section_is_truncated() -> None:
    blocks = _blocks(3)
    data = write_car(list(blocks)[:1], blocks)
    boundaries = {len(data)}
    header_len = data[0] + 1
    pos = header_len
    boundaries.add(pos)
    for cid, block in blocks.items():
        pos += len(_section(cid.raw, block))
        boundaries.add(pos)
    for cut in range(len(data)):
        if cut in boundaries:
            # A cut between sections is a shorter but valid CAR: the missing blocks are just absent.
            assert set(read_car(data[:cut]).blocks) <= set(blocks)
            continue
        with pytest.raises(CarError) as info:
            read_car(data[:cut])
        assert info.value.reason in {"truncated", "bad_header", "bad_cid", "bad_section"}, cut


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\x80", "truncated"),
        (b"\x80\x00", "bad_varint"),
        (_car_with_header([1]), "bad_header"),
        (_car_with_header({"version": 2, "roots": []}), "bad_header"),
        (_car_with_header({"version": True, "roots": []}), "bad_header"),
        (_car_with_header({"roots": []}), "bad_header"),
        (_car_with_header({"version": 1}), "bad_header"),
        (_car_with_header({"version": 1, "roots": [b"\x01"]}), "bad_header"),
        (_car_with_header({"version": 1, "roots": {}}), "bad_header"),
        (b"\x02\x18\x01", "bad_header"),  # non-canonical header CBOR
        (b"\x0a\xa0", "truncated"),
        (_car_with_header({"version": 1, "roots": []}, b"\x00"), "bad_cid"),  # empty section
        (
            _car_with_header({"version": 1, "roots": []}, _section(bytes((0x12, 0x20)) + bytes(32), b"x")),
            "bad_cid",
        ),  # CIDv0
        (
            _car_with_header({"version": 1, "roots": []}, encode_varint(10) + CID.for_raw(b"x").raw + b"tail-bytes"),
            "bad_section",
        ),  # the section ends inside its CID
    ],
)
def test_read_refuses(data: bytes, reason: str) -> None:
    with pytest.raises(CarError) as info:
        read_car(data)
    assert info.value.reason == reason


def test_limits() -> None:
    blocks = _blocks(4)
    data = write_car([], blocks)
    assert len(read_car(data, max_blocks=4).blocks) == 4
    with pytest.raises(CarError) as info:
        read_car(data, max_blocks=3)
    assert info.value.reason == "too_many_blocks"
    biggest = max(len(cid.raw) + len(block) for cid, block in blocks.items())
    assert len(read_car(data, max_block_size=biggest).blocks) == 4
    with pytest.raises(CarError) as info:
        read_car(data, max_block_size=biggest - 1)
    assert info.value.reason == "too_large"


def test_commit_proof_tree_travels_in_a_car() -> None:
    case = json.loads((INTEROP_DIR / "firehose" / "commit-proof-fixtures.json").read_text())[0]
    tree = mst.build(dict.fromkeys(case["keys"], CID.decode(case["leafValue"])))
    car = read_car(write_car([tree.root], tree.blocks))
    verified = {cid: block for cid in car.blocks if (block := car.get_verified(cid)) is not None}
    assert [k for k, _ in mst.walk(car.roots[0], verified)] == sorted(case["keys"])


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_read_car_never_raises_anything_else(data: bytes) -> None:
    with contextlib.suppress(CarError):
        read_car(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=255))
def test_read_car_on_corrupted_bytes(position: int, byte: int) -> None:
    data = bytearray(write_car(list(_blocks(1)), _blocks(3)))
    data[position % len(data)] = byte
    with contextlib.suppress(CarError):
        read_car(bytes(data))
