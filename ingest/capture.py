"""Capture files: raw websocket frames, byte for byte, for replay, tests and benchmarks.

Format: a sequence of records, each a u32 little-endian length followed by that many bytes of one
websocket frame. A name ending in ``.zst`` holds the same stream zstd-compressed. A truncated last
record raises :class:`~ingest.errors.CaptureError` after every complete frame before it was read.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

import zstandard

from ingest.errors import CaptureError

_LEN = struct.Struct("<I")
# A frame larger than this is not a relay frame; refusing it keeps a corrupt length from
# allocating gigabytes.
MAX_FRAME_BYTES = 64 * 1024 * 1024


def _open_read(path: Path) -> BinaryIO:
    raw = path.open("rb")
    if path.suffix == ".zst":
        reader: BinaryIO = zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
        return reader
    return raw


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    chunks = []
    remaining = n
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frames(path: Path) -> Iterator[bytes]:
    """Yield every frame of a capture file in order."""
    with _open_read(path) as stream:
        while True:
            head = _read_exact(stream, 4)
            if not head:
                return
            if len(head) < 4:
                raise CaptureError(f"{path}: truncated length prefix")
            (size,) = _LEN.unpack(head)
            if size > MAX_FRAME_BYTES:
                raise CaptureError(f"{path}: frame of {size} bytes exceeds {MAX_FRAME_BYTES}")
            frame = _read_exact(stream, size)
            if len(frame) < size:
                raise CaptureError(f"{path}: truncated frame ({len(frame)} of {size} bytes)")
            yield frame


class CaptureWriter:
    """Appends frames to a capture file (zstd when the name ends in ``.zst``)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._raw: BinaryIO | None = None
        self._out: BinaryIO | None = None
        self.frames = 0

    def __enter__(self) -> Self:
        self._raw = self._path.open("wb")
        if self._path.suffix == ".zst":
            self._out = zstandard.ZstdCompressor(level=3).stream_writer(self._raw, closefd=False)
        else:
            self._out = self._raw
        return self

    def write(self, frame: bytes) -> None:
        """Append one frame."""
        assert self._out is not None, "CaptureWriter used outside its context"
        self._out.write(_LEN.pack(len(frame)))
        self._out.write(frame)
        self.frames += 1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._out is not None and self._out is not self._raw:
            self._out.close()
        if self._raw is not None:
            self._raw.close()
        self._out = self._raw = None


def write_frames(path: Path, frames: Iterator[bytes] | list[bytes]) -> int:
    """Write all ``frames`` to a new capture file; return how many."""
    with CaptureWriter(path) as writer:
        for frame in frames:
            writer.write(frame)
        return writer.frames
