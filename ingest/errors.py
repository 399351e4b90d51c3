"""The ingest error tree and the closed set of reasons a frame or an op is dropped.

Untrusted input (frames, records) never raises out of the pure core: it becomes a :class:`Drop` with a
:class:`DropReason`, counted and logged. Exceptions here are for the I/O shell, and say through
``retriable`` whether the caller should reconnect/retry or stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar


class DropReason(StrEnum):
    """Why a frame, or one op of a commit, did not become an event."""

    MALFORMED_FRAME = "malformed_frame"  # not a DAG-CBOR header + body
    MALFORMED_MESSAGE = "malformed_message"  # a known kind with fields of the wrong shape
    INVALID_CAR = "invalid_car"  # the commit's blocks are not a readable CAR
    RECORD_MISSING = "record_missing"  # create/update whose record block is not in the CAR
    RECORD_CID_MISMATCH = "record_cid_mismatch"  # the block does not hash to the op's CID
    RECORD_UNDECODABLE = "record_undecodable"  # the block is not strict DAG-CBOR
    INVALID_FIELD = "invalid_field"  # DID, path, rev, handle or time fails atproto syntax
    ERROR_FRAME = "error_frame"  # an op -1 frame other than the ones with their own handling


@dataclass(frozen=True, slots=True)
class Drop:
    """One thing that did not become an event, with enough to find it again."""

    reason: DropReason
    detail: str
    did: str | None = None
    path: str | None = None


class IngestError(Exception):
    """Root of the errors the ingest I/O shell raises."""

    retriable: ClassVar[bool] = False


class UpstreamError(IngestError):
    """The upstream connection failed or stalled; reconnect with backoff."""

    retriable = True


class FutureCursorError(IngestError):
    """The upstream says our cursor is in its future: another host's cursor, or its sequence was
    reset. Resuming would silently skip or mix events, so the upstream stops until an operator
    resumes it (``plyr-index ingest --resume-upstream URL``)."""

    retriable = False


class UpstreamHaltedError(IngestError):
    """The upstream was halted earlier (see FutureCursorError) and has not been resumed."""

    retriable = False


class BrokerError(IngestError):
    """The broker did not acknowledge an event; the pipeline restarts from the durable cursor."""

    retriable = True


class CaptureError(IngestError):
    """A capture file is truncated or corrupt."""

    retriable = False
