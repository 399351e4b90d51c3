"""Fuzz the envelope codec (schemas/codec.py), the API's page cursors (api/cursor.py) and its
parameter parser (api/xrpc.py ``parse_params``) without a server.

Allowed outcomes: ``codec.decode`` an Event or EnvelopeError, and an accepted envelope encodes and
decodes back to itself; ``cursor.decode`` the key (or None) or InvalidRequest, and every cursor
``encode`` writes decodes to its key; ``parse_params`` the parameters or InvalidRequest.
"""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api import cursor
from api.errors import InvalidRequest
from api.xrpc import parse_params, query_lexicons
from schemas import codec
from tests.fuzz import seeds
from tests.fuzz.harness import Refused, attempt, fuzz
from tests.fuzz.strategies import JSON, deep_json, mutated, random_json

pytestmark = pytest.mark.fuzz

# ---------------------------------------------------------------------------------------- envelopes


def _decode_envelope(data: bytes) -> None:
    event = attempt("codec.decode", (codec.EnvelopeError,), codec.decode, data)
    if not isinstance(event, Refused):
        assert codec.decode(codec.encode(event)) == event


@fuzz(400)
@given(mutated(seeds.envelopes()))
def test_envelopes_mutated_bytes(data: bytes) -> None:
    _decode_envelope(data)


@fuzz(400)
@given(st.integers(0, 2**32), JSON)
def test_envelopes_with_a_field_of_any_type(seed: int, value: Any) -> None:
    rng = random.Random(seed)
    raw = orjson.loads(rng.choice(seeds.envelopes()))
    target = raw
    if isinstance(raw.get("record"), dict) and rng.random() < 0.3:
        target = raw["record"]
    key = rng.choice([*target, "schema_version", "kind", "extra"])
    roll = rng.random()
    if roll < 0.7:
        target[key] = value
    elif roll < 0.85:
        target.pop(key, None)
    else:
        target[key] = deep_json(rng.choice((10, 100, 1_000)), value)
    try:
        data = orjson.dumps(raw)
    except (TypeError, orjson.JSONEncodeError):
        data = repr(raw).encode()  # not JSON at all (a NaN, a surrogate, a huge integer)
    _decode_envelope(data)


@fuzz(100)
@given(st.binary(max_size=200))
def test_envelopes_any_bytes(data: bytes) -> None:
    _decode_envelope(data)


# ------------------------------------------------------------------------------------------ cursors

KINDS: tuple[tuple[type, ...], ...] = ((datetime, str), (int, str), (float, str), (str,), (int,), (str, str))
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _key_for(kinds: tuple[type, ...], rng: random.Random) -> tuple[Any, ...]:
    def one(kind: type) -> Any:
        if kind is datetime:
            return T0 + timedelta(microseconds=rng.randint(-(10**15), 10**15))
        if kind is int:
            return rng.choice((0, -1, rng.randint(-(2**63), 2**63 - 1)))
        if kind is float:
            return rng.choice((0.0, 1.5, rng.random() * 1e6))
        return rng.choice(("", "at://did:plc:x/fm.plyr.track/3k", "\u00e9", "x" * 200))

    return tuple(one(k) for k in kinds)


@fuzz(300)
@given(st.integers(0, 2**32))
def test_cursors_round_trip(seed: int) -> None:
    rng = random.Random(seed)
    kinds = rng.choice(KINDS)
    key = _key_for(kinds, rng)
    assert cursor.decode("t", cursor.encode("t", *key), kinds) == key


def _decode_cursor(text: str, kinds: tuple[type, ...]) -> None:
    out = attempt("cursor.decode", (InvalidRequest,), cursor.decode, "t", text, kinds)
    if not isinstance(out, Refused) and out is not None:
        assert len(out) == len(kinds)
        for part, kind in zip(out, kinds, strict=True):
            assert isinstance(part, kind) and not isinstance(part, bool)


@st.composite
def _cursor_texts(draw: st.DrawFn) -> tuple[str, tuple[type, ...]]:
    rng = random.Random(draw(st.integers(0, 2**32)))
    kinds = rng.choice(KINDS)
    roll = rng.random()
    if roll < 0.4:
        # A well-formed envelope around the wrong things: any JSON as the key parts, or the wrong tag.
        parts = [rng.choice(("t", "t", "other", 1, None))]
        parts += [random_json(rng) for _ in range(rng.choice((len(kinds), len(kinds), len(kinds) + 1, 0)))]
        try:
            raw = orjson.dumps(parts)
        except (TypeError, orjson.JSONEncodeError):
            raw = b"[]"
        text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    elif roll < 0.7:
        text = cursor.encode("t", *_key_for(kinds, rng))
        chars = list(text)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(chars) + 1)
            chars[i:i] = rng.choice(("=", "+", "/", "-", "_", "\x00", "\u00e9", "%", " "))
        text = "".join(chars)
    elif roll < 0.85:
        text = base64.urlsafe_b64encode(rng.randbytes(rng.randint(0, 40))).decode()
    else:
        text = draw(st.text(max_size=40))
    return text, kinds


@fuzz(500)
@given(_cursor_texts())
def test_cursors_any_text(case: tuple[str, tuple[type, ...]]) -> None:
    _decode_cursor(*case)


@fuzz(100)
@given(st.sampled_from(KINDS), st.sampled_from(["2026-01-01", "9999-12-31T23:59:59+14:00", "0001-01-01T00:00Z", "nan"]))
def test_cursors_odd_times(kinds: tuple[type, ...], when: str) -> None:
    text = base64.urlsafe_b64encode(orjson.dumps(["t", when, "u"])).decode()
    _decode_cursor(text, kinds)


# --------------------------------------------------------------------------------------- parameters

QUERIES = query_lexicons()
_ODD = ("", "0", "-1", "1e3", "٣", "+5", " 5", "true", "True", "\x00", "\ud800", "x" * 5_000, "did:plc:", "at://")


@st.composite
def _query(draw: st.DrawFn) -> tuple[str, dict[str, list[str]]]:
    rng = random.Random(draw(st.integers(0, 2**32)))
    nsid = rng.choice(sorted(QUERIES))
    props = list(QUERIES[nsid].get("parameters", {}).get("properties", {}))
    query: dict[str, list[str]] = {}
    for name in props:
        if rng.random() < 0.6:
            values = [rng.choice(_ODD) if rng.random() < 0.5 else draw(st.text(max_size=20))]
            if rng.random() < 0.1:
                values.append("1")
            query[name] = values
    if rng.random() < 0.1:
        query[rng.choice(("x", "", "limit ", "LIMIT"))] = ["1"]
    return nsid, query


@fuzz(400)
@given(_query())
def test_parse_params(case: tuple[str, dict[str, list[str]]]) -> None:
    nsid, query = case
    attempt("xrpc.parse_params", (InvalidRequest,), parse_params, QUERIES[nsid], query)
