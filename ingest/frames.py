"""Websocket frame bytes → header + body (atproto.com/specs/event-stream#framing).

A frame is two concatenated DAG-CBOR objects: a header ``{"op": 1, "t": "#commit"}`` (or ``op: -1``
for an error) and a body. Known kinds become a :class:`MessageFrame`, error frames an
:class:`ErrorFrame`, anything else an :class:`UnknownFrame` the caller skips and counts — a new kind
from upstream is never fatal. Bytes that are not two DAG-CBOR objects raise :class:`FrameError`.

libipld decodes a ~5 KB relay frame in about a microsecond; CID links come back as raw CID bytes,
which is safe here because the frame schema says which fields are links.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import libipld

KNOWN_KINDS = frozenset({"#commit", "#sync", "#identity", "#account", "#info"})


class FrameError(ValueError):
    """The bytes are not a well-formed event-stream frame."""


@dataclass(frozen=True, slots=True)
class MessageFrame:
    """A message of a known kind (``t``) and its still-untyped body."""

    t: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    """``op: -1``: the upstream reports an error (FutureCursor, ConsumerTooSlow, ...) and will close."""

    error: str
    message: str | None


@dataclass(frozen=True, slots=True)
class UnknownFrame:
    """A frame of an op or kind this version does not know; skipped, counted."""

    op: object
    t: object


Frame = MessageFrame | ErrorFrame | UnknownFrame


def decode_frame(data: bytes) -> Frame:
    """Split and decode one frame."""
    try:
        parts = libipld.decode_dag_cbor_multi(data)
    except (ValueError, TypeError, OverflowError, RecursionError) as err:
        # libipld refuses nesting past its depth limit with a RecursionError, not a ValueError.
        raise FrameError(f"not DAG-CBOR: {err}") from err
    if len(parts) != 2:
        raise FrameError(f"expected header and body, got {len(parts)} objects")
    header, body = parts
    if not isinstance(header, dict) or not isinstance(body, dict):
        raise FrameError("header and body must be maps")
    op = header.get("op")
    if op == 1:
        t = header.get("t")
        if isinstance(t, str) and t in KNOWN_KINDS:
            return MessageFrame(t, body)
        return UnknownFrame(op, t)
    if op == -1:
        error = body.get("error")
        message = body.get("message")
        if not isinstance(error, str):
            raise FrameError("error frame without an error name")
        return ErrorFrame(error, message if isinstance(message, str) else None)
    return UnknownFrame(op, header.get("t"))
