"""Unsigned LEB128 varints as multiformats uses them (github.com/multiformats/unsigned-varint).

Owns the varint wire form shared by binary CIDs (atproto.com/specs/data-model#link-and-cid-formats) and
CAR v1 section lengths (ipld.io/specs/transport/car/carv1). Invariants: at most 9 bytes (63 bits), and
only the minimal encoding is accepted, so every value has exactly one byte form.
"""

from __future__ import annotations

MAX_BYTES = 9


class VarintError(ValueError):
    """Not a minimal varint of at most 9 bytes; ``reason``: truncated, non_canonical, out_of_range."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def read_varint(data: bytes, pos: int = 0) -> tuple[int, int]:
    """The varint at ``pos``: (value, position after it)."""
    end = len(data)
    if pos < end:
        first = data[pos]
        if first < 0x80:
            # Nearly every varint in a CID or a small CAR section is one byte.
            return first, pos + 1
    value = 0
    shift = 0
    for i in range(pos, min(end, pos + MAX_BYTES)):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and shift:
                raise VarintError("non_canonical", "varint has a redundant trailing zero byte")
            return value, i + 1
        shift += 7
    if end - pos >= MAX_BYTES:
        raise VarintError("non_canonical", "varint longer than 9 bytes")
    raise VarintError("truncated", "varint runs past the end of the input")


def encode_varint(value: int) -> bytes:
    """The minimal varint bytes of ``value`` (0 <= value < 2**63)."""
    if not 0 <= value < 1 << 63:
        raise VarintError("out_of_range", f"{value} is outside the unsigned 63-bit range")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
