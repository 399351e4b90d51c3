"""Blob CIDs: parse an atproto blob link and check bytes against it while they stream. Pure.

An atproto blob is addressed by a CIDv1 with the ``raw`` codec (0x55) and a sha2-256 multihash,
written as multibase base32 lower case (``b...``; atproto.com/specs/data-model#link-and-cid-formats).
Anything else is refused: the mirror never stores bytes it cannot verify.

ingest/ipld/cid.py holds the general CID type, but the api may not import ingest (STYLE.md's
dependency rule), and a blob needs only this one fixed prefix, so the few lines are here.
"""

from __future__ import annotations

import base64
import hashlib
import re

_RAW_SHA256_PREFIX = bytes((0x01, 0x55, 0x12, 0x20))
_BASE32_BODY = re.compile(r"^[a-z2-7]{58}$")  # 36 bytes → 58 unpadded base32 characters


class BlobCidError(ValueError):
    """Not a CIDv1 raw sha2-256 link."""


def blob_digest(cid: str) -> bytes:
    """The sha2-256 digest a blob CID names; raise :class:`BlobCidError` for anything but raw sha2-256."""
    if not cid.startswith("b") or not _BASE32_BODY.match(cid[1:]):
        raise BlobCidError(f"not a base32 CIDv1 of a blob: {cid[:80]!r}")
    raw = base64.b32decode(cid[1:].upper() + "======")
    if raw[:4] != _RAW_SHA256_PREFIX or len(raw) != 36:
        raise BlobCidError(f"not a raw sha2-256 CID: {cid[:80]!r}")
    if blob_cid(raw[4:]) != cid:
        # Non-zero spare bits: a second spelling of the same bytes.
        raise BlobCidError(f"non-canonical base32: {cid[:80]!r}")
    return raw[4:]


def blob_cid(digest: bytes) -> str:
    """The blob CID string of a sha2-256 digest."""
    return "b" + base64.b32encode(_RAW_SHA256_PREFIX + digest).decode().lower().rstrip("=")


def cid_of_bytes(data: bytes) -> str:
    """The blob CID of ``data``."""
    return blob_cid(hashlib.sha256(data).digest())


class BlobCheck:
    """Hash bytes as they arrive; :meth:`matches` says whether they are the blob ``cid`` names."""

    def __init__(self, cid: str) -> None:
        self.expected = blob_digest(cid)
        self._hash = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        """Feed the next chunk."""
        self._hash.update(chunk)
        self.size += len(chunk)

    def matches(self) -> bool:
        """Whether everything fed so far hashes to the expected digest."""
        return self._hash.digest() == self.expected
