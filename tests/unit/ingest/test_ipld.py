"""CID, strict DAG-CBOR and CAR against atproto's data-model fixtures, plus what must be refused."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.ipld import dagcbor
from ingest.ipld.car import CarError, read_car, write_car
from ingest.ipld.cid import CID, CIDError
from tests.fixtures.interop import INTEROP_DIR

FIXTURES = json.loads((INTEROP_DIR / "data-model" / "data-model-fixtures.json").read_text())


def b64(s: str) -> bytes:
    return base64.b64decode(s + "=" * (-len(s) % 4))


@pytest.mark.parametrize("case", FIXTURES, ids=[str(i) for i in range(len(FIXTURES))])
def test_data_model_fixtures(case: dict[str, Any]) -> None:
    cbor = b64(case["cbor_base64"])
    assert dagcbor.to_json(dagcbor.decode(cbor)) == case["json"]
    assert dagcbor.encode(dagcbor.from_json(case["json"])) == cbor
    assert str(CID.for_dag_cbor(cbor)) == case["cid"]


def test_links_and_bytes_stay_apart() -> None:
    cid = CID.for_raw(b"x")
    value = {"link": cid, "bytes": cid.raw}
    back = dagcbor.to_json(dagcbor.decode(dagcbor.encode(value)))
    assert back == {
        "link": {"$link": str(cid)},
        "bytes": {"$bytes": base64.b64encode(cid.raw).decode().rstrip("=")},
    }


def test_cid_string_round_trip_and_errors() -> None:
    s = "bafyreie5cvv4h45feadgeuwhbcutmh6t2ceseocckahdoe6uat64zmz454"
    cid = CID.decode(s)
    assert str(cid) == s and cid.codec == 0x71 and cid.hash_code == 0x12 and len(cid.digest) == 32
    for bad in [
        "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
        "bafy",
        "b!!!!",
        "zb2rhe5P4gXftAwvA4eXQ5HJwsER2owDyS9sKaQRRVQPn93bA",
    ]:
        with pytest.raises(CIDError):
            CID.decode(bad)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x18\x05", "non_canonical"),  # 5 encoded in two bytes
        (b"\xa2\x61b\x01\x61a\x02", "non_canonical"),  # keys out of order
        (b"\xa2\x61a\x01\x61a\x02", "bad_key"),  # duplicate key
        (b"\xa1\x01\x02", "bad_key"),  # integer key
        (b"\xfb\x3f\xf0\x00\x00\x00\x00\x00\x00", "unsupported_type"),  # float 1.0
        (b"\xc1\x00", "unsupported_type"),  # tag 1
        (b"\x01\x02", "trailing_bytes"),
        (b"\x62a", "truncated"),
        (b"\x9f\xff", "non_canonical"),  # indefinite-length array
        (b"\x62\xff\xfe", "invalid_utf8"),
        (b"\x81" * 100 + b"\x01", "too_deep"),
        (b"\xd8\x2a\x42\x01\x02", "bad_cid"),  # tag 42 without the 0x00 prefix
        (b"\xf7", "unsupported_type"),  # undefined
        (b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff", "truncated"),  # absurd array length
    ],
)
def test_decode_refuses(data: bytes, reason: str) -> None:
    with pytest.raises(dagcbor.DagCborError) as info:
        dagcbor.decode(data)
    assert info.value.reason == reason


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_decode_never_raises_anything_else(data: bytes) -> None:
    try:
        dagcbor.decode(data)
    except dagcbor.DagCborError:
        pass


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.builds(CID.for_raw, st.binary(max_size=8)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_round_trip(value: Any) -> None:
    data = dagcbor.encode(value)
    assert dagcbor.decode(data) == value
    assert dagcbor.encode(dagcbor.decode(data)) == data


def test_car_round_trip_and_verification() -> None:
    blocks = {CID.for_dag_cbor(dagcbor.encode({"n": i})): dagcbor.encode({"n": i}) for i in range(5)}
    root = next(iter(blocks))
    car = read_car(write_car([root], blocks))
    assert car.roots == (root,) and car.blocks == blocks
    assert car.get_verified(root) == blocks[root]
    assert car.get_verified(CID.for_raw(b"absent")) is None
    forged = read_car(write_car([root], {root: dagcbor.encode({"n": 99})}))
    with pytest.raises(CarError) as info:
        forged.get_verified(root)
    assert info.value.reason == "cid_mismatch"


@pytest.mark.parametrize("cut", [1, 5, 30, -3])
def test_truncated_car(cut: int) -> None:
    blocks = {CID.for_dag_cbor(b"\xa0"): b"\xa0"}
    data = write_car(list(blocks), blocks)
    with pytest.raises(CarError):
        read_car(data[:cut])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_read_car_never_raises_anything_else(data: bytes) -> None:
    try:
        read_car(data)
    except CarError:
        pass
