"""CAR v1 archives (ipld.io/specs/transport/car/carv1; atproto.com/specs/repository#car-file-serialization).

Owns the split of a CAR into its roots and raw blocks, and the writing of one. The layout is a varint
length and a DAG-CBOR header ``{"version": 1, "roots": [CID, ...]}``, then sections, each a varint
length covering a binary CID and the block bytes.

Invariants: reading neither decodes nor hashes blocks, because a firehose CAR slice is read for every
in-scope commit and only the few blocks used are ever checked, by :meth:`CarFile.get_verified`; the
work is bounded by ``max_blocks`` and ``max_block_size``. Every refusal is a :class:`CarError` with a
closed ``reason``; nothing else escapes. Empty roots are accepted (the CAR spec leaves it open); a CID
repeated in several sections keeps its first block.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from ingest.ipld import dagcbor
from ingest.ipld.cid import CID, CIDError, sha256_cid
from ingest.ipld.varint import VarintError, encode_varint, read_varint

# {"roots": [<tag 42: 0x00 + a 36-byte CID>], "version": 1}: canonical key order, minimal heads.
_ONE_ROOT_HEAD: Final = b"\xa2\x65roots\x81\xd8\x2a\x58\x25\x00"
_ONE_ROOT_TAIL: Final = b"\x67version\x01"
_ONE_ROOT_LEN: Final = len(_ONE_ROOT_HEAD) + 36 + len(_ONE_ROOT_TAIL)
# CIDv1 prefixes (dag-cbor or raw, sha2-256, 32 bytes) of the CIDs that a section nearly always starts with.
_SHA256_PREFIXES: Final = (b"\x01\x71\x12\x20", b"\x01\x55\x12\x20")
_SHA256_CID_LEN: Final = 36


class CarError(ValueError):
    """Not a readable CAR v1, or a block that does not match its CID; ``reason`` says which.

    Reasons: truncated, bad_varint, bad_header, bad_section, bad_cid, too_large, too_many_blocks,
    cid_mismatch.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CarFile:
    """The roots and the raw, unverified blocks of a CAR."""

    roots: tuple[CID, ...]
    blocks: dict[CID, bytes]

    def get_verified(self, cid: CID) -> bytes | None:
        """The block for ``cid`` if it hashes to it; None if absent; CarError(cid_mismatch) if not."""
        block = self.blocks.get(cid)
        if block is None:
            return None
        if not cid.matches(block):
            raise CarError("cid_mismatch", f"block does not hash to {cid}")
        return block


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    try:
        return read_varint(data, pos)
    except VarintError as err:
        raise CarError("truncated" if err.reason == "truncated" else "bad_varint", str(err)) from err


def _header(data: bytes, max_size: int) -> tuple[tuple[CID, ...], int]:
    """The roots and the position of the first section."""
    size, pos = _varint(data, 0)
    if size > max_size:
        raise CarError("too_large", f"header of {size} bytes")
    end = pos + size
    if end > len(data):
        raise CarError("truncated", "header")
    raw = data[pos:end]
    if len(raw) == _ONE_ROOT_LEN and raw.startswith(_ONE_ROOT_HEAD) and raw.endswith(_ONE_ROOT_TAIL):
        # The header of every repo CAR, {"roots": [one sha2-256 link], "version": 1}, in canonical
        # form: what the strict decoder would read, without decoding.
        with contextlib.suppress(CIDError):
            return (CID(raw[len(_ONE_ROOT_HEAD) : -len(_ONE_ROOT_TAIL)]),), end
    try:
        header = dagcbor.decode(raw)
    except dagcbor.DagCborError as err:
        raise CarError("bad_header", str(err)) from err
    if not isinstance(header, dict):
        raise CarError("bad_header", "header must be a map")
    version = header.get("version")
    # type() and not ==: True == 1 in Python, and a boolean version is not a CAR v1.
    if type(version) is not int or version != 1:
        raise CarError("bad_header", f"version must be 1, not {version!r}")
    roots = header.get("roots")
    if type(roots) is not list or not all(type(r) is CID for r in roots):
        raise CarError("bad_header", "roots must be a list of links")
    return tuple(roots), end


def read_car(data: bytes, *, max_blocks: int = 100_000, max_block_size: int = 2_000_000) -> CarFile:
    """Split a CAR v1 into its roots and raw blocks, without decoding or hashing any block."""
    if type(data) is not bytes:
        data = bytes(data)
    roots, pos = _header(data, max_block_size)
    blocks: dict[CID, bytes] = {}
    end = len(data)
    sections = 0
    while pos < end:
        sections += 1
        if sections > max_blocks:
            raise CarError("too_many_blocks", f"more than {max_blocks}")
        # A section length is one or two varint bytes nearly always (blocks under 16 KiB): read
        # those inline; anything else, a redundant zero byte included, goes through _varint.
        first = data[pos]
        if first < 0x80:
            size, pos = first, pos + 1
        elif pos + 1 < end and 0 < data[pos + 1] < 0x80:
            size, pos = (first & 0x7F) | data[pos + 1] << 7, pos + 2
        else:
            size, pos = _varint(data, pos)
        if size > max_block_size:
            raise CarError("too_large", f"section of {size} bytes")
        section_end = pos + size
        if section_end > end:
            raise CarError("truncated", f"section of {size} bytes")
        block_start = pos + _SHA256_CID_LEN
        head = data[pos : pos + 4]
        if head in _SHA256_PREFIXES and block_start <= end:
            # Every section of a repo CAR: the same CID from_prefix would give, without its two calls.
            cid = sha256_cid(data[pos:block_start])
        else:
            try:
                cid, block_start = CID.from_prefix(data, pos)
            except CIDError as err:
                raise CarError("bad_cid", str(err)) from err
        if block_start > section_end:
            raise CarError("bad_section", "the CID runs past its section")
        blocks.setdefault(cid, data[block_start:section_end])
        pos = section_end
    return CarFile(roots, blocks)


def write_car(roots: Iterable[CID], blocks: Mapping[CID, bytes]) -> bytes:
    """A CAR v1 holding ``blocks`` (in mapping order) under ``roots``."""
    header = dagcbor.encode({"version": 1, "roots": list(roots)})
    out = bytearray(encode_varint(len(header)))
    out += header
    for cid, block in blocks.items():
        out += encode_varint(len(cid.raw) + len(block))
        out += cid.raw
        out += block
    return bytes(out)
