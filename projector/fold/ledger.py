"""The ordering rule every collection shares, decided on the ``records`` ledger.

Per record (did, collection, rkey) the ledger keeps the last applied rev and whether the record is
live, deleted (a tombstone) or invalid. An event changes anything only if its rev is newer than the
ledger's: a re-delivered event is a no-op, and a create older than a delete cannot resurrect the
record (plyr.fm once had a re-emitted history walk a track back an hour). A re-create with a newer
rev after a delete is legitimate in atproto and applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from schemas.envelope import Action, RecordEvent


class RecordState(StrEnum):
    """Ledger states."""

    LIVE = "live"
    DELETED = "deleted"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """What the ledger holds for one record."""

    rev: str
    state: RecordState
    cid: str | None


class Decision(StrEnum):
    """What to do with a record event."""

    UPSERT = "upsert"  # write the read-model row from the record
    DELETE = "delete"  # remove the read-model row, leave a tombstone
    INVALID = "invalid"  # remove any older row, dead-letter the record
    STALE = "stale"  # not newer than what is applied: change nothing


def decide(event: RecordEvent, current: LedgerRow | None, *, valid: bool) -> Decision:
    """The decision for ``event`` against the ledger row (None: never seen)."""
    if current is not None and event.rev <= current.rev:
        return Decision.STALE
    if event.action is Action.DELETE:
        return Decision.DELETE
    return Decision.UPSERT if valid else Decision.INVALID


def next_row(event: RecordEvent, decision: Decision) -> LedgerRow:
    """The ledger row after applying a (non-stale) decision."""
    state = {
        Decision.UPSERT: RecordState.LIVE,
        Decision.DELETE: RecordState.DELETED,
        Decision.INVALID: RecordState.INVALID,
    }[decision]
    return LedgerRow(event.rev, state, event.cid if state is RecordState.LIVE else None)
