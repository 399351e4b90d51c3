"""A DID document → the atproto facts in it (pure): the handle claim, the PDS endpoint, the signing key.

Spec: atproto.com/specs/did ("DID Documents"), atproto.com/specs/handle.

- Where: ``did:plc`` documents come from the PLC directory (operator config, trusted host);
  ``did:web`` ones from ``https://<host>/.well-known/did.json``, an untrusted host. Only hostname-level
  did:web, as atproto allows: no path segments; a port (``%3A``) only when private hosts are allowed
  (local development, where the scheme is plain http too).
- ``id`` must be the DID that was resolved: a document served for another DID is refused.
- Handle: the *first* ``alsoKnownAs`` entry that is an ``at://`` URI, lower-cased, when the rest is a
  valid handle (else none). Only the first: a document listing someone else's handle behind its own
  must not get that one tried. It is a claim; it counts only once it resolves back to the DID.
- Signing key: the verification method with id ``#atproto`` (or ``<did>#atproto``) of type
  ``Multikey``; its ``publicKeyMultibase`` is kept as the multibase string (base58btc, ``z``...),
  which the signature code decodes. A method of a legacy type (``EcdsaSecp256k1VerificationKey2019``,
  ``EcdsaSecp256r1VerificationKey2019``: the curve in the type, the bare point, uncompressed in
  practice, without a multicodec prefix) is the same key: it is given back in the Multikey form, as
  atproto's own resolver reads it (``@atproto/identity`` ``getDidKeyFromMultibase``). Older documents
  and the PLC directory's reference server (``@did-plc/server``) still write that form.
- PDS: the service with id ``#atproto_pds`` (or ``<did>#atproto_pds``) of type
  ``AtprotoPersonalDataServer``; its ``serviceEndpoint`` string as written. Whether that URL is safe to
  contact is the fetcher's check (``runtime.urls.service_origin``), which ``schemas`` cannot import.

A missing piece is None. A document that is not a JSON object, names another DID, has its lists of
the wrong type, or whose atproto entries have the wrong shape raises :class:`DidDocError` with a
closed :class:`DidDocProblem`. Other entries (other services, other keys) are not ours to judge and
are skipped whatever they hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote

import orjson

from schemas.ids import is_did, is_handle

_PDS_TYPE = "AtprotoPersonalDataServer"
_KEY_TYPE = "Multikey"
# Legacy verification method type → the multicodec prefix of the Multikey form of its key.
_LEGACY_KEY_TYPES = {
    "EcdsaSecp256k1VerificationKey2019": b"\xe7\x01",  # secp256k1-pub
    "EcdsaSecp256r1VerificationKey2019": b"\x80\x24",  # p256-pub
}
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
# base58btc multibase; a compressed P-256 or secp256k1 Multikey is 48 characters, this leaves room.
_MULTIBASE_KEY = re.compile(r"z[1-9A-HJ-NP-Za-km-z]{1,128}")
# What an unquoted did:web identifier may be: a host name or address, and a port in development.
_WEB_HOST = re.compile(r"[a-z0-9.-]{1,253}(:[0-9]{1,5})?")
_MAX_ENDPOINT = 2048


class DidDocProblem(StrEnum):
    """Why a DID has no usable document (closed set: a log field and a metric label)."""

    UNSUPPORTED_DID = "unsupported_did"
    NOT_JSON = "not_json"
    NOT_AN_OBJECT = "not_an_object"
    WRONG_ID = "wrong_id"
    MALFORMED = "malformed"


class DidDocError(ValueError):
    """A DID that cannot be resolved here, or a document that is not a valid one for it."""

    def __init__(self, problem: DidDocProblem, detail: str) -> None:
        super().__init__(f"{problem}: {detail}")
        self.problem = problem


@dataclass(frozen=True, slots=True)
class DidDocument:
    """The atproto facts of one DID's document; each None when the document has none."""

    did: str
    # The handle the document claims (lower case), not yet verified.
    handle: str | None
    # The #atproto_pds serviceEndpoint as written: check it before contacting it.
    pds: str | None
    # The #atproto Multikey's publicKeyMultibase.
    signing_key: str | None


def document_url(did: str, plc_url: str, *, allow_private: bool) -> tuple[str, bool]:
    """Where the document of ``did`` is, and whether that host is untrusted (fetch it guarded)."""
    if not is_did(did):
        raise DidDocError(DidDocProblem.UNSUPPORTED_DID, "malformed DID")
    if did.startswith("did:plc:"):
        return f"{plc_url.rstrip('/')}/{did}", False
    if did.startswith("did:web:"):
        host = unquote(did.removeprefix("did:web:")).lower()
        if not _WEB_HOST.fullmatch(host):
            raise DidDocError(DidDocProblem.UNSUPPORTED_DID, "did:web must name a host only")
        if ":" in host and not allow_private:
            raise DidDocError(DidDocProblem.UNSUPPORTED_DID, "did:web with a port")
        scheme = "http" if allow_private else "https"
        return f"{scheme}://{host}/.well-known/did.json", True
    raise DidDocError(DidDocProblem.UNSUPPORTED_DID, "only did:plc and did:web are supported")


def load_did_document(did: str, body: bytes) -> DidDocument:
    """Parse the bytes of the document served for ``did``."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise DidDocError(DidDocProblem.NOT_JSON, "not JSON") from err
    return parse_did_document(did, document)


def parse_did_document(did: str, document: object) -> DidDocument:
    """The atproto facts of ``document``, the decoded JSON served for ``did``."""
    if not isinstance(document, dict):
        raise DidDocError(DidDocProblem.NOT_AN_OBJECT, "a DID document is a JSON object")
    if document.get("id") != did:
        raise DidDocError(DidDocProblem.WRONG_ID, "the document is not this DID's")
    return DidDocument(
        did=did,
        handle=_handle(_list(document, "alsoKnownAs")),
        pds=_pds(did, _list(document, "service")),
        signing_key=_signing_key(did, _list(document, "verificationMethod")),
    )


def _list(document: dict[str, object], key: str) -> list[object]:
    value = document.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise DidDocError(DidDocProblem.MALFORMED, f"{key} is not a list")
    return value


def _handle(aliases: list[object]) -> str | None:
    for alias in aliases:
        if isinstance(alias, str) and alias.startswith("at://"):
            handle = alias.removeprefix("at://").lower()
            return handle if is_handle(handle) else None
    return None


def _entry(entries: list[object], ids: tuple[str, str], *kinds: str) -> dict[str, object] | None:
    """The first entry whose id is one of ``ids``, of one of the types ``kinds``."""
    for entry in entries:
        if isinstance(entry, dict) and entry.get("id") in ids and entry.get("type") in kinds:
            return entry
    return None


def _pds(did: str, services: list[object]) -> str | None:
    service = _entry(services, ("#atproto_pds", f"{did}#atproto_pds"), _PDS_TYPE)
    if service is None:
        return None
    endpoint = service.get("serviceEndpoint")
    if not isinstance(endpoint, str) or not 0 < len(endpoint) <= _MAX_ENDPOINT:
        raise DidDocError(DidDocProblem.MALFORMED, "the #atproto_pds serviceEndpoint is not a URL string")
    return endpoint


def _signing_key(did: str, methods: list[object]) -> str | None:
    method = _entry(methods, ("#atproto", f"{did}#atproto"), _KEY_TYPE, *_LEGACY_KEY_TYPES)
    if method is None:
        return None
    key = method.get("publicKeyMultibase")
    # An uncompressed point is 65 bytes: about 90 base58 characters, within the pattern's bound.
    if not isinstance(key, str) or not _MULTIBASE_KEY.fullmatch(key):
        raise DidDocError(DidDocProblem.MALFORMED, "the #atproto publicKeyMultibase is not a base58btc multibase")
    prefix = _LEGACY_KEY_TYPES.get(str(method.get("type")))
    return key if prefix is None else _legacy_multikey(key, prefix)


def _legacy_multikey(key: str, prefix: bytes) -> str:
    """The Multikey form of a legacy method's key: the point compressed, behind the curve's multicodec."""
    point = _b58decode(key[1:])
    if len(point) == 65 and point[0] == 4:
        point = bytes([2 | (point[64] & 1)]) + point[1:33]  # SEC1 compression: x, and the parity of y
    elif not (len(point) == 33 and point[0] in (2, 3)):
        raise DidDocError(DidDocProblem.MALFORMED, "the #atproto legacy key is not an uncompressed or compressed point")
    return "z" + _b58encode(prefix + point)


def _b58decode(text: str) -> bytes:
    value = 0
    for char in text:
        value = value * 58 + _B58.index(char)  # the pattern admitted only base58 characters
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
