"""Capture files round-trip byte for byte, plain and zstd; truncation is an error after the good frames."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingest.capture import read_frames, write_frames
from ingest.errors import CaptureError


@pytest.mark.parametrize("name", ["cap.bin", "cap.bin.zst"])
def test_round_trip(tmp_path: Path, name: str) -> None:
    frames = [os.urandom(n) for n in (0, 1, 100, 70_000)]
    path = tmp_path / name
    assert write_frames(path, frames) == 4
    assert list(read_frames(path)) == frames


def test_truncated_file_yields_complete_frames_then_fails(tmp_path: Path) -> None:
    path = tmp_path / "cap.bin"
    write_frames(path, [b"abc", b"defgh"])
    path.write_bytes(path.read_bytes()[:-2])
    reader = read_frames(path)
    assert next(reader) == b"abc"
    with pytest.raises(CaptureError, match="truncated"):
        next(reader)


def test_absurd_length_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cap.bin"
    path.write_bytes(b"\xff\xff\xff\xff" + b"x" * 10)
    with pytest.raises(CaptureError, match="exceeds"):
        list(read_frames(path))
