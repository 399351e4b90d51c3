"""Opaque page cursors: the (sort key, uri) of the last row served, tagged with the list they page.

A cursor is base64url of a small JSON array. It is not a secret, just opaque to clients so the key
can change; anything that does not decode to the expected shape is a 400 InvalidRequest, never a 500.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

import orjson

from api.errors import InvalidRequest

Key = str | int | float | datetime


class Int32(int):
    """The kind of a key part read from a 32-bit column (``integer``): a cursor whose part is outside
    that range is not one this API wrote. A plain ``int`` part is a ``bigint``'s, within int64."""


_INT_RANGES: dict[type, tuple[int, int]] = {int: (-(2**63), 2**63 - 1), Int32: (-(2**31), 2**31 - 1)}


def _is(kind: type, value: object) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return kind is str and isinstance(value, str)


def encode(tag: str, *key: Key) -> str:
    """The cursor after a row whose sort key is ``key``."""
    values = [k.isoformat() if isinstance(k, datetime) else k for k in key]
    return base64.urlsafe_b64encode(orjson.dumps([tag, *values])).decode().rstrip("=")


def decode(tag: str, cursor: str | None, kinds: tuple[type, ...]) -> tuple[Key, ...] | None:
    """The key in ``cursor`` (None when absent), each part of the type in ``kinds`` (datetime parts
    are ISO strings in the cursor)."""
    if cursor is None:
        return None
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise InvalidRequest("malformed cursor") from None
    if not isinstance(raw, list) or len(raw) != len(kinds) + 1 or raw[0] != tag:
        raise InvalidRequest("cursor does not belong to this list")
    out: list[Key] = []
    for value, kind in zip(raw[1:], kinds, strict=True):
        if kind is datetime:
            try:
                parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
            except ValueError:
                parsed = None
            if parsed is None or parsed.tzinfo is None:
                raise InvalidRequest("malformed cursor")
            try:
                # The driver sends it in UTC; a time whose UTC falls outside years 1-9999 cannot be.
                parsed.astimezone(UTC)
            except OverflowError:
                raise InvalidRequest("malformed cursor") from None
            out.append(parsed)
        elif kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            out.append(float(value))
        elif kind in _INT_RANGES and isinstance(value, int) and not isinstance(value, bool):
            # Postgres refuses a parameter outside its column's range: that was a 500.
            low, high = _INT_RANGES[kind]
            if not low <= value <= high:
                raise InvalidRequest("malformed cursor")
            out.append(value)
        elif kind is str and isinstance(value, str) and "\x00" not in value:
            out.append(value)
        else:
            raise InvalidRequest("malformed cursor")
    return tuple(out)
