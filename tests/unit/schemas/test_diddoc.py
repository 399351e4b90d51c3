"""schemas/diddoc.py: the atproto facts of a DID document, missing pieces, wrong ids, hostile values."""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ingest.verify.crypto import KeyAlgorithm, PublicKey
from schemas.diddoc import DidDocError, DidDocProblem, document_url, load_did_document, parse_did_document
from tests.fixtures.interop import INTEROP_DIR

DID = "did:plc:yk4dd2qkboz2yv6tpubpc6co"
# Real Multikeys (secp256k1 and P-256), from the interop fixtures' did:key values.
K256 = "zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme"
P256 = json.loads((INTEROP_DIR / "crypto" / "w3c_didkey_P256.json").read_text())[0]["publicDidKey"].removeprefix(
    "did:key:"
)


def real_doc(did: str = DID) -> dict[str, Any]:
    """A document as plc.directory serves it."""
    return {
        "@context": [
            "https://www.w3.org/ns/did/v1",
            "https://w3id.org/security/multikey/v1",
            "https://w3id.org/security/suites/secp256k1-2019/v1",
        ],
        "id": did,
        "alsoKnownAs": ["at://dholms.xyz"],
        "verificationMethod": [
            {"id": f"{did}#atproto", "type": "Multikey", "controller": did, "publicKeyMultibase": K256}
        ],
        "service": [
            {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "https://pds.example"}
        ],
    }


def test_a_real_document() -> None:
    doc = parse_did_document(DID, real_doc())
    assert (doc.did, doc.handle, doc.pds, doc.signing_key) == (DID, "dholms.xyz", "https://pds.example", K256)
    assert load_did_document(DID, orjson.dumps(real_doc())) == doc


def test_short_and_long_ids_and_other_entries() -> None:
    raw = real_doc()
    raw["verificationMethod"] = [
        {"id": "#other", "type": "Multikey", "publicKeyMultibase": K256[:-1] + "x"},
        "not an object",
        {"id": ["#atproto"], "type": "Multikey"},
        {"id": "#atproto", "type": "Multikey", "controller": DID, "publicKeyMultibase": P256},
    ]
    raw["service"] = [
        {"id": "#bsky_fg", "type": "BskyFeedGenerator", "serviceEndpoint": ["anything", {"goes": 1}]},
        {"id": f"{DID}#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "https://b.example"},
    ]
    doc = parse_did_document(DID, raw)
    assert (doc.pds, doc.signing_key) == ("https://b.example", P256)


def test_missing_pieces_are_none() -> None:
    assert parse_did_document(DID, {"id": DID}) == parse_did_document(
        DID, {"id": DID, "alsoKnownAs": [], "service": [], "verificationMethod": []}
    )
    doc = parse_did_document(DID, {"id": DID})
    assert (doc.handle, doc.pds, doc.signing_key) == (None, None, None)


def test_only_key_types_are_a_signing_key_and_only_the_pds_type_is_the_pds() -> None:
    raw = real_doc()
    raw["verificationMethod"][0]["type"] = "JsonWebKey2020"
    raw["service"][0]["type"] = "SomethingElse"
    doc = parse_did_document(DID, raw)
    assert (doc.signing_key, doc.pds) == (None, None)


def _legacy(kind: str, key: str) -> dict[str, Any]:
    raw = real_doc()
    raw["verificationMethod"] = [{"id": "#atproto", "type": kind, "controller": DID, "publicKeyMultibase": key}]
    return raw


@pytest.mark.parametrize(
    ("kind", "curve", "algorithm"),
    [
        ("EcdsaSecp256k1VerificationKey2019", ec.SECP256K1(), KeyAlgorithm.K256),
        ("EcdsaSecp256r1VerificationKey2019", ec.SECP256R1(), KeyAlgorithm.P256),
    ],
)
def test_a_legacy_key_is_given_in_the_multikey_form(
    kind: str, curve: ec.EllipticCurve, algorithm: KeyAlgorithm
) -> None:
    # As @did-plc/server writes it: the uncompressed point, base58btc, no multicodec prefix.
    for _ in range(8):  # both parities of y
        public = ec.generate_private_key(curve).public_key()
        uncompressed = public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        compressed = public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
        multikey = PublicKey.from_compressed(algorithm, compressed).multibase()
        assert parse_did_document(DID, _legacy(kind, "z" + _b58(uncompressed))).signing_key == multikey
        assert parse_did_document(DID, _legacy(kind, "z" + _b58(compressed))).signing_key == multikey


def test_the_interop_legacy_keys() -> None:
    cases = json.loads((INTEROP_DIR / "crypto" / "signature-fixtures.json").read_text())
    for case in cases:
        doc = parse_did_document(DID, _legacy(case["didDocSuite"], case["publicKeyMultibase"]))
        assert doc.signing_key == case["publicKeyDid"].removeprefix("did:key:")


@pytest.mark.parametrize("point", [b"\x04" * 64, b"\x05" + b"\x01" * 64, b"\x02" * 32, b"\x01" * 33])
def test_a_legacy_key_that_is_not_a_point(point: bytes) -> None:
    with pytest.raises(DidDocError) as caught:
        parse_did_document(DID, _legacy("EcdsaSecp256k1VerificationKey2019", "z" + _b58(point)))
    assert caught.value.problem is DidDocProblem.MALFORMED


def _b58(raw: bytes) -> str:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    value, out = int.from_bytes(raw, "big"), ""
    while value:
        value, digit = divmod(value, 58)
        out = alphabet[digit] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\x00"))) + out


@pytest.mark.parametrize(
    ("aliases", "handle"),
    [
        (["at://Alice.Example.COM"], "alice.example.com"),
        (["https://alice.example.com", "at://alice.example.com"], "alice.example.com"),
        # Only the first at:// entry counts: a bad one is not skipped to reach a victim's handle.
        (["at://not a handle", "at://victim.example.com"], None),
        (["at://alice.example.com/app.bsky.actor.profile/self"], None),
        (["at://did:plc:yk4dd2qkboz2yv6tpubpc6co"], None),
        (["at://"], None),
        ([42, {"at": "x"}, "at://ok.example"], "ok.example"),
        (["at://" + "a" * 64 + ".example"], None),
    ],
)
def test_the_handle_is_the_first_at_uri(aliases: list[object], handle: str | None) -> None:
    assert parse_did_document(DID, {"id": DID, "alsoKnownAs": aliases}).handle == handle


def test_every_valid_handle_syntax_is_taken() -> None:
    lines = (INTEROP_DIR / "syntax" / "handle_syntax_valid.txt").read_text().splitlines()
    for handle in (line for line in lines if line and not line.startswith("#")):
        assert parse_did_document(DID, {"id": DID, "alsoKnownAs": [f"at://{handle}"]}).handle == handle.lower()


def _with(path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    raw = copy.deepcopy(real_doc())
    target: Any = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return raw


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (None, DidDocProblem.NOT_AN_OBJECT),
        ([real_doc()], DidDocProblem.NOT_AN_OBJECT),
        ("did:plc:yk4dd2qkboz2yv6tpubpc6co", DidDocProblem.NOT_AN_OBJECT),
        ({**real_doc(), "id": "did:plc:someoneelse22222222222222"}, DidDocProblem.WRONG_ID),
        ({**real_doc(), "id": DID.upper()}, DidDocProblem.WRONG_ID),
        ({k: v for k, v in real_doc().items() if k != "id"}, DidDocProblem.WRONG_ID),
        ({**real_doc(), "id": [DID]}, DidDocProblem.WRONG_ID),
        (real_doc("did:web:example.com"), DidDocProblem.WRONG_ID),
        ({**real_doc(), "alsoKnownAs": "at://dholms.xyz"}, DidDocProblem.MALFORMED),
        ({**real_doc(), "service": {"id": "#atproto_pds"}}, DidDocProblem.MALFORMED),
        ({**real_doc(), "verificationMethod": "zQ3sh"}, DidDocProblem.MALFORMED),
        (_with(("service", 0, "serviceEndpoint"), ["https://pds.example"]), DidDocProblem.MALFORMED),
        (_with(("service", 0, "serviceEndpoint"), {"uri": "https://pds.example"}), DidDocProblem.MALFORMED),
        (_with(("service", 0, "serviceEndpoint"), ""), DidDocProblem.MALFORMED),
        (_with(("service", 0, "serviceEndpoint"), "https://x.example/" + "a" * 5000), DidDocProblem.MALFORMED),
        (_with(("verificationMethod", 0, "publicKeyMultibase"), None), DidDocProblem.MALFORMED),
        (_with(("verificationMethod", 0, "publicKeyMultibase"), "mBASE64NOTBASE58"), DidDocProblem.MALFORMED),
        (_with(("verificationMethod", 0, "publicKeyMultibase"), "z0OIl"), DidDocProblem.MALFORMED),
        (_with(("verificationMethod", 0, "publicKeyMultibase"), "z" + "1" * 1000), DidDocProblem.MALFORMED),
        (_with(("verificationMethod", 0, "publicKeyMultibase"), K256 + "\n"), DidDocProblem.MALFORMED),
    ],
)
def test_bad_documents(document: object, problem: DidDocProblem) -> None:
    with pytest.raises(DidDocError) as caught:
        parse_did_document(DID, document)
    assert caught.value.problem is problem


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", DidDocProblem.NOT_JSON),
        (b"<html>not found</html>", DidDocProblem.NOT_JSON),
        (b"[" * 100_000, DidDocProblem.NOT_JSON),
        (b'"' + DID.encode() + b'"', DidDocProblem.NOT_AN_OBJECT),
        (b'{"id": "did:plc:yk4dd2qkboz2yv6tpubpc6co", "id": "did:plc:other"}', DidDocProblem.WRONG_ID),
    ],
)
def test_bad_bodies(body: bytes, problem: DidDocProblem) -> None:
    with pytest.raises(DidDocError) as caught:
        load_did_document(DID, body)
    assert caught.value.problem is problem


def test_document_urls() -> None:
    assert document_url(DID, "https://plc.directory/", allow_private=False) == (f"https://plc.directory/{DID}", False)
    assert document_url("did:web:Example.COM", "x", allow_private=False) == (
        "https://example.com/.well-known/did.json",
        True,
    )
    assert document_url("did:web:localhost%3A8080", "x", allow_private=True) == (
        "http://localhost:8080/.well-known/did.json",
        True,
    )


@pytest.mark.parametrize(
    "did",
    [
        "did:web:localhost%3A8080",  # a port outside development
        "did:web:example.com:user:alice",  # path segments
        "did:web:example.com%2F..%2Fadmin",
        "did:web:evil.example%2Fx%3Fy",
        "did:web:user%40evil.example",
        "did:web:%20example.com",
        "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",
        "did:plc:",
        "nope",
        "",
    ],
)
def test_unsupported_dids(did: str) -> None:
    with pytest.raises(DidDocError) as caught:
        document_url(did, "https://plc.directory", allow_private=False)
    assert caught.value.problem is DidDocProblem.UNSUPPORTED_DID
