"""Strict DAG-CBOR against atproto's data-model fixtures, the canonical form, and what must be refused."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.ipld import dagcbor
from ingest.ipld.cid import CID
from tests.fixtures.interop import INTEROP_DIR

DATA_MODEL = INTEROP_DIR / "data-model"
FIXTURES = json.loads((DATA_MODEL / "data-model-fixtures.json").read_text())
VALID = json.loads((DATA_MODEL / "data-model-valid.json").read_text())
INVALID = json.loads((DATA_MODEL / "data-model-invalid.json").read_text())

# data-model-invalid.json mixes codec-level faults (refused here) with record/lexicon-level ones
# ($type and blob shape), which are a validator's job, not the codec's: those must still encode.
CODEC_INVALID = {
    "float",
    "bytes with wrong field type",
    "bytes with extra fields",
    "link with wrong field type",
    "link with bogus CID",
    "link with extra fields",
}
RECORD_INVALID = {
    "top-level not an object",
    "record with $type null",
    "record with $type wrong type",
    "record with empty $type string",
    "blob with string size",
    "blob with missing key",
}


def _b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize("case", FIXTURES, ids=[f"fixture{i}" for i in range(len(FIXTURES))])
def test_data_model_fixtures(case: dict[str, Any]) -> None:
    cbor = _b64(case["cbor_base64"])
    assert dagcbor.to_json(dagcbor.decode(cbor)) == case["json"]
    assert dagcbor.encode(dagcbor.from_json(case["json"])) == cbor
    assert str(CID.for_dag_cbor(cbor)) == case["cid"]


@pytest.mark.parametrize("case", VALID, ids=[c["note"] for c in VALID])
def test_data_model_valid(case: dict[str, Any]) -> None:
    value = dagcbor.from_json(case["json"])
    data = dagcbor.encode(value)
    assert dagcbor.decode(data) == value
    assert dagcbor.to_json(value) == case["json"]


def test_integer_like_floats_from_json_are_integers() -> None:
    # JSON has one number type; data-model-valid.json calls 123.0 valid, so it is the integer 123.
    assert type(dagcbor.from_json(123.0)) is int
    for bad in [123.5, float("inf"), float("nan"), 2.0**63]:
        with pytest.raises(dagcbor.DagCborError) as info:
            dagcbor.from_json(bad)
        assert info.value.reason == "unsupported_type"


def test_data_model_invalid_notes_are_all_classified() -> None:
    assert {c["note"] for c in INVALID} == CODEC_INVALID | RECORD_INVALID


@pytest.mark.parametrize("case", [c for c in INVALID if c["note"] in CODEC_INVALID], ids=lambda c: c["note"])
def test_data_model_invalid_at_codec_level(case: dict[str, Any]) -> None:
    with pytest.raises(dagcbor.DagCborError) as info:
        dagcbor.encode(dagcbor.from_json(case["json"]))
    assert info.value.reason in {"bad_json", "bad_cid", "unsupported_type"}


@pytest.mark.parametrize("case", [c for c in INVALID if c["note"] in RECORD_INVALID], ids=lambda c: c["note"])
def test_data_model_invalid_at_record_level_still_encodes(case: dict[str, Any]) -> None:
    value = dagcbor.from_json(case["json"])
    assert dagcbor.decode(dagcbor.encode(value)) == value


def test_links_and_bytes_stay_apart() -> None:
    cid = CID.for_raw(b"x")
    back = dagcbor.to_json(dagcbor.decode(dagcbor.encode({"link": cid, "bytes": cid.raw})))
    assert back == {
        "link": {"$link": str(cid)},
        "bytes": {"$bytes": base64.b64encode(cid.raw).decode().rstrip("=")},
    }


def test_blob_json_shape() -> None:
    ref = CID.for_raw(b"audio")
    blob = {"$type": "blob", "ref": ref, "mimeType": "audio/mpeg", "size": 5}
    assert dagcbor.to_json(dagcbor.decode(dagcbor.encode(blob))) == {
        "$type": "blob",
        "ref": {"$link": str(ref)},
        "mimeType": "audio/mpeg",
        "size": 5,
    }


def test_bytes_json_padding() -> None:
    assert dagcbor.to_json(b"\x01") == {"$bytes": "AQ"}
    assert dagcbor.from_json({"$bytes": "AQ"}) == b"\x01"
    assert dagcbor.from_json({"$bytes": "AQ=="}) == b"\x01"
    assert dagcbor.from_json({"$bytes": ""}) == b""
    for bad in ["A", "-_8", "AQ=A"]:
        with pytest.raises(dagcbor.DagCborError) as info:
            dagcbor.from_json({"$bytes": bad})
        assert info.value.reason == "bad_json"


@pytest.mark.parametrize(
    ("value", "hex_bytes"),
    [
        (0, "00"),
        (23, "17"),
        (24, "1818"),
        (255, "18ff"),
        (256, "190100"),
        (65535, "19ffff"),
        (65536, "1a00010000"),
        (2**32 - 1, "1affffffff"),
        (2**32, "1b0000000100000000"),
        (2**63 - 1, "1b7fffffffffffffff"),
        (-1, "20"),
        (-25, "3818"),
        (-(2**63), "3b7fffffffffffffff"),
        ("", "60"),
        (b"", "40"),
        ([], "80"),
        ({}, "a0"),
        ({"bb": 1, "a": 2, "c": 3}, "a3616102616303626262" + "01"),  # length first, then bytewise
        ({"é": 1, "z": 2}, "a2617a0262c3a901"),  # one-byte "z" sorts before two-byte "é"
    ],
)
def test_canonical_encoding(value: Any, hex_bytes: str) -> None:
    data = bytes.fromhex(hex_bytes)
    assert dagcbor.encode(value) == data
    assert dagcbor.decode(data) == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (1.5, "unsupported_type"),
        (1.0, "unsupported_type"),
        (2**63, "unsupported_type"),
        (-(2**63) - 1, "unsupported_type"),
        ({1: "x"}, "bad_key"),
        ({"a": object()}, "unsupported_type"),
        ("\ud800", "invalid_utf8"),
        ({"\ud800": 1}, "invalid_utf8"),
    ],
)
def test_encode_refuses(value: Any, reason: str) -> None:
    with pytest.raises(dagcbor.DagCborError) as info:
        dagcbor.encode(value)
    assert info.value.reason == reason


def test_encode_depth_matches_decode_default() -> None:
    deepest: Any = 1
    for _ in range(dagcbor.MAX_DEPTH):
        deepest = [deepest]
    assert dagcbor.decode(dagcbor.encode(deepest)) == deepest
    with pytest.raises(dagcbor.DagCborError) as info:
        dagcbor.encode([deepest])
    assert info.value.reason == "too_deep"


CID_BYTES = CID.for_raw(b"x").raw


@pytest.mark.parametrize(
    ("hex_bytes", "reason"),
    [
        ("1805", "non_canonical"),  # 5 in two bytes
        ("190005", "non_canonical"),
        ("1a000000ff", "non_canonical"),
        ("1b00000000ffffffff", "non_canonical"),
        ("3800", "non_canonical"),  # -1 in two bytes
        ("5801ff", "non_canonical"),  # byte-string length in two bytes
        ("a2616201616102", "non_canonical"),  # keys out of order ("b" before "a")
        ("a262616101616202", "non_canonical"),  # longer key before shorter
        ("a2616101616102", "bad_key"),  # duplicate key
        ("a10102", "bad_key"),  # integer key
        ("a1410102", "bad_key"),  # byte-string key
        ("fb3ff0000000000000", "unsupported_type"),  # float64 1.0
        ("f93c00", "unsupported_type"),  # float16 1.0
        ("fa3f800000", "unsupported_type"),  # float32 1.0
        ("f7", "unsupported_type"),  # undefined
        ("f0", "unsupported_type"),  # simple value 16
        ("f820", "unsupported_type"),  # simple value 32
        ("c100", "unsupported_type"),  # tag 1 (epoch time)
        ("d82b4100", "unsupported_type"),  # tag 43
        ("d9002a4100", "non_canonical"),  # tag 42 in a three-byte head
        ("1bffffffffffffffff", "unsupported_type"),  # uint64 max, outside int64
        ("3b8000000000000000", "unsupported_type"),  # -2**63 - 1
        ("0102", "trailing_bytes"),
        ("a0a0", "trailing_bytes"),
        ("", "truncated"),
        ("6261", "truncated"),
        ("19ff", "truncated"),
        ("8201", "truncated"),
        ("a16161", "truncated"),
        ("a1", "truncated"),
        ("9bffffffffffffffff", "truncated"),  # absurd array length
        ("bb7fffffffffffffff", "truncated"),  # absurd map length
        ("9f01ff", "non_canonical"),  # indefinite-length array
        ("bf6161" + "01ff", "non_canonical"),  # indefinite-length map
        ("7f6161ff", "non_canonical"),  # indefinite-length string
        ("1c", "non_canonical"),  # reserved additional info 28
        ("ff", "unsupported_type"),  # a lone break
        ("62fffe", "invalid_utf8"),
        ("63eda080", "invalid_utf8"),  # an encoded surrogate
        ("62c0af", "invalid_utf8"),  # overlong "/"
        ("a162fffe01", "invalid_utf8"),  # invalid key
        ("81" * 65 + "01", "too_deep"),
        ("a1616181" * 33 + "01", "too_deep"),
        ("d82a4101", "bad_cid"),  # no 0x00 prefix
        ("d82a40", "bad_cid"),  # empty
        ("d82a01", "bad_cid"),  # not a byte string
        ("d82a5823" + "00" + "1220" + "00" * 32, "bad_cid"),  # CIDv0 inside
        ("d82a4300" + "0171", "bad_cid"),  # truncated CID
        ("d82a5825" + "00" + CID_BYTES.hex()[:-2], "truncated"),
    ],
)
def test_decode_refuses(hex_bytes: str, reason: str) -> None:
    with pytest.raises(dagcbor.DagCborError) as info:
        dagcbor.decode(bytes.fromhex(hex_bytes))
    assert info.value.reason == reason
    assert reason in dagcbor.REASONS


def test_decode_max_depth() -> None:
    data = dagcbor.encode([[1]])
    assert dagcbor.decode(data, max_depth=2) == [[1]]
    with pytest.raises(dagcbor.DagCborError):
        dagcbor.decode(data, max_depth=1)
    assert dagcbor.decode(b"\x01", max_depth=0) == 1
    # A caller-raised limit past the interpreter's stack still fails as DagCborError.
    with pytest.raises(dagcbor.DagCborError) as info:
        dagcbor.decode(b"\x81" * 100_000 + b"\x01", max_depth=10**6)
    assert info.value.reason == "too_deep"


def test_decode_returns_cids_for_links() -> None:
    cid = CID.for_dag_cbor(b"\xa0")
    data = bytes.fromhex("d82a5825") + b"\x00" + cid.raw
    assert dagcbor.decode(data) == cid
    assert dagcbor.encode(cid) == data
    assert dagcbor.decode(bytearray(data)) == cid  # type: ignore[arg-type]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_decode_never_raises_anything_else(data: bytes) -> None:
    try:
        value = dagcbor.decode(data)
    except dagcbor.DagCborError as err:
        assert err.reason in dagcbor.REASONS
        return
    assert dagcbor.encode(value) == data  # whatever is accepted is canonical


def _mutations(data: bytes) -> st.SearchStrategy[bytes]:
    positions = st.integers(min_value=0, max_value=max(len(data) - 1, 0))
    return st.tuples(positions, st.integers(min_value=0, max_value=255)).map(
        lambda pb: data[: pb[0]] + bytes((pb[1],)) + data[pb[0] + 1 :]
    )


VALID_RECORD = _b64(FIXTURES[1]["cbor_base64"])


@settings(max_examples=500, deadline=None)
@given(_mutations(VALID_RECORD))
def test_one_byte_mutations_of_a_record(data: bytes) -> None:
    try:
        value = dagcbor.decode(data)
    except dagcbor.DagCborError:
        return
    assert dagcbor.encode(value) == data


VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=dagcbor.INT64_MIN, max_value=dagcbor.INT64_MAX)
    | st.text(max_size=20)
    | st.binary(max_size=40)
    | st.builds(CID.for_raw, st.binary(max_size=8))
    | st.builds(CID.for_dag_cbor, st.binary(max_size=8)),
    # "$link"/"$bytes" as plain keys have no atproto JSON form, so keys here never start with "$".
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8).filter(lambda k: not k.startswith("$")), inner, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_round_trip(value: Any) -> None:
    data = dagcbor.encode(value)
    assert dagcbor.decode(data) == value
    assert dagcbor.encode(dagcbor.decode(data)) == data
    assert dagcbor.from_json(json.loads(json.dumps(dagcbor.to_json(value)))) == value
