"""Keys and signatures against atproto's crypto interop fixtures, plus the refusals around them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ingest.verify.crypto import (
    KeyAlgorithm,
    KeyFormatError,
    KeyProblem,
    PublicKey,
    SignatureFault,
    _b58decode,
    _b58encode,
    parse_did_key,
    parse_multikey,
    parse_verification_method,
    signing_key,
)
from tests.fixtures.interop import INTEROP_DIR
from tests.fixtures.signed_repo import ORDERS, new_key, public_key, sign

CRYPTO_DIR = INTEROP_DIR / "crypto"
SIGNATURES = json.loads((CRYPTO_DIR / "signature-fixtures.json").read_text())
K256_KEYS = json.loads((CRYPTO_DIR / "w3c_didkey_K256.json").read_text())
P256_KEYS = json.loads((CRYPTO_DIR / "w3c_didkey_P256.json").read_text())
ALGORITHMS = {"ES256K": KeyAlgorithm.K256, "ES256": KeyAlgorithm.P256}


def _b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _compressed(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)


def test_fixture_counts() -> None:
    # Every case runs: a fixture file that grows or shrinks shows up here.
    assert len(SIGNATURES) == 6
    assert len(K256_KEYS) == 5
    assert len(P256_KEYS) == 1


@pytest.mark.parametrize("case", SIGNATURES, ids=[c["comment"] for c in SIGNATURES])
def test_signature_fixtures(case: dict[str, Any]) -> None:
    key = parse_did_key(case["publicKeyDid"])
    assert key.algorithm is ALGORITHMS[case["algorithm"]]
    assert key.did_key() == case["publicKeyDid"]
    # The same key, as the DID document's legacy verification method spells it.
    legacy = parse_verification_method({"type": case["didDocSuite"], "publicKeyMultibase": case["publicKeyMultibase"]})
    assert legacy == key
    message, signature = _b64(case["messageBase64"]), _b64(case["signatureBase64"])
    assert key.verify(message, signature) is case["validSignature"]
    fault = key.check(message, signature)
    if "high-s" in case["tags"]:
        assert fault is SignatureFault.HIGH_S
        # Its low-S twin is the valid signature: high-S alone is the reason for the refusal.
        n = ORDERS["secp256k1" if key.algorithm is KeyAlgorithm.K256 else "secp256r1"]
        s = int.from_bytes(signature[32:], "big")
        assert key.check(message, signature[:32] + (n - s).to_bytes(32, "big")) is None
    elif "der-encoded" in case["tags"]:
        assert fault is SignatureFault.MALFORMED
    else:
        assert fault is None
        assert key.check(message + b"x", signature) is SignatureFault.MISMATCH


@pytest.mark.parametrize("case", K256_KEYS, ids=[c["publicDidKey"] for c in K256_KEYS])
def test_w3c_did_key_k256(case: dict[str, str]) -> None:
    private = ec.derive_private_key(int(case["privateKeyBytesHex"], 16), ec.SECP256K1())
    assert public_key(private).did_key() == case["publicDidKey"]
    parsed = parse_did_key(case["publicDidKey"])
    assert parsed.algorithm is KeyAlgorithm.K256
    assert parsed.compressed == _compressed(private)


@pytest.mark.parametrize("case", P256_KEYS, ids=[c["publicDidKey"] for c in P256_KEYS])
def test_w3c_did_key_p256(case: dict[str, str]) -> None:
    secret = int.from_bytes(_b58decode(case["privateKeyBytesBase58"]), "big")
    private = ec.derive_private_key(secret, ec.SECP256R1())
    assert public_key(private).did_key() == case["publicDidKey"]
    parsed = parse_did_key(case["publicDidKey"])
    assert parsed.algorithm is KeyAlgorithm.P256
    assert parsed.compressed == _compressed(private)


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm))
def test_sign_and_verify_round_trip(algorithm: KeyAlgorithm) -> None:
    private = new_key(algorithm)
    key = parse_did_key(public_key(private).did_key())
    message = b"\xa1ehelloeworld"
    signature = sign(private, message)
    assert key.check(message, signature) is None
    assert key.check(message, sign(private, message, high_s=True)) is SignatureFault.HIGH_S
    assert public_key(new_key(algorithm)).check(message, signature) is SignatureFault.MISMATCH
    flipped = signature[:10] + bytes([signature[10] ^ 1]) + signature[11:]
    assert key.check(message, flipped) in {SignatureFault.MISMATCH, SignatureFault.HIGH_S}


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm))
def test_malformed_signatures(algorithm: KeyAlgorithm) -> None:
    key = public_key(new_key(algorithm))
    n = ORDERS["secp256k1" if algorithm is KeyAlgorithm.K256 else "secp256r1"]
    one = (1).to_bytes(32, "big")
    for signature in (
        b"",
        b"\x00" * 63,
        b"\x00" * 65,
        bytes(32) + one,  # r = 0
        one + bytes(32),  # s = 0
        n.to_bytes(32, "big") + one,  # r = n
        one + n.to_bytes(32, "big"),  # s = n
        b"\xff" * 64,
    ):
        assert key.check(b"m", signature) is SignatureFault.MALFORMED, signature.hex()


def test_multikey_and_did_documents() -> None:
    k256 = public_key(new_key(KeyAlgorithm.K256))
    p256 = public_key(new_key(KeyAlgorithm.P256))
    assert parse_multikey(k256.multibase()) == k256
    did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
    doc = {
        "id": did,
        "verificationMethod": [
            {"id": "did:plc:someoneelse#atproto", "type": "Multikey", "publicKeyMultibase": p256.multibase()},
            {"id": f"{did}#other", "type": "Multikey", "publicKeyMultibase": p256.multibase()},
            {"id": f"{did}#atproto", "type": "Multikey", "controller": did, "publicKeyMultibase": k256.multibase()},
        ],
    }
    assert signing_key(doc) == k256
    short = {
        "id": did,
        "verificationMethod": [{"id": "#atproto", "type": "Multikey", "publicKeyMultibase": p256.multibase()}],
    }
    assert signing_key(short) == p256
    for bad, reason in (
        ({"id": did}, KeyProblem.NO_ATPROTO_KEY),
        ({"id": did, "verificationMethod": [doc["verificationMethod"][0]]}, KeyProblem.NO_ATPROTO_KEY),
        ({"id": did, "verificationMethod": [{"id": "#atproto", "type": "Multikey"}]}, KeyProblem.NO_ATPROTO_KEY),
        (
            {
                "id": did,
                "verificationMethod": [{"id": "#atproto", "type": "JsonWebKey2020", "publicKeyMultibase": "z"}],
            },
            KeyProblem.UNSUPPORTED_KEY_TYPE,
        ),
    ):
        with pytest.raises(KeyFormatError) as err:
            signing_key(bad)
        assert err.value.reason is reason


def test_unreadable_keys() -> None:
    private = new_key(KeyAlgorithm.K256)
    k256 = public_key(private)
    uncompressed = b"\xe7\x01" + private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    for text, reason in (
        ("did:web:example.com", KeyProblem.NOT_DID_KEY),
        ("did:key:" + k256.multibase()[1:], KeyProblem.NOT_BASE58BTC),  # no "z"
        ("did:key:z0OIl", KeyProblem.NOT_BASE58BTC),  # characters base58 leaves out
        ("did:key:z" + "2" * 300, KeyProblem.NOT_BASE58BTC),  # far too long for a key
        # An Ed25519 did:key: a fine key, not one atproto signs with.
        ("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", KeyProblem.UNSUPPORTED_KEY_TYPE),
        ("did:key:z" + _b58encode(b"\xe7\x01" + k256.compressed[:-1]), KeyProblem.BAD_POINT),  # 32 bytes
        ("did:key:z" + _b58encode(uncompressed), KeyProblem.BAD_POINT),  # atproto keys are compressed
    ):
        with pytest.raises(KeyFormatError) as err:
            parse_did_key(text)
        assert err.value.reason is reason, text
    for point in (uncompressed[2:], b"\x05" + bytes(32), b"\x02" + b"\xff" * 32):
        with pytest.raises(KeyFormatError) as err:
            PublicKey.from_compressed(KeyAlgorithm.K256, point)
        assert err.value.reason is KeyProblem.BAD_POINT
