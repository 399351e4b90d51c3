"""One frame's bytes → what it means for the log (pure): decode, type, filter, normalize.

This is the whole per-frame hot path, shared by live ingest, capture replay, ``--to jsonl`` and the
benchmark. It never raises for untrusted input: a malformed frame is an outcome with a drop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from ingest.errors import Drop, DropReason
from ingest.frames import ErrorFrame, FrameError, MessageFrame, UnknownFrame, decode_frame
from ingest.messages import Commit, Info, MessageError, Sync, commit_in_scope, parse_message
from ingest.normalize import normalize
from schemas.envelope import Event
from schemas.ids import CollectionFilter


class FrameKind(StrEnum):
    """Closed set of frame outcomes (a metric label)."""

    COMMIT = "commit"
    SYNC = "sync"
    IDENTITY = "identity"
    ACCOUNT = "account"
    INFO = "info"
    ERROR = "error"
    UNKNOWN = "unknown"
    MALFORMED = "malformed"


_KIND_OF_T = {
    "#commit": FrameKind.COMMIT,
    "#sync": FrameKind.SYNC,
    "#identity": FrameKind.IDENTITY,
    "#account": FrameKind.ACCOUNT,
    "#info": FrameKind.INFO,
}


@dataclass(slots=True)
class FrameOutcome:
    """What one frame contributed: its seq (if any), events, drops, and control messages."""

    kind: FrameKind
    seq: int | None = None
    time: str | None = None
    events: list[Event] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    error: ErrorFrame | None = None
    info: Info | None = None
    # The commit's rev, for cross-upstream dedupe (commits only).
    rev: str | None = None
    did: str | None = None
    # The typed #commit or #sync, for verification: set for every one of a repo in scope (and for
    # every commit with ops in scope), None for the commits passed over unparsed.
    message: Commit | Sync | None = None


def process_frame(
    data: bytes,
    *,
    upstream: str,
    collections: CollectionFilter,
    tracked: Callable[[str], bool] | None = None,
) -> FrameOutcome:
    """Decode and normalize one websocket frame. ``tracked`` names the repos whose every commit is
    typed even without ops in scope (verification follows their whole chain of commits)."""
    try:
        frame = decode_frame(data)
    except FrameError as err:
        return FrameOutcome(FrameKind.MALFORMED, drops=[Drop(DropReason.MALFORMED_FRAME, str(err))])
    if isinstance(frame, UnknownFrame):
        return FrameOutcome(FrameKind.UNKNOWN)
    if isinstance(frame, ErrorFrame):
        return FrameOutcome(FrameKind.ERROR, error=frame)
    assert isinstance(frame, MessageFrame)
    kind = _KIND_OF_T[frame.t]
    body = frame.body
    seq = body.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        seq = None
    try:
        if (
            kind is FrameKind.COMMIT
            and not commit_in_scope(body, collections.matches)
            and not (tracked is not None and isinstance(repo := body.get("repo"), str) and tracked(repo))
        ):
            # The common case: nothing in scope. Only the seq (for the cursor) and time (for lag)
            # matter; the commit is not typed at all.
            time = body.get("time")
            return FrameOutcome(kind, seq=seq, time=time if isinstance(time, str) else None)
        message = parse_message(frame)
    except MessageError as err:
        return FrameOutcome(
            FrameKind.MALFORMED, seq=seq, drops=[Drop(DropReason.MALFORMED_MESSAGE, f"{frame.t}: {err}")]
        )
    if isinstance(message, Info):
        return FrameOutcome(kind, info=message)
    result = normalize(message, upstream=upstream, collections=collections)
    outcome = FrameOutcome(kind, seq=message.seq, time=message.time, events=result.events, drops=result.drops)
    if isinstance(message, Commit):
        outcome.rev = message.rev
        outcome.did = message.repo
    if isinstance(message, Commit | Sync):
        outcome.message = message
    return outcome
