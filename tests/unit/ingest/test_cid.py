"""CIDv1: the interop CID syntax fixtures, the binary checks, hashing helpers and value semantics."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.ipld.cid import CID, DAG_CBOR, RAW, SHA2_256, CIDError
from tests.fixtures.interop import INTEROP_DIR

SYNTAX = INTEROP_DIR / "syntax"
RECORD_CID = "bafyreie5cvv4h45feadgeuwhbcutmh6t2ceseocckahdoe6uat64zmz454"
BLOB_CID = "bafkreiccldh766hwcnuxnf2wh6jgzepf2nlu2lvcllt63eww5p6chi4ity"


def _lines(name: str) -> list[str]:
    """Fixture lines that are not comments or blank; kept unstripped, since whitespace cases matter."""
    text = (SYNTAX / name).read_text()
    return [line for line in text.split("\n") if line.strip() and not line.startswith("#")]


VALID = _lines("cid_syntax_valid.txt")
INVALID = _lines("cid_syntax_invalid.txt")
# The valid file also lists CIDv0 and other multibases (base58btc "z", base64 "m", base16 "f",
# base10 "7"). atproto only writes CIDv1 in base32 ("b"), and this codec reads only that, so the
# others must be refused like any unreadable string.
VALID_BASE32 = [s for s in VALID if s.startswith("b")]
VALID_OTHER = [s for s in VALID if not s.startswith("b")]


def test_fixture_split_is_what_we_expect() -> None:
    assert len(VALID_BASE32) == 2 and len(VALID_OTHER) == 6 and len(INVALID) == 10


@pytest.mark.parametrize("text", VALID_BASE32)
def test_valid_base32_cids_parse_and_round_trip(text: str) -> None:
    cid = CID.decode(text)
    assert str(cid) == text and cid.encode() == text
    assert cid.version == 1 and cid.hash_code == SHA2_256 and len(cid.digest) == 32
    assert cid.codec == 0x70  # both are dag-pb IPFS examples: other codecs parse


@pytest.mark.parametrize("text", VALID_OTHER)
def test_valid_cids_in_other_bases_are_refused(text: str) -> None:
    with pytest.raises(CIDError):
        CID.decode(text)


@pytest.mark.parametrize("text", INVALID, ids=repr)
def test_invalid_cids_are_refused(text: str) -> None:
    with pytest.raises(CIDError):
        CID.decode(text)


def test_fields_of_atproto_cids() -> None:
    record, blob = CID.decode(RECORD_CID), CID.decode(BLOB_CID)
    assert (record.codec, record.hash_code) == (DAG_CBOR, SHA2_256)
    assert (blob.codec, blob.hash_code) == (RAW, SHA2_256)
    assert record.raw == bytes((1, DAG_CBOR, SHA2_256, 32)) + record.digest
    assert CID.from_bytes(record.raw) == record
    assert repr(record) == f"CID({RECORD_CID!r})"


def test_for_dag_cbor_for_raw_and_matches() -> None:
    data = b"\xa1ax\x01"
    cid = CID.for_dag_cbor(data)
    assert cid.codec == DAG_CBOR and cid.digest == hashlib.sha256(data).digest()
    assert cid.matches(data) and not cid.matches(data + b"\x00")
    blob = CID.for_raw(b"audio")
    assert blob.codec == RAW and blob.matches(b"audio") and blob != CID.for_dag_cbor(b"audio")
    assert CID.decode(str(blob)) == blob


def test_value_semantics() -> None:
    a = CID.for_raw(b"a")
    assert {a, CID.from_bytes(bytes(a.raw)), CID.for_raw(b"b")} == {a, CID.for_raw(b"b")}
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.raw = b""  # type: ignore[misc]
    from_mutable = CID.from_bytes(bytearray(a.raw))  # type: ignore[arg-type]
    assert type(from_mutable.raw) is bytes and hash(from_mutable) == hash(a)


def test_multibyte_varints_parse() -> None:
    # dag-json (0x0129) needs a two-byte codec varint: the slow path must agree with the fast one.
    digest = hashlib.sha256(b"{}").digest()
    cid = CID.from_bytes(bytes((1, 0xA9, 0x02, SHA2_256, 32)) + digest)
    assert (cid.codec, cid.hash_code, cid.digest) == (0x0129, SHA2_256, digest)
    assert cid.matches(b"{}") and CID.decode(str(cid)) == cid


def test_other_hash_functions_parse_but_never_match() -> None:
    identity = CID.from_bytes(bytes((1, RAW, 0x00, 3)) + b"abc")
    assert identity.hash_code == 0 and identity.digest == b"abc" and not identity.matches(b"abc")


DIGEST = bytes(range(32))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        bytes((0x12, 0x20)) + DIGEST,  # CIDv0: a bare sha2-256 multihash
        bytes((0, DAG_CBOR, SHA2_256, 32)) + DIGEST,  # version 0 spelled as v1
        bytes((2, DAG_CBOR, SHA2_256, 32)) + DIGEST,  # unknown version
        bytes((1, DAG_CBOR, SHA2_256, 32)) + DIGEST[:31],  # truncated digest
        bytes((1, DAG_CBOR, SHA2_256, 32)) + DIGEST + b"\x00",  # trailing byte
        bytes((1, DAG_CBOR, SHA2_256, 31)) + DIGEST[:31],  # sha2-256 must be 32 bytes
        bytes((1, 0xF1, 0x00, SHA2_256, 32)) + DIGEST,  # non-minimal codec varint
        bytes((1, DAG_CBOR, SHA2_256)),  # no length
        bytes((1,)) + b"\xff" * 10,  # varint longer than 9 bytes
    ],
)
def test_from_bytes_refuses(raw: bytes) -> None:
    with pytest.raises(CIDError):
        CID.from_bytes(raw)


@pytest.mark.parametrize(
    "text",
    [
        RECORD_CID.upper(),  # "B" is the upper-case multibase, not used by atproto
        "b" + RECORD_CID[1:].upper(),
        RECORD_CID + "====",
        RECORD_CID[:-1] + "5",  # same bytes, non-zero spare bits: a second spelling
        RECORD_CID[:-1],  # dangling character
        RECORD_CID + "\n",
        "b",
        "bé" + RECORD_CID[2:],
        "b" + "a" * 600,
    ],
)
def test_decode_refuses_non_canonical_strings(text: str) -> None:
    with pytest.raises(CIDError):
        CID.decode(text)


def test_from_prefix_reads_a_cid_inside_a_buffer() -> None:
    cid = CID.for_raw(b"x")
    data = b"junk" + cid.raw + b"block"
    assert CID.from_prefix(data, 4) == (cid, 4 + len(cid.raw))
    with pytest.raises(CIDError):
        CID.from_prefix(data[: 4 + len(cid.raw) - 1], 4)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=48))
def test_from_bytes_only_raises_cid_error(raw: bytes) -> None:
    try:
        cid = CID.from_bytes(raw)
    except CIDError:
        return
    assert CID.decode(str(cid)) == cid


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_decode_only_raises_cid_error(text: str) -> None:
    try:
        cid = CID.decode(text)
    except CIDError:
        return
    assert str(cid) == text
