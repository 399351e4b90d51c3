"""The byte form of a v3 commit object on the verification hot path: a reader of the canonical form.

Owns :func:`read_canonical_commit`, which reads a commit block only when its bytes are laid out
exactly as the strict DAG-CBOR writer writes the six fields of a v3 commit, and otherwise says
``None`` so the caller takes the general road (the strict decoder, then the shape checks).

Why a reader of our own: every in-scope ``#commit`` has its commit block read, and the strict
decoder (pure Python, ≈5 µs) plus cutting the signature out costs more than the rest of the
commit's checks together. The layout is fixed by canonical key order (shorter first, then bytewise):
``{"did": text, "rev": text, "sig": bytes, "data": link, "prev": link | null, "version": 3}``, so
a handful of slice comparisons read it and prove it canonical (≈1 µs).

What accepting ``block`` guarantees: ``dagcbor.decode(block)`` would return exactly these six
fields with these values (every head is minimal, keys are in canonical order, the texts are UTF-8,
the links are tag-42 links over a 0x00 byte and a valid CIDv1, nothing follows), and ``unsigned``
is ``dagcbor.encode`` of the map without ``sig``: the same bytes with the ``sig`` entry cut out and
the map head counting five. What it does not check is left to the caller, as on the general road:
the rev's TID syntax, the did against the message's. Blocks it does not cover (a did of 256 bytes or
more, a rev that is not 13 characters, a signature that is not 64 bytes, a link that is not 36
bytes, extra fields, another version) are ``None``, and the general road decides.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from ingest.ipld.cid import CID, CIDError

_DID_KEY: Final = b"\xa6\x63did"  # a map of 6 entries, then the key "did"
_REV_KEY: Final = b"\x63rev\x6d"  # the key "rev" and the head of a 13-byte text (a TID)
_SIG_KEY: Final = b"\x63sig\x58\x40"  # the key "sig" and the head of a 64-byte byte string
_DATA_KEY: Final = b"\x64data\xd8\x2a\x58\x25\x00"  # "data", tag 42, 37 bytes, the 0x00 prefix
_PREV_KEY: Final = b"\x64prev"
_LINK_HEAD: Final = b"\xd8\x2a\x58\x25\x00"
_NULL: Final = 0xF6
_VERSION_3: Final = b"\x67version\x03"
_REV_LEN: Final = 13
_SIG_LEN: Final = 64
_CID_LEN: Final = 36


class CommitFields(NamedTuple):
    """The fields of a canonical v3 commit block, and the bytes its signature covers."""

    did: str
    rev: str
    data: CID
    prev: CID | None
    sig: bytes
    unsigned: bytes


def read_canonical_commit(block: bytes) -> CommitFields | None:
    """The commit's fields if ``block`` is a canonical v3 commit as above, else None."""
    if block[:5] != _DID_KEY:
        return None
    head = block[5] if len(block) > 5 else 0
    if 0x60 <= head < 0x78:  # a text of fewer than 24 bytes: the length is in the head
        start, end = 6, 6 + head - 0x60
    elif head == 0x78 and len(block) > 6 and block[6] >= 24:  # one length byte, minimal
        start, end = 7, 7 + block[6]
    else:
        return None
    if block[end : end + 5] != _REV_KEY:
        return None
    rev_start = end + 5
    sig_key = rev_start + _REV_LEN
    if block[sig_key : sig_key + 6] != _SIG_KEY:
        return None
    sig_end = sig_key + 6 + _SIG_LEN
    if block[sig_end : sig_end + 10] != _DATA_KEY:
        return None
    data_start = sig_end + 10
    prev_key = data_start + _CID_LEN
    if block[prev_key : prev_key + 5] != _PREV_KEY:
        return None
    pos = prev_key + 5
    prev_raw: bytes | None = None
    if pos < len(block) and block[pos] == _NULL:
        pos += 1
    elif block[pos : pos + 5] == _LINK_HEAD:
        prev_raw = block[pos + 5 : pos + 5 + _CID_LEN]
        pos += 5 + _CID_LEN
    else:
        return None
    if block[pos:] != _VERSION_3:
        return None
    try:
        did = block[start:end].decode("utf-8")
        rev = block[rev_start:sig_key].decode("utf-8")
        data = CID(block[data_start:prev_key])
        prev = None if prev_raw is None else CID(prev_raw)
    except (UnicodeDecodeError, CIDError):
        return None
    # The unsigned map is the same entries less sig, in the same order: one fewer in the head.
    unsigned = b"\xa5" + block[1:sig_key] + block[sig_end:]
    return CommitFields(did, rev, data, prev, block[sig_key + 6 : sig_end], unsigned)
