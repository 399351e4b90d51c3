"""The change log of a batch (pure): which ``changes`` rows the applied events produce, in log order.

The ``changes`` table (schemas/sql/read/0003_api_reads.sql) is the live event stream and the
activity feed: one row per change the projector applies to the read models. The rules:

- Only applied events produce rows; a stale event (rev not newer than the ledger) produces none,
  and re-delivered offsets never reach the fold, so the log is exactly once in effect.
- Create or update is what the ledger said *before* the event: a record that was not live (never
  seen, deleted, invalid) is created, a live one is updated. A re-create after a delete is created.
- A delete of a record that was not live produces nothing. A live record whose new version fails
  validation leaves the read models, so it is deleted as far as the log is concerned.
- A list produces ``list.item_added`` for each track newly present in its items compared with what
  the list showed before (nothing before a create), after the list's own row.
- A like is never updated as such: one that moves to another track is a delete plus a create.
- An account event that changes the repo's (active, status) produces ``account.status``; the same
  status again (a duplicate, or the same event from a second upstream: #account has no rev) produces
  nothing. A purge (status ``deleted``) produces only that row, not one per record it removes.

What a delete or an update needs of the old version (a like's subject, a list's items) comes from
:class:`Shown`, and an account's status from ``accounts``: loaded by the store for the batch's
records and repos as they were before it, then carried through the batch here, so the rows do not
depend on where batch boundaries fall.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from projector.fold.ledger import Decision, LedgerRow, RecordState
from projector.fold.rows import COMMENT, LIKE, LIST, PROFILE, TRACK, CommentRow, ListRow, SubjectRow
from schemas.envelope import AccountEvent, RecordEvent


class ChangeKind(StrEnum):
    """The kinds of ``changes`` rows."""

    TRACK_CREATED = "track.created"
    TRACK_UPDATED = "track.updated"
    TRACK_DELETED = "track.deleted"
    LIKE_CREATED = "like.created"
    LIKE_DELETED = "like.deleted"
    COMMENT_CREATED = "comment.created"
    COMMENT_UPDATED = "comment.updated"
    COMMENT_DELETED = "comment.deleted"
    LIST_CREATED = "list.created"
    LIST_UPDATED = "list.updated"
    LIST_DELETED = "list.deleted"
    LIST_ITEM_ADDED = "list.item_added"
    PROFILE_UPDATED = "profile.updated"
    ACCOUNT_STATUS = "account.status"


@dataclass(frozen=True, slots=True)
class Change:
    """One ``changes`` row (seq and time are the database's)."""

    kind: ChangeKind
    did: str
    uri: str | None = None
    subject_uri: str | None = None
    detail: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Shown:
    """What the read models show of a live record, as far as its changes need: the subject of a like
    or comment; the type, name and item subjects (in order) of a list."""

    subject_uri: str | None = None
    list_type: str | None = None
    name: str | None = None
    items: tuple[str, ...] = ()


def shown(row: Any) -> Shown:
    """The :class:`Shown` of a read-model row value (any collection's)."""
    if isinstance(row, SubjectRow | CommentRow):
        return Shown(subject_uri=row.subject_uri)
    if isinstance(row, ListRow):
        return Shown(list_type=row.list_type, name=row.name, items=tuple(uri for uri, _ in row.items))
    return Shown()


def items_added(before: Sequence[str], after: Sequence[str]) -> list[str]:
    """The subjects of ``after`` absent from ``before``, once each, in ``after``'s order."""
    seen = set(before)
    added = []
    for uri in after:
        if uri not in seen:
            seen.add(uri)
            added.append(uri)
    return added


_KINDS = {
    TRACK: (ChangeKind.TRACK_CREATED, ChangeKind.TRACK_UPDATED, ChangeKind.TRACK_DELETED),
    COMMENT: (ChangeKind.COMMENT_CREATED, ChangeKind.COMMENT_UPDATED, ChangeKind.COMMENT_DELETED),
    LIST: (ChangeKind.LIST_CREATED, ChangeKind.LIST_UPDATED, ChangeKind.LIST_DELETED),
}


def _list_detail(view: Shown) -> dict[str, Any]:
    return {"listType": view.list_type, "name": view.name}


def record_changes(event: RecordEvent, decision: Decision, before: Shown | None, after: Shown | None) -> list[Change]:
    """The rows of one applied record event. ``before`` is what the record showed (None: it was not
    live); ``after`` what it shows now (None: not live any more, i.e. a delete or an invalid version)."""
    assert decision is not Decision.STALE, "stale events change nothing"
    did, uri, collection = event.did, event.uri, event.collection
    if before is None and after is None:
        return []  # a delete (or an invalid version) of a record that was not live
    if collection == PROFILE:
        return [Change(ChangeKind.PROFILE_UPDATED, did)]
    if collection == LIKE:
        out = []
        if before is not None and (after is None or after.subject_uri != before.subject_uri):
            out.append(Change(ChangeKind.LIKE_DELETED, did, uri, before.subject_uri))
        if after is not None and (before is None or after.subject_uri != before.subject_uri):
            out.append(Change(ChangeKind.LIKE_CREATED, did, uri, after.subject_uri))
        return out
    created, updated, deleted = _KINDS[collection]
    if after is None:
        assert before is not None
        kind = deleted
    else:
        kind = created if before is None else updated
    view = after or before
    assert view is not None
    if collection == TRACK:
        return [Change(kind, did, uri)]
    if collection == COMMENT:
        return [Change(kind, did, uri, view.subject_uri)]
    detail = _list_detail(view)
    out = [Change(kind, did, uri, detail=detail)]
    if after is not None:
        added = items_added(before.items if before is not None else (), after.items)
        out += [Change(ChangeKind.LIST_ITEM_ADDED, did, uri, subject, detail) for subject in added]
    return out


# A repo the index has no status for (the artists row's defaults).
_ACTIVE: tuple[bool, str | None] = (True, None)


@dataclass
class ChangeLog:
    """A batch's changes in log order, carrying what each record shows from one event to the next.

    ``views`` starts as what the read models show of the batch's records that were live before it,
    and ``accounts`` as the (active, status) of its repos (the store loads both); records not in
    ``views`` show nothing beyond being live, repos not in ``accounts`` are active with no status.
    """

    views: dict[str, Shown] = field(default_factory=dict)
    accounts: dict[str, tuple[bool, str | None]] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)

    def record(self, event: RecordEvent, ledger_before: LedgerRow | None, decision: Decision, row: Any) -> None:
        """Log an applied record event; ``ledger_before`` is the ledger row it was decided against."""
        live = ledger_before is not None and ledger_before.state is RecordState.LIVE
        before = self.views.get(event.uri, Shown()) if live else None
        after = shown(row) if decision is Decision.UPSERT else None
        self.changes += record_changes(event, decision, before, after)
        if after is None:
            self.views.pop(event.uri, None)
        else:
            self.views[event.uri] = after

    def account(self, event: AccountEvent) -> None:
        """Log an account status event if it changes the repo's status (a purge forgets what the repo's
        records showed)."""
        status = (event.active, event.status)
        if self.accounts.get(event.did, _ACTIVE) != status:
            self.accounts[event.did] = status
            detail = {"active": event.active, "status": event.status}
            self.changes.append(Change(ChangeKind.ACCOUNT_STATUS, event.did, detail=detail))
        if event.status == "deleted":
            prefix = f"at://{event.did}/"
            for uri in [u for u in self.views if u.startswith(prefix)]:
                del self.views[uri]
