"""Binary CIDv1 values (atproto.com/specs/data-model#link-and-cid-formats, github.com/multiformats/cid).

Owns :class:`CID`, a link held as its binary form ``<version><codec><multihash code><digest length>
<digest>`` (all varints but the digest). Invariants, checked on every construction: version is 1 (CIDv0
and anything else is refused), the four varints are minimal, the digest is exactly as long as the
multihash says, and a sha2-256 digest is 32 bytes. Equality and hashing are on ``raw`` alone.

atproto blesses dag-cbor (records, MST nodes, commits) and raw (blobs) with sha2-256, written as
multibase base32 lowercase (prefix ``b``). Other codecs and hash functions parse, because a CID is only
ever compared or hashed here, but :meth:`CID.matches` is false for anything but sha2-256.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ingest.ipld.varint import VarintError, read_varint

DAG_CBOR = 0x71
RAW = 0x55
SHA2_256 = 0x12

_MAX_STRING = 512
_SHA2_256_DIGEST = 32
_DAG_CBOR_SHA256_PREFIX = bytes((1, DAG_CBOR, SHA2_256, _SHA2_256_DIGEST))
_RAW_SHA256_PREFIX = bytes((1, RAW, SHA2_256, _SHA2_256_DIGEST))
_SHA256_CID = 4 + _SHA2_256_DIGEST

# RFC 4648 base32, lower case. The stdlib codec is pure Python before 3.13 and several times slower
# than going through int(), which matters because every link in every record is turned into a string.
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
_BASE32_BODY = re.compile("[a-z2-7]+")
_TO_INT_DIGITS = str.maketrans(_BASE32, "0123456789abcdefghijklmnopqrstuv")
_BASE32_PAIRS = tuple(a + b for a in _BASE32 for b in _BASE32)


class CIDError(ValueError):
    """Not a CIDv1 this project can read."""


def _b32encode(raw: bytes) -> str:
    """Unpadded lower-case base32 of ``raw``."""
    nbits = len(raw) * 8
    chars = -(-nbits // 5)
    pairs = -(-nbits // 10)
    value = int.from_bytes(raw, "big") << (pairs * 10 - nbits)
    text = "".join([_BASE32_PAIRS[(value >> shift) & 0x3FF] for shift in range(pairs * 10 - 10, -1, -10)])
    return text[:chars]


def _b32decode(text: str) -> bytes:
    """The bytes of unpadded lower-case base32, refusing any other spelling of them."""
    if not _BASE32_BODY.fullmatch(text):
        raise CIDError("base32 body must be [a-z2-7]+")
    nbits = len(text) * 5
    nbytes, spare = divmod(nbits, 8)
    value = int(text.translate(_TO_INT_DIGITS), 32)
    # RFC 4648 leaves fewer than 5 spare bits, all zero; anything else is a second spelling.
    if spare >= 5 or value & ((1 << spare) - 1):
        raise CIDError("base32 with a dangling character or non-zero spare bits")
    return (value >> spare).to_bytes(nbytes, "big")


def _parse(raw: bytes, pos: int) -> tuple[int, int, int, int]:
    """(codec, hash code, digest start, digest end) of the CID at ``pos``; the CID may be followed by more."""
    end = len(raw)
    if end - pos >= 4:
        version, codec, code, size = raw[pos], raw[pos + 1], raw[pos + 2], raw[pos + 3]
        # The common case: every varint is a single byte, so no varint decoding at all.
        if version == 1 and codec < 0x80 and code < 0x80 and size < 0x80:
            start = pos + 4
            if start + size > end:
                raise CIDError("truncated multihash digest")
            if code == SHA2_256 and size != _SHA2_256_DIGEST:
                raise CIDError("sha2-256 digest must be 32 bytes")
            return codec, code, start, start + size
    try:
        version, p = read_varint(raw, pos)
        if version != 1:
            if version == SHA2_256 and p < end and raw[p] == _SHA2_256_DIGEST:
                raise CIDError("CIDv0 is not supported")
            raise CIDError(f"CID version {version} is not supported")
        codec, p = read_varint(raw, p)
        code, p = read_varint(raw, p)
        size, p = read_varint(raw, p)
    except VarintError as err:
        raise CIDError(f"bad varint in CID: {err}") from err
    if p + size > end:
        raise CIDError("truncated multihash digest")
    if code == SHA2_256 and size != _SHA2_256_DIGEST:
        raise CIDError("sha2-256 digest must be 32 bytes")
    return codec, code, p, p + size


@dataclass(frozen=True, slots=True)
class CID:
    """A CIDv1 held as its binary form; construction validates it."""

    raw: bytes

    def __post_init__(self) -> None:
        raw = self.raw
        if type(raw) is not bytes:
            # bytearray and memoryview are unhashable or mutable: keep an immutable copy.
            raw = bytes(raw)
            object.__setattr__(self, "raw", raw)
        if _parse(raw, 0)[3] != len(raw):
            raise CIDError("trailing bytes after the CID digest")

    @classmethod
    def from_bytes(cls, raw: bytes) -> CID:
        """Validate a binary CIDv1 (the whole of ``raw``)."""
        return cls(raw)

    @classmethod
    def from_prefix(cls, data: bytes, pos: int = 0) -> tuple[CID, int]:
        """The binary CIDv1 starting at ``pos`` in ``data`` and the position just after it."""
        head = data[pos : pos + 4]
        if head in (_DAG_CBOR_SHA256_PREFIX, _RAW_SHA256_PREFIX) and len(data) >= pos + _SHA256_CID:
            # Every CID in a repo CAR: the prefix is a valid one and the digest is there, which is all
            # that construction would check, so skip checking it twice (a CAR has one per block).
            end = pos + _SHA256_CID
            return _checked(data[pos:end]), end
        end = _parse(data, pos)[3]
        return cls(data[pos:end]), end

    @classmethod
    def decode(cls, s: str) -> CID:
        """Parse the multibase base32 lowercase string form (``b...``)."""
        if not s.startswith("b") or len(s) > _MAX_STRING:
            raise CIDError(f"not a base32 CIDv1: {s[:60]!r}")
        return cls(_b32decode(s[1:]))

    @classmethod
    def for_dag_cbor(cls, data: bytes) -> CID:
        """The dag-cbor sha2-256 CID of a block."""
        return _checked(_DAG_CBOR_SHA256_PREFIX + hashlib.sha256(data).digest())

    @classmethod
    def for_raw(cls, data: bytes) -> CID:
        """The raw sha2-256 CID of some bytes (a blob)."""
        return _checked(_RAW_SHA256_PREFIX + hashlib.sha256(data).digest())

    @property
    def version(self) -> int:
        """The CID version: always 1."""
        return 1

    @property
    def codec(self) -> int:
        """Multicodec of the content (0x71 dag-cbor, 0x55 raw)."""
        return _parse(self.raw, 0)[0]

    @property
    def hash_code(self) -> int:
        """Multihash function code (0x12 sha2-256)."""
        return _parse(self.raw, 0)[1]

    @property
    def digest(self) -> bytes:
        """The multihash digest bytes."""
        _, _, start, end = _parse(self.raw, 0)
        return self.raw[start:end]

    def matches(self, data: bytes) -> bool:
        """Whether ``data`` hashes to this CID (false for any hash function but sha2-256)."""
        _, code, start, end = _parse(self.raw, 0)
        return code == SHA2_256 and hashlib.sha256(data).digest() == self.raw[start:end]

    def encode(self) -> str:
        """The multibase base32 lowercase string form, unpadded."""
        return "b" + _b32encode(self.raw)

    def __hash__(self) -> int:
        # The generated hash builds a one-item tuple each time; a CID is hashed on every block lookup.
        return hash(self.raw)

    def __str__(self) -> str:
        return self.encode()

    def __repr__(self) -> str:
        return f"CID({self.encode()!r})"


def _checked(raw: bytes) -> CID:
    """A CID for bytes already known to be a valid binary CIDv1, without checking them again."""
    cid = object.__new__(CID)
    object.__setattr__(cid, "raw", raw)
    return cid


_new_object = object.__new__
_set_field = object.__setattr__


def sha256_cid(raw: bytes) -> CID:
    """The CID of 36 bytes that start with a dag-cbor or raw sha2-256 CIDv1 prefix, which the caller compared.

    Those 36 bytes are a valid CID by construction (the prefix is, and the digest is the 32 bytes
    after it), so nothing is checked: this is for readers that have just compared the prefix, once
    per block (a CAR section, an MST link).
    """
    cid = _new_object(CID)
    _set_field(cid, "raw", raw)
    return cid
