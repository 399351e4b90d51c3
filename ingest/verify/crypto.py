"""atproto public keys and signatures (atproto.com/specs/cryptography, atproto.com/specs/did#public-keys).

Owns reading a repo's signing key, as a ``did:key`` or as the ``publicKeyMultibase`` of the
``#atproto`` verification method of a DID document, and checking a signature with it.

Keys are the two curves atproto allows: k256 (secp256k1, multicodec ``secp256k1-pub`` 0xe7) and p256
(NIST P-256, ``p256-pub`` 0x1200), always as 33-byte compressed points, multibase base58btc (``z``).
A ``Multikey`` method carries the multicodec prefix like a did:key; the legacy
``EcdsaSecp256k1VerificationKey2019`` / ``EcdsaSecp256r1VerificationKey2019`` methods carry the bare
point and say the curve in their type.

A signature is exactly 64 bytes, ``r || s`` big-endian, over sha256 of the signed bytes, with
``0 < r, s < n`` and ``s <= n/2`` (low-S): atproto refuses the high-S twin of a valid signature so
that each message has one signature, and refuses DER. :meth:`PublicKey.check` says which rule failed.
k256 goes through libsecp256k1 (coincurve), about ten times faster than OpenSSL's generic curve code
(≈55 µs against ≈600 µs per check here); p256 through OpenSSL (cryptography).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

import coincurve
from coincurve._libsecp256k1 import lib as _secp256k1
from coincurve.context import GLOBAL_CONTEXT
from coincurve.ecdsa import deserialize_compact
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


class KeyAlgorithm(StrEnum):
    """The curves atproto signs with; the values are the JWT ``alg`` names the specs use."""

    K256 = "ES256K"
    P256 = "ES256"


class KeyProblem(StrEnum):
    """Why a key could not be read."""

    NOT_DID_KEY = "not_did_key"  # no "did:key:" prefix
    NOT_BASE58BTC = "not_base58btc"  # not multibase "z" + base58btc
    UNSUPPORTED_KEY_TYPE = "unsupported_key_type"  # a multicodec or method type that is not k256/p256
    BAD_POINT = "bad_point"  # not a 33-byte compressed point on the curve
    NO_ATPROTO_KEY = "no_atproto_key"  # the DID document has no usable #atproto verification method


class SignatureFault(StrEnum):
    """Why a signature was refused."""

    MALFORMED = "malformed"  # not 64 bytes (DER is refused here), or r/s outside 1..n-1
    HIGH_S = "high_s"  # s > n/2: valid ECDSA, but not in atproto
    MISMATCH = "mismatch"  # does not verify against this key and message


class KeyFormatError(ValueError):
    """A key that is not a k256/p256 did:key, multibase key or DID-document key; ``reason`` says why."""

    def __init__(self, reason: KeyProblem, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason


_K256_CODEC: Final = b"\xe7\x01"  # varint(0xe7)
_P256_CODEC: Final = b"\x80\x24"  # varint(0x1200)
_ORDER: Final = {
    KeyAlgorithm.K256: 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
    KeyAlgorithm.P256: 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
}
_K256_ORDER: Final = _ORDER[KeyAlgorithm.K256]
_P256_ORDER: Final = _ORDER[KeyAlgorithm.P256]
_LEGACY_TYPES: Final = {
    "EcdsaSecp256k1VerificationKey2019": KeyAlgorithm.K256,
    "EcdsaSecp256r1VerificationKey2019": KeyAlgorithm.P256,
}
_ECDSA_SHA256: Final = ec.ECDSA(hashes.SHA256())
_COMPRESSED_LEN: Final = 33
_SIGNATURE_LEN: Final = 64
_MAX_MULTIBASE: Final = 200  # a key is < 50 characters; bounds the quadratic base58 decode

_B58: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX: Final = {c: i for i, c in enumerate(_B58)}


def _b58decode(text: str) -> bytes:
    value = 0
    for ch in text:
        digit = _B58_INDEX.get(ch)
        if digit is None:
            raise KeyFormatError(KeyProblem.NOT_BASE58BTC, f"{ch!r} is not a base58btc character")
        value = value * 58 + digit
    # Each leading "1" is a leading zero byte, which the integer cannot hold.
    zeros = len(text) - len(text.lstrip("1"))
    return b"\x00" * zeros + value.to_bytes((value.bit_length() + 7) // 8, "big")


def _b58encode(raw: bytes) -> str:
    value = int.from_bytes(raw, "big")
    digits = []
    while value:
        value, digit = divmod(value, 58)
        digits.append(_B58[digit])
    zeros = len(raw) - len(raw.lstrip(b"\x00"))
    return "1" * zeros + "".join(reversed(digits))


def _multibase(text: str) -> bytes:
    if not text.startswith("z") or len(text) > _MAX_MULTIBASE:
        raise KeyFormatError(KeyProblem.NOT_BASE58BTC, f"not a multibase base58btc value: {text[:60]!r}")
    return _b58decode(text[1:])


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A k256 or p256 public key, ready to check signatures; build it with :meth:`from_compressed`.

    Parsing a key costs far more than nothing (≈10 µs k256, ≈40 µs p256), so callers keep one per
    DID document rather than one per commit.
    """

    algorithm: KeyAlgorithm
    compressed: bytes
    _backend: coincurve.PublicKey | ec.EllipticCurvePublicKey = field(repr=False, compare=False)

    @classmethod
    def from_compressed(cls, algorithm: KeyAlgorithm, point: bytes) -> PublicKey:
        """The key for a 33-byte SEC1 compressed point; KeyFormatError(bad_point) if it is not one."""
        if len(point) != _COMPRESSED_LEN or point[0] not in (2, 3):
            raise KeyFormatError(KeyProblem.BAD_POINT, f"{len(point)} bytes, not a 33-byte compressed point")
        backend: coincurve.PublicKey | ec.EllipticCurvePublicKey
        try:
            if algorithm is KeyAlgorithm.K256:
                backend = coincurve.PublicKey(point)
            else:
                backend = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        except ValueError as err:
            raise KeyFormatError(KeyProblem.BAD_POINT, f"not a point on {algorithm}: {err}") from err
        return cls(algorithm, bytes(point), backend)

    def check(self, data: bytes, signature: bytes) -> SignatureFault | None:
        """None if ``signature`` is a valid atproto signature of ``data`` by this key, else the fault."""
        if len(signature) != _SIGNATURE_LEN:
            return SignatureFault.MALFORMED
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        # Identity tests, not dict look-ups: an enum member's hash is a Python-level call.
        k256 = self.algorithm is KeyAlgorithm.K256
        order = _K256_ORDER if k256 else _P256_ORDER
        if not (0 < r < order and 0 < s < order):
            return SignatureFault.MALFORMED
        if s > order // 2:
            return SignatureFault.HIGH_S
        backend = self._backend
        if isinstance(backend, coincurve.PublicKey):
            # libsecp256k1 itself, with the compact form and the digest: coincurve's verify takes DER,
            # which it parses back to the same struct, and a hasher call (≈15 µs of a ≈70 µs check).
            # Its verify refuses a high-S signature too; the test above names that fault.
            digest = hashlib.sha256(data).digest()
            verified = _secp256k1.secp256k1_ecdsa_verify(
                GLOBAL_CONTEXT.ctx, deserialize_compact(signature), digest, backend.public_key
            )
            return None if verified else SignatureFault.MISMATCH
        # cryptography takes DER; the compact form was checked above, so this is just a re-spelling.
        try:
            backend.verify(encode_dss_signature(r, s), data, _ECDSA_SHA256)
        except InvalidSignature:
            return SignatureFault.MISMATCH
        return None

    def verify(self, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is a valid (64-byte, low-S) atproto signature of ``data``."""
        return self.check(data, signature) is None

    def multibase(self) -> str:
        """The Multikey ``publicKeyMultibase`` form: "z" + base58btc(multicodec + point)."""
        codec = _K256_CODEC if self.algorithm is KeyAlgorithm.K256 else _P256_CODEC
        return "z" + _b58encode(codec + self.compressed)

    def did_key(self) -> str:
        """The ``did:key`` form of this key."""
        return "did:key:" + self.multibase()


def parse_multikey(text: str) -> PublicKey:
    """A key from a Multikey ``publicKeyMultibase`` (multicodec-prefixed, compressed)."""
    raw = _multibase(text)
    if raw.startswith(_K256_CODEC):
        return PublicKey.from_compressed(KeyAlgorithm.K256, raw[2:])
    if raw.startswith(_P256_CODEC):
        return PublicKey.from_compressed(KeyAlgorithm.P256, raw[2:])
    raise KeyFormatError(KeyProblem.UNSUPPORTED_KEY_TYPE, f"multicodec prefix {raw[:2].hex()} is not k256 or p256")


def parse_did_key(did: str) -> PublicKey:
    """A key from ``did:key:z...`` (k256 or p256, compressed)."""
    if not did.startswith("did:key:"):
        raise KeyFormatError(KeyProblem.NOT_DID_KEY, f"{did[:60]!r} is not a did:key")
    return parse_multikey(did[len("did:key:") :])


def parse_verification_method(method: Mapping[str, Any]) -> PublicKey:
    """A key from one DID-document verification method: ``Multikey`` or a legacy 2019 type."""
    kind = method.get("type")
    text = method.get("publicKeyMultibase")
    if not isinstance(text, str):
        raise KeyFormatError(KeyProblem.NO_ATPROTO_KEY, "verification method without a publicKeyMultibase")
    if kind == "Multikey":
        return parse_multikey(text)
    if isinstance(kind, str) and kind in _LEGACY_TYPES:
        return PublicKey.from_compressed(_LEGACY_TYPES[kind], _multibase(text))
    raise KeyFormatError(KeyProblem.UNSUPPORTED_KEY_TYPE, f"verification method type {kind!r}")


def signing_key(did_document: Mapping[str, Any]) -> PublicKey:
    """The repo signing key of a DID document: its ``#atproto`` verification method.

    The method's id is ``#atproto`` or ``<the document's id>#atproto``; a method of another DID is not
    this repo's key, whatever its fragment.
    """
    did = did_document.get("id")
    methods = did_document.get("verificationMethod")
    if not isinstance(methods, list):
        raise KeyFormatError(KeyProblem.NO_ATPROTO_KEY, "no verificationMethod list")
    wanted = {"#atproto", f"{did}#atproto"} if isinstance(did, str) else {"#atproto"}
    for method in methods:
        if isinstance(method, Mapping) and method.get("id") in wanted:
            return parse_verification_method(method)
    raise KeyFormatError(KeyProblem.NO_ATPROTO_KEY, "no #atproto verification method")
