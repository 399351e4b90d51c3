"""atproto identifier syntax: fast predicate functions and pydantic ``Annotated`` types built on them,
plus the collection filter and TID/AT-URI helpers.

Checked against atproto's interop syntax fixtures (tests/unit/schemas/test_ids.py).
Specs: atproto.com/specs/did, /handle, /nsid, /record-key, /tid, /at-uri-scheme, /lexicon#datetime.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, NamedTuple

from pydantic import AfterValidator, StringConstraints

# Each syntax is one regular expression, matched whole, plus a length bound: the predicates below run
# it with Python's re, and the pydantic types at the end of this module hand the same expression to
# pydantic-core's Rust regex engine, which checks an envelope's identifiers without calling back into
# Python (a Python validator per field cost more than the rest of an envelope's validation together).
# The expressions therefore use only what both engines read alike: ASCII classes, groups, counted
# repetition; no lookaround, no backreferences.
_DID_SYNTAX = r"did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]"
_HANDLE_SYNTAX = r"([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
_NSID_SYNTAX = (
    r"[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)+"
    r"(\.[a-zA-Z]([a-zA-Z0-9]{0,62})?)"
)
# Any run of the allowed characters but "." and "..": one that holds a character other than a dot,
# or three dots or more.
_RKEY_SYNTAX = r"[a-zA-Z0-9_~.:-]*[a-zA-Z0-9_~:-][a-zA-Z0-9_~.:-]*|\.{3,}"
_TID_SYNTAX = r"[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}"
# The spec's loose CID syntax, except a CIDv0 "Qmb..." (not allowed in atproto data).
_CID_SYNTAX = r"([a-zA-PR-Z0-9+=]|Q([a-ln-zA-Z0-9+=]|m[ac-zA-Z0-9+=]))[a-zA-Z0-9+=]*"
_DID_MAX, _HANDLE_MAX, _NSID_MAX, _RKEY_MAX, _CID_MIN, _CID_MAX = 2048, 253, 317, 512, 8, 256

_DID = re.compile(_DID_SYNTAX)
_HANDLE = re.compile(_HANDLE_SYNTAX)
_NSID = re.compile(_NSID_SYNTAX)
_RKEY = re.compile(_RKEY_SYNTAX)
_TID = re.compile(_TID_SYNTAX)
_CID = re.compile(_CID_SYNTAX)
_DATETIME = re.compile(
    r"[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]:[0-6][0-9](\.[0-9]{1,20})?"
    r"(Z|([+-][0-2][0-9]:[0-5][0-9]))"
)
_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
_TID_DIGITS = re.compile("[234567a-z]+")
_TID_TO_INT = str.maketrans(_TID_ALPHABET, "0123456789abcdefghijklmnopqrstuv")


def is_did(s: str) -> bool:
    """DID syntax (method-agnostic), at most 2 KB."""
    return len(s) <= _DID_MAX and _DID.fullmatch(s) is not None


def is_handle(s: str) -> bool:
    """Handle syntax: a DNS name of at least two labels, TLD not starting with a digit."""
    return len(s) <= _HANDLE_MAX and _HANDLE.fullmatch(s) is not None


def is_nsid(s: str) -> bool:
    """NSID syntax: reversed domain authority plus a name segment."""
    return len(s) <= _NSID_MAX and _NSID.fullmatch(s) is not None


def is_record_key(s: str) -> bool:
    """Record key syntax; "." and ".." are not allowed."""
    return len(s) <= _RKEY_MAX and _RKEY.fullmatch(s) is not None


def is_tid(s: str) -> bool:
    """TID syntax: 13 base32-sortable characters, top bit zero."""
    return _TID.fullmatch(s) is not None


def is_datetime(s: str) -> bool:
    """The atproto datetime profile (RFC 3339 ∩ ISO 8601, timezone required) that also parses."""
    if len(s) > 64 or _DATETIME.fullmatch(s) is None or s.endswith("-00:00"):
        return False
    text = s[:-1] + "+00:00" if s.endswith("Z") else s
    if text.startswith("0000-"):
        # Python has no year 0, which the syntax allows; check the calendar on a leap year like it,
        # and refuse an offset that would put the moment before year 0.
        if text[-6] == "+" and text[-5:] != "00:00":
            return False
        text = "2000" + text[4:]
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def is_cid_syntax(s: str) -> bool:
    """Loose CID string syntax, as the spec describes (the codec is checked where CIDs are parsed)."""
    return _CID_MIN <= len(s) <= _CID_MAX and _CID.fullmatch(s) is not None


def is_at_identifier(s: str) -> bool:
    """A DID or a handle."""
    return is_did(s) if s.startswith("did:") else is_handle(s)


class AtUriParts(NamedTuple):
    """An AT-URI split into its authority, collection and record key (a tuple: every strongRef of
    every record is parsed once, and a frozen dataclass cost more to build than the checks)."""

    authority: str
    collection: str | None
    rkey: str | None


def parse_at_uri(s: str) -> AtUriParts | None:
    """Split a restricted AT-URI (at://authority[/collection[/rkey]]); None if it is not one."""
    if len(s) > 8192 or not s.startswith("at://") or "#" in s or "?" in s:
        return None
    parts = s[5:].split("/")
    if len(parts) > 3 or not parts[0] or not is_at_identifier(parts[0]):
        return None
    collection = parts[1] if len(parts) > 1 else None
    rkey = parts[2] if len(parts) > 2 else None
    if collection is not None and not is_nsid(collection):
        return None
    if rkey is not None and not is_record_key(rkey):
        return None
    return AtUriParts(parts[0], collection, rkey)


def parse_record_uri(s: str) -> tuple[str, str, str] | None:
    """(DID, collection, rkey) of an AT-URI naming one record by its repo's DID (not a handle); None
    if ``s`` is not one."""
    parts = parse_at_uri(s)
    if parts is None or parts.collection is None or parts.rkey is None or not is_did(parts.authority):
        return None
    return parts.authority, parts.collection, parts.rkey


def is_at_uri(s: str) -> bool:
    """Restricted AT-URI syntax as used for records."""
    return parse_at_uri(s) is not None


def make_at_uri(did: str, collection: str, rkey: str) -> str:
    """at://did/collection/rkey"""
    return f"at://{did}/{collection}/{rkey}"


def tid_to_datetime(tid: str) -> datetime:
    """The timestamp a TID encodes (53 bits of microseconds since the epoch)."""
    if _TID_DIGITS.fullmatch(tid):
        # int() reads base 32 in C once the alphabet is spelled as its digits: a fifth of the loop's cost.
        value = int(tid.translate(_TID_TO_INT), 32)
    else:
        value = 0
        for ch in tid:
            value = value * 32 + _TID_ALPHABET.index(ch)  # ValueError on a character outside it
    return datetime.fromtimestamp((value >> 10) / 1_000_000, UTC)


def tid_from_datetime(dt: datetime, clock_id: int = 0) -> str:
    """A TID for a moment; TIDs compare as strings in time order."""
    value = (int(dt.timestamp() * 1_000_000) << 10) | (clock_id & 0x3FF)
    chars = []
    for _ in range(13):
        chars.append(_TID_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def _check(pred: object, what: str) -> AfterValidator:
    def validate(value: str) -> str:
        if not pred(value):  # type: ignore[operator]
            raise ValueError(f"invalid {what}: {value[:120]!r}")
        return value

    return AfterValidator(validate)


def _syntax(expression: str, max_length: int, min_length: int = 1) -> StringConstraints:
    return StringConstraints(pattern=f"^(?:{expression})$", min_length=min_length, max_length=max_length)


Did = Annotated[str, _syntax(_DID_SYNTAX, _DID_MAX)]
Handle = Annotated[str, _syntax(_HANDLE_SYNTAX, _HANDLE_MAX)]
Nsid = Annotated[str, _syntax(_NSID_SYNTAX, _NSID_MAX)]
RecordKey = Annotated[str, _syntax(_RKEY_SYNTAX, _RKEY_MAX)]
Tid = Annotated[str, _syntax(_TID_SYNTAX, 13)]
CidStr = Annotated[str, _syntax(_CID_SYNTAX, _CID_MAX, _CID_MIN)]
AtUri = Annotated[str, _check(is_at_uri, "AT-URI")]
Datetime = Annotated[str, _check(is_datetime, "datetime")]


@dataclass(frozen=True, slots=True)
class CollectionFilter:
    """Which collections to keep: exact NSIDs, ``prefix.*`` wildcards, or ``*``.

    ``matches`` runs on every op of every firehose commit, so it is a set lookup plus one
    ``str.startswith`` over a tuple of prefixes.
    """

    exact: frozenset[str]
    prefixes: tuple[str, ...]
    everything: bool = False

    @classmethod
    def parse(cls, text: str) -> CollectionFilter:
        """Parse a comma- or space-separated list of patterns; ValueError names a bad one."""
        patterns = [p for p in re.split(r"[,\s]+", text.strip()) if p]
        if not patterns:
            raise ValueError("no collection pattern given")
        exact: set[str] = set()
        prefixes: list[str] = []
        everything = False
        for pattern in patterns:
            if pattern == "*":
                everything = True
            elif pattern.endswith(".*"):
                stem = pattern[:-2]
                # The stem is an NSID authority: domain segments, at least two.
                if not re.fullmatch(r"[a-zA-Z][a-zA-Z0-9-]*(\.[a-zA-Z0-9][a-zA-Z0-9-]*)+", stem):
                    raise ValueError(f"bad collection pattern {pattern!r}")
                prefixes.append(stem + ".")
            elif is_nsid(pattern):
                exact.add(pattern)
            else:
                raise ValueError(f"bad collection pattern {pattern!r}")
        return cls(frozenset(exact), tuple(sorted(set(prefixes))), everything)

    def matches(self, nsid: str) -> bool:
        """Whether a collection is in scope."""
        return self.everything or nsid in self.exact or nsid.startswith(self.prefixes)

    def __str__(self) -> str:
        if self.everything:
            return "*"
        return ",".join(sorted(self.exact) + [p + "*" for p in self.prefixes])
