"""api/cids.py and the pure half of api/identity.py: blob CIDs, DID documents → PDS origin."""

from __future__ import annotations

from typing import Any

import pytest

from api.cids import BlobCheck, BlobCidError, blob_digest, cid_of_bytes
from api.identity import ResolveError, ResolveProblem, document_url, pds_origin
from ingest.ipld.cid import CID
from runtime.urls import Origin

DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"


def test_blob_cid_agrees_with_the_ipld_cid() -> None:
    for data in (b"", b"hello", bytes(range(256)) * 100):
        cid = cid_of_bytes(data)
        assert cid == str(CID.for_raw(data))
        assert blob_digest(cid) == CID.decode(cid).digest


@pytest.mark.parametrize(
    "cid",
    [
        str(CID.for_dag_cbor(b"\xa0")),  # dag-cbor, not raw
        "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",  # CIDv0
        cid_of_bytes(b"x").upper(),
        cid_of_bytes(b"x")[:-1],
        cid_of_bytes(b"x") + "a",
        "z" + cid_of_bytes(b"x")[1:],
        cid_of_bytes(b"x")[:-1] + "7",  # non-zero spare bits: a second spelling
        "",
    ],
)
def test_only_canonical_raw_sha256_cids(cid: str) -> None:
    with pytest.raises(BlobCidError):
        blob_digest(cid)


def test_blob_check_streams() -> None:
    data = b"audio" * 10_000
    check = BlobCheck(cid_of_bytes(data))
    for i in range(0, len(data), 4096):
        check.update(data[i : i + 4096])
    assert check.matches() and check.size == len(data)
    check.update(b"!")
    assert not check.matches()


def doc(endpoint: Any = "https://pds.example.com", **extra: Any) -> dict[str, Any]:
    service = {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": endpoint}
    return {"id": DID, "service": [service], **extra}


def test_pds_from_document() -> None:
    expected = Origin("https", "pds.example.com", None)
    assert pds_origin(DID, doc(), allow_private=False, trusted=frozenset()) == expected
    full_id = doc()
    full_id["service"][0]["id"] = f"{DID}#atproto_pds"
    other = {"id": "#bsky_fg", "type": "BskyFeedGenerator", "serviceEndpoint": "https://127.0.0.1"}
    full_id["service"].insert(0, other)
    assert pds_origin(DID, full_id, allow_private=False, trusted=frozenset()) == expected


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (None, ResolveProblem.BAD_DOCUMENT),
        ([], ResolveProblem.BAD_DOCUMENT),
        ({**doc(), "id": "did:plc:someoneelse"}, ResolveProblem.BAD_DOCUMENT),
        ({"id": DID}, ResolveProblem.NO_PDS),
        (
            {"id": DID, "service": [{"id": "#atproto_pds", "type": "Other", "serviceEndpoint": "https://a.example"}]},
            ResolveProblem.NO_PDS,
        ),
        (doc(endpoint=["https://pds.example.com"]), ResolveProblem.BAD_DOCUMENT),
        (doc(endpoint="http://pds.example.com"), ResolveProblem.UNSAFE_ENDPOINT),
        (doc(endpoint="https://127.0.0.1:2583"), ResolveProblem.UNSAFE_ENDPOINT),
        (doc(endpoint="https://pds.example.com@10.0.0.1"), ResolveProblem.UNSAFE_ENDPOINT),
        (doc(endpoint="javascript:alert(1)"), ResolveProblem.UNSAFE_ENDPOINT),
    ],
)
def test_bad_documents(document: object, problem: ResolveProblem) -> None:
    with pytest.raises(ResolveError) as caught:
        pds_origin(DID, document, allow_private=False, trusted=frozenset())
    assert caught.value.problem is problem and not caught.value.retriable


def test_document_urls() -> None:
    assert document_url(DID, "https://plc.directory/", allow_private=False) == (f"https://plc.directory/{DID}", False)
    assert document_url("did:web:example.com", "x", allow_private=False) == (
        "https://example.com/.well-known/did.json",
        True,
    )
    assert document_url("did:web:localhost%3A8080", "x", allow_private=True) == (
        "http://localhost:8080/.well-known/did.json",
        True,
    )
    for did in ("did:web:localhost%3A8080", "did:web:127.0.0.1", "did:web:2130706433", "did:key:zabc", "nope"):
        with pytest.raises(ResolveError) as caught:
            document_url(did, "https://plc.directory", allow_private=False)
        assert caught.value.problem is ResolveProblem.UNSUPPORTED_DID, did
