"""Envelope ⇄ bytes on the log (orjson), with upcasting of older schema versions on read.

``encode`` writes the current version. ``decode`` reads any version ever written: it upcasts the raw
mapping step by step (``_UPCASTERS[v]`` turns version v into v+1) before validating, so the log is
never rewritten when the envelope changes. Bytes that are not a valid envelope raise
:class:`EnvelopeError`, which consumers dead-letter instead of crashing on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from schemas.envelope import SCHEMA_VERSION, Event, EventEnvelope


class EnvelopeError(ValueError):
    """Bytes on the log that are not a valid envelope of any known version."""


_ADAPTER: TypeAdapter[Event] = TypeAdapter(EventEnvelope)


def _upcast_v1_v2(raw: dict[str, Any]) -> dict[str, Any]:
    # v1 copied an #identity's handle from the frame without checking it: it was never verified.
    if raw.get("kind") == "identity":
        return {**raw, "handle_valid": False}
    return raw


# version → function from a mapping of that version to one of the next.
_UPCASTERS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _upcast_v1_v2}


def encode(event: Event) -> bytes:
    """The envelope as compact JSON bytes."""
    return orjson.dumps(event.model_dump(mode="python", exclude_none=True))


def decode(data: bytes) -> Event:
    """Parse, upcast and validate one envelope."""
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise EnvelopeError(f"not JSON: {err}") from err
    if not isinstance(raw, dict):
        raise EnvelopeError("envelope is not an object")
    version = raw.get("schema_version")
    if not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
        raise EnvelopeError(f"unknown schema_version {version!r}")
    while version < SCHEMA_VERSION:
        raw = _UPCASTERS[version](raw)
        version += 1
        raw["schema_version"] = version
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise EnvelopeError(f"invalid envelope: {err.error_count()} errors: {where}: {first['msg']}") from err


def to_json_line(event: Event) -> bytes:
    """The envelope as one JSON line (for ``--to jsonl``)."""
    return encode(event) + b"\n"
