"""decode_frame on bytes that are not a frame: always a FrameError, never another exception."""

from __future__ import annotations

import pytest

from ingest.errors import DropReason
from ingest.frames import FrameError, decode_frame
from ingest.ipld import dagcbor
from ingest.pipeline import FrameKind, process_frame
from schemas.ids import CollectionFilter

HEADER = dagcbor.encode({"op": 1, "t": "#commit"})


@pytest.mark.parametrize(
    "data",
    [
        HEADER + b"\x81" * 10_000 + b"\xf6",  # a body nested 10,000 lists deep
        b"\xa1\x61a" * 5_000 + b"\xf6" + dagcbor.encode({}),  # a header nested 5,000 maps deep
        HEADER + b"\xa1\x62op" + b"\x81" * 3_000 + b"\x01",  # deep inside one field
    ],
)
def test_deeply_nested_frame_is_a_frame_error_and_a_malformed_drop(data: bytes) -> None:
    # libipld raises RecursionError past its depth limit; it used to escape decode_frame and end the
    # upstream's worker (and with it the ingester).
    with pytest.raises(FrameError):
        decode_frame(data)
    out = process_frame(data, upstream="test", collections=CollectionFilter.parse("*"))
    assert out.kind is FrameKind.MALFORMED
    assert [d.reason for d in out.drops] == [DropReason.MALFORMED_FRAME]
