"""The pure stage of a batch: decode each message, validate its record against its lexicon, build its
read-model row. Needs no database state, so it runs while the previous batch commits
(:mod:`projector.pipeline`), and is tested without one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from projector.fold import rows
from projector.fold.rows import COMMENT, LIKE, LIST, PROFILE, TRACK
from schemas.codec import EnvelopeError, decode
from schemas.envelope import Event, RecordEvent

# (collection, record) → None when valid, else the reason.
Validator = Callable[[str, dict[str, Any]], str | None]

_INDEXED = frozenset({TRACK, LIKE, LIST, COMMENT, PROFILE})


@dataclass(frozen=True, slots=True)
class LogMessage:
    """One message of the log as the consumer got it."""

    partition: int
    offset: int
    value: bytes


@dataclass(frozen=True, slots=True)
class PreparedItem:
    """One message after the pure stage: its event (None if undecodable), why it cannot be applied
    (None if it can), and its read-model row when it is a valid create/update."""

    msg: LogMessage
    event: Event | None
    reason: str | None = None
    row: Any = None


@dataclass(frozen=True, slots=True)
class Prepared:
    """A batch after the pure stage, ready for :meth:`Store.commit`."""

    items: list[PreparedItem]
    newest: datetime | None


# JSON's escape of U+0000, which Postgres can hold neither in text nor in jsonb: a batch that tried
# would fail whole, again on every retry. orjson writes it this way, so the envelope's bytes tell.
_NUL = b"\\u0000"
NUL_REASON = "holds a NUL character (U+0000), which Postgres text cannot store"


def _holds_nul(value: object) -> bool:
    # Only reached when the bytes hold the escape, which a string's literal "\\u0000" also would.
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


def _prepare_one(msg: LogMessage, validate: Validator) -> PreparedItem:
    try:
        event = decode(msg.value)
    except EnvelopeError as err:
        return PreparedItem(msg, None, f"envelope: {err}")
    if _NUL in msg.value and _holds_nul(event.model_dump()):
        if isinstance(event, RecordEvent) and event.record is not None:
            # Dead-lettered as an invalid version of its record, so the ledger still orders it.
            return PreparedItem(msg, event, f"record {NUL_REASON}")
        return PreparedItem(msg, None, f"envelope {NUL_REASON}")
    if not isinstance(event, RecordEvent):
        return PreparedItem(msg, event)
    if event.collection not in _INDEXED:
        return PreparedItem(msg, event, f"collection {event.collection} is not indexed")
    if event.record is None:
        return PreparedItem(msg, event)
    if event.collection == PROFILE and event.rkey != "self":
        return PreparedItem(msg, event, "profile record key must be 'self'")
    reason = validate(event.collection, event.record)
    if reason is not None:
        return PreparedItem(msg, event, reason)
    try:
        return PreparedItem(msg, event, None, _row_for(event.collection, event))
    except (KeyError, TypeError, ValueError) as err:
        # The lexicon passed it but a field still cannot be read (e.g. a datetime Python cannot
        # represent): dead-letter rather than crash.
        return PreparedItem(msg, event, f"unprojectable: {err}")


def prepare(messages: Sequence[LogMessage], validate: Validator) -> Prepared:
    """The pure stage of a batch: decode, validate, build rows. Needs no database state."""
    items = [_prepare_one(m, validate) for m in messages]
    times = [i.event.time for i in items if i.event is not None]
    return Prepared(items, max(times) if times else None)


def _row_for(collection: str, event: RecordEvent) -> Any:
    record = event.record
    assert record is not None and event.cid is not None
    if collection == TRACK:
        return rows.track(record, event.cid)
    if collection == LIKE:
        return rows.like(record)
    if collection == COMMENT:
        return rows.comment(record)
    if collection == LIST:
        return rows.list_(record, event.cid)
    return rows.profile(record)
