"""A repo snapshot (backfill or resync) → delete events for the records it no longer holds (pure).

A :class:`~schemas.envelope.SnapshotEvent` lists every in-scope record a repo held at one rev. A
record we hold that it does not list vanished while we were not listening (a missed delete, a repo
rewritten by its PDS). Each becomes an ordinary delete at the snapshot's rev, folded like any other
event, so the ledger's rev rule decides: a record written after the snapshot (a newer live commit)
is stale to it and stays.
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas.envelope import Action, RecordEvent, SnapshotEvent
from schemas.ids import CollectionFilter


def vanished(snapshot: SnapshotEvent, held: Iterable[tuple[str, str]]) -> list[RecordEvent]:
    """Deletes for the ``held`` (collection, rkey) keys of the repo in the snapshot's collections that
    it does not list, in key order."""
    covered = CollectionFilter.parse(",".join(snapshot.collections)).matches if snapshot.collections else None
    listed = {(r.collection, r.rkey) for r in snapshot.records}
    return [
        RecordEvent(
            did=snapshot.did,
            upstream=snapshot.upstream,
            time=snapshot.time,
            source=snapshot.source,
            rev=snapshot.rev,
            commit=snapshot.commit,
            collection=collection,
            rkey=rkey,
            action=Action.DELETE,
        )
        for collection, rkey in sorted(set(held))
        if (collection, rkey) not in listed and covered is not None and covered(collection)
    ]
