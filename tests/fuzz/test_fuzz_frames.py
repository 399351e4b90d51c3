"""Fuzz the frame decoder (ingest/frames.py), the message builders (ingest/messages.py) and the whole
per-frame path (ingest/pipeline.py), seeded with real firehose frames.

Allowed outcomes: ``decode_frame`` gives a frame or FrameError; ``commit_in_scope`` and
``parse_message`` give a value or MessageError; ``process_frame`` never raises at all (a bad frame is
an outcome with a drop), and a malformed outcome always says why.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.frames import FrameError, MessageFrame, decode_frame
from ingest.ipld import dagcbor
from ingest.messages import MessageError, commit_in_scope, parse_message
from ingest.pipeline import FrameKind, FrameOutcome, process_frame
from schemas.ids import CollectionFilter
from tests.fuzz import seeds
from tests.fuzz.harness import attempt, fuzz
from tests.fuzz.strategies import ANY_CBOR, DEEP, RAW_CBOR, head, mutated

pytestmark = pytest.mark.fuzz

FILTERS = (CollectionFilter.parse("fm.plyr.*"), CollectionFilter.parse("*"))


@cache
def _split(frame: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """A canonical frame's header and body, links as CIDs (so they can be written back)."""
    for cut in range(1, len(frame)):
        try:
            header = dagcbor.decode(frame[:cut])
        except dagcbor.DagCborError:
            continue
        return header, dagcbor.decode(frame[cut:])
    raise AssertionError("not a frame")


def _check(data: bytes) -> None:
    """Every stage on ``data``, each held to its allowed outcomes."""
    frame = attempt("frames.decode_frame", (FrameError,), decode_frame, data)
    if isinstance(frame, MessageFrame):
        if frame.t == "#commit":
            attempt("messages.commit_in_scope", (MessageError,), lambda: commit_in_scope(frame.body, bool))
        attempt("messages.parse_message", (MessageError,), parse_message, frame)
    for collections in FILTERS:
        outcome = attempt(
            "pipeline.process_frame", (), lambda c=collections: process_frame(data, upstream="fuzz", collections=c)
        )
        assert isinstance(outcome, FrameOutcome)
        if outcome.kind is FrameKind.MALFORMED:
            assert outcome.drops, "a malformed frame must say why"
        assert outcome.seq is None or type(outcome.seq) is int


def _encode_with(value: Any, path: tuple[str | int, ...], raw: bytes) -> bytes:
    """``value`` in canonical DAG-CBOR, except the item at ``path``, which is ``raw``."""
    if not path:
        return raw
    step, rest = path[0], path[1:]
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        parts = [head(5, len(keys))]
        for k in keys:
            parts.append(dagcbor.encode(k))
            parts.append(_encode_with(value[k], rest, raw) if k == step else dagcbor.encode(value[k]))
        return b"".join(parts)
    assert isinstance(value, list)
    parts = [head(4, len(value))]
    for i, item in enumerate(value):
        parts.append(_encode_with(item, rest, raw) if i == step else dagcbor.encode(item))
    return b"".join(parts)


@cache
def _body_paths(frame: bytes) -> tuple[tuple[str | int, ...], ...]:
    return tuple(_paths(_split(frame)[1]))


def _paths(value: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every place in a body a field can be replaced: keys, list items, keys of maps in lists."""
    out: list[tuple[str | int, ...]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append((*prefix, k))
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            out.append((*prefix, i))
            out.extend(_paths(v, (*prefix, i)))
    return out


@st.composite
def _field_swaps(draw: st.DrawFn) -> bytes:
    """A real frame with one field of its header or body (or of an op) replaced by any CBOR item."""
    frame = draw(st.sampled_from(seeds.frames()))
    header, body = _split(frame)
    raw = draw(ANY_CBOR)
    if draw(st.integers(0, 4)) == 0:
        return _encode_with(header, draw(st.sampled_from(_paths(header) or [()])), raw) + dagcbor.encode(body)
    return dagcbor.encode(header) + _encode_with(body, draw(st.sampled_from(_body_paths(frame))), raw)


@fuzz(600)
@given(mutated(seeds.frames()))
def test_mutated_real_frames(data: bytes) -> None:
    _check(data)


@fuzz(300)
@given(_field_swaps())
def test_real_frames_with_a_field_of_any_type(data: bytes) -> None:
    _check(data)


@fuzz(200)
@given(st.sampled_from(seeds.frames()), ANY_CBOR, st.booleans())
def test_any_cbor_as_header_or_body(frame: bytes, raw: bytes, as_header: bool) -> None:
    header, body = _split(frame)
    _check(raw + dagcbor.encode(body) if as_header else dagcbor.encode(header) + raw)


@fuzz(150)
@given(RAW_CBOR | st.binary(max_size=64), RAW_CBOR | st.binary(max_size=64))
def test_any_bytes(a: bytes, b: bytes) -> None:
    _check(a + b)


@fuzz(40)
@given(DEEP)
def test_deeply_nested_body(body: bytes) -> None:
    _check(dagcbor.encode({"op": 1, "t": "#commit"}) + body)
    _check(body + dagcbor.encode({"seq": 1}))
