"""Strict DAG-CBOR for the atproto data model (atproto.com/specs/data-model, ipld.io/specs/codecs/dag-cbor).

Owns the byte form of records, commits and MST nodes, and their atproto JSON form. The data model is:
null, booleans, int64 integers, UTF-8 strings, byte strings, lists, string-keyed maps and CID links
(tag 42 over a 0x00 byte and the binary CID); floats are not part of it.

Invariants: :func:`decode` accepts exactly the canonical encoding :func:`encode` writes, so for every
``b`` it accepts ``encode(decode(b)) == b`` and a block's CID is a function of its value. It refuses
non-shortest integer and length heads, indefinite lengths, map keys that are not strings or are
duplicated or are out of canonical order (shorter first, then bytewise), any tag but 42, floats,
simple values other than false/true/null, invalid UTF-8, integers outside int64, nesting deeper than
``max_depth`` and input that is truncated or has bytes after the one item. Every refusal is a
:class:`DagCborError` whose ``reason`` is one of :data:`REASONS`; no other exception escapes.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

from ingest.ipld.cid import CID, CIDError

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
MAX_DEPTH: Final = 64
"""How many lists/maps may nest: the default for :func:`decode` and the limit for :func:`encode`, so
whatever is written can be read back with the defaults."""

REASONS: Final = frozenset(
    {
        "truncated",
        "trailing_bytes",
        "non_canonical",
        "unsupported_type",
        "invalid_utf8",
        "too_deep",
        "bad_cid",
        "bad_key",
        "bad_json",
    }
)

_TAG_CID: Final = 42


class DagCborError(ValueError):
    """Not strict DAG-CBOR (or not the atproto data model); ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# ---------------------------------------------------------------------------------------------- encode


def _head(out: bytearray, major: int, value: int) -> None:
    base = major << 5
    if value < 24:
        out.append(base | value)
    elif value < 0x100:
        out.append(base | 24)
        out.append(value)
    elif value < 0x10000:
        out.append(base | 25)
        out += value.to_bytes(2, "big")
    elif value < 0x100000000:
        out.append(base | 26)
        out += value.to_bytes(4, "big")
    else:
        out.append(base | 27)
        out += value.to_bytes(8, "big")


def _encode(value: Any, out: bytearray, depth: int) -> None:
    t = type(value)
    if t is str:
        raw = value.encode("utf-8")
        _head(out, 3, len(raw))
        out += raw
    elif value is None:
        out.append(0xF6)
    elif value is True:
        out.append(0xF5)
    elif value is False:
        out.append(0xF4)
    elif t is dict:
        if depth >= MAX_DEPTH:
            raise DagCborError("too_deep", f"more than {MAX_DEPTH} nested lists/maps")
        items = []
        for key, item in value.items():
            if type(key) is not str:
                raise DagCborError("bad_key", f"map key of type {type(key).__name__}")
            items.append((key.encode("utf-8"), item))
        items.sort(key=lambda kv: (len(kv[0]), kv[0]))
        _head(out, 5, len(items))
        for raw_key, item in items:
            _head(out, 3, len(raw_key))
            out += raw_key
            _encode(item, out, depth + 1)
    elif t is int or (isinstance(value, int) and not isinstance(value, bool)):
        if value >= 0:
            if value > INT64_MAX:
                raise DagCborError("unsupported_type", "integer above int64")
            _head(out, 0, value)
        else:
            if value < INT64_MIN:
                raise DagCborError("unsupported_type", "integer below int64")
            _head(out, 1, -1 - value)
    elif t is CID:
        # The CID in tag 42 is preceded by 0x00, the multibase "identity" prefix.
        _head(out, 6, _TAG_CID)
        _head(out, 2, len(value.raw) + 1)
        out.append(0)
        out += value.raw
    elif t is bytes or t is bytearray:
        _head(out, 2, len(value))
        out += value
    elif t is list or t is tuple:
        if depth >= MAX_DEPTH:
            raise DagCborError("too_deep", f"more than {MAX_DEPTH} nested lists/maps")
        _head(out, 4, len(value))
        for item in value:
            _encode(item, out, depth + 1)
    elif t is float:
        raise DagCborError("unsupported_type", "floats are not in the atproto data model")
    else:
        raise DagCborError("unsupported_type", t.__name__)


def encode(value: Any) -> bytes:
    """The canonical DAG-CBOR bytes of a data-model value."""
    out = bytearray()
    try:
        _encode(value, out, 0)
    except UnicodeEncodeError as err:
        raise DagCborError("invalid_utf8", "string with a lone surrogate") from err
    return bytes(out)


# ---------------------------------------------------------------------------------------------- decode


def _argument(data: bytes, pos: int, end: int, info: int) -> tuple[int, int]:
    """The argument of a head whose additional info is ``info`` >= 24, read at ``pos``."""
    if info == 24:
        if pos >= end:
            raise DagCborError("truncated")
        value = data[pos]
        if value < 24:
            raise DagCborError("non_canonical", "one-byte argument below 24")
        return value, pos + 1
    if info == 25:
        size, minimum = 2, 0x100
    elif info == 26:
        size, minimum = 4, 0x10000
    elif info == 27:
        size, minimum = 8, 0x100000000
    else:
        # 28-30 are reserved and 31 opens an indefinite length: neither exists in DAG-CBOR.
        raise DagCborError("non_canonical", f"additional info {info}")
    nxt = pos + size
    if nxt > end:
        raise DagCborError("truncated")
    value = int.from_bytes(data[pos:nxt], "big")
    if value < minimum:
        raise DagCborError("non_canonical", "argument not in its shortest form")
    return value, nxt


def _string(data: bytes, pos: int, end: int, length: int) -> tuple[str, int]:
    nxt = pos + length
    if nxt > end:
        raise DagCborError("truncated")
    try:
        return data[pos:nxt].decode("utf-8"), nxt
    except UnicodeDecodeError as err:
        raise DagCborError("invalid_utf8") from err


def _string_head(data: bytes, pos: int, end: int, major: int, what: str, reason: str) -> tuple[int, int]:
    """Read the head of a byte/text string at ``pos``: (payload length, payload start), bounds-checked."""
    if pos >= end:
        raise DagCborError("truncated")
    first = data[pos]
    if first >> 5 != major:
        raise DagCborError(reason, what)
    info = first & 0x1F
    if info < 24:
        length, pos = info, pos + 1
    else:
        length, pos = _argument(data, pos + 1, end, info)
    if pos + length > end:
        raise DagCborError("truncated")
    return length, pos


def _link(data: bytes, pos: int, end: int) -> tuple[CID, int]:
    """The CID wrapped by a tag 42 whose payload head starts at ``pos``."""
    length, pos = _string_head(data, pos, end, 2, "tag 42 must wrap a byte string", "bad_cid")
    nxt = pos + length
    if length == 0 or data[pos] != 0:
        raise DagCborError("bad_cid", "link bytes must start with the 0x00 multibase prefix")
    try:
        return CID(data[pos + 1 : nxt]), nxt
    except CIDError as err:
        raise DagCborError("bad_cid", str(err)) from err


def _item(data: bytes, pos: int, end: int, depth: int) -> tuple[Any, int]:
    """The item at ``pos`` and the position after it; ``depth`` is how many more lists/maps may open."""
    if pos >= end:
        raise DagCborError("truncated")
    first = data[pos]
    pos += 1
    major = first >> 5
    if major == 7:
        if first == 0xF5:
            return True, pos
        if first == 0xF4:
            return False, pos
        if first == 0xF6:
            return None, pos
        raise DagCborError("unsupported_type", f"float or simple value 0x{first:02x}")
    info = first & 0x1F
    if info < 24:
        arg = info
    else:
        arg, pos = _argument(data, pos, end, info)
    if major == 3:
        return _string(data, pos, end, arg)
    if major == 0:
        if arg > INT64_MAX:
            raise DagCborError("unsupported_type", "integer above int64")
        return arg, pos
    if major == 5:
        if depth <= 0:
            raise DagCborError("too_deep")
        # Each entry takes at least two bytes; refusing early keeps absurd counts from looping.
        if arg * 2 > end - pos:
            raise DagCborError("truncated")
        result: dict[str, Any] = {}
        previous = b""
        previous_len = -1
        for _ in range(arg):
            key_len, pos = _string_head(data, pos, end, 3, "map keys must be strings", "bad_key")
            nxt = pos + key_len
            raw_key = data[pos:nxt]
            if key_len < previous_len or (key_len == previous_len and raw_key <= previous):
                if raw_key == previous:
                    raise DagCborError("bad_key", "duplicate map key")
                raise DagCborError("non_canonical", "map keys out of canonical order")
            previous, previous_len = raw_key, key_len
            try:
                key = raw_key.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DagCborError("invalid_utf8", "map key") from err
            result[key], pos = _item(data, nxt, end, depth - 1)
        return result, pos
    if major == 4:
        if depth <= 0:
            raise DagCborError("too_deep")
        if arg > end - pos:
            raise DagCborError("truncated")
        items = []
        for _ in range(arg):
            item, pos = _item(data, pos, end, depth - 1)
            items.append(item)
        return items, pos
    if major == 2:
        nxt = pos + arg
        if nxt > end:
            raise DagCborError("truncated")
        return data[pos:nxt], nxt
    if major == 6:
        if arg != _TAG_CID:
            raise DagCborError("unsupported_type", f"tag {arg}")
        return _link(data, pos, end)
    # major 1: a negative integer -1 - arg.
    if arg > INT64_MAX:
        raise DagCborError("unsupported_type", "integer below int64")
    return -1 - arg, pos


def decode(data: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """The one data-model value that is the whole of ``data``."""
    if type(data) is not bytes:
        data = bytes(data)
    try:
        value, pos = _item(data, 0, len(data), max_depth)
    except RecursionError as err:
        # Only reachable when a caller raises max_depth past what the interpreter stack allows.
        raise DagCborError("too_deep", "interpreter recursion limit") from err
    if pos != len(data):
        raise DagCborError("trailing_bytes", f"{len(data) - pos} bytes after the item")
    return value


# ------------------------------------------------------------------------------------------------ JSON


def _to_json(value: Any, depth: int) -> Any:
    t = type(value)
    if t is dict:
        if depth >= MAX_DEPTH:
            raise DagCborError("too_deep")
        return {k: _to_json(v, depth + 1) for k, v in value.items()}
    if t is list:
        if depth >= MAX_DEPTH:
            raise DagCborError("too_deep")
        return [_to_json(v, depth + 1) for v in value]
    if t is CID:
        return {"$link": value.encode()}
    if t is bytes or t is bytearray:
        return {"$bytes": base64.b64encode(value).decode("ascii").rstrip("=")}
    return value


def to_json(value: Any) -> Any:
    """The atproto JSON form: CID → {"$link": str}, bytes → {"$bytes": unpadded base64}, recursively."""
    return _to_json(value, 0)


def _from_json(value: Any, depth: int) -> Any:
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    if t is dict:
        if "$link" in value:
            link = value["$link"]
            if len(value) != 1 or type(link) is not str:
                raise DagCborError("bad_json", '"$link" must be the only key and a string')
            try:
                return CID.decode(link)
            except CIDError as err:
                raise DagCborError("bad_cid", str(err)) from err
        if "$bytes" in value:
            text = value["$bytes"]
            if len(value) != 1 or type(text) is not str:
                raise DagCborError("bad_json", '"$bytes" must be the only key and a string')
            try:
                return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
            except (binascii.Error, ValueError) as err:
                raise DagCborError("bad_json", f"bad base64 in $bytes: {err}") from err
        if depth >= MAX_DEPTH:
            raise DagCborError("too_deep")
        out: dict[str, Any] = {}
        for k, v in value.items():
            if type(k) is not str:
                raise DagCborError("bad_key", f"map key of type {type(k).__name__}")
            out[k] = _from_json(v, depth + 1)
        return out
    if t is list:
        if depth >= MAX_DEPTH:
            raise DagCborError("too_deep")
        return [_from_json(v, depth + 1) for v in value]
    if t is float and value.is_integer() and INT64_MIN <= value <= INT64_MAX:
        # JSON has one number type; 123.0 is the integer 123 (data-model-valid.json says so).
        return int(value)
    if t is float:
        raise DagCborError("unsupported_type", "floats are not in the atproto data model")
    raise DagCborError("unsupported_type", t.__name__)


def from_json(value: Any) -> Any:
    """The data-model value of atproto JSON: {"$link"} → CID, {"$bytes"} (padded or not) → bytes."""
    return _from_json(value, 0)
