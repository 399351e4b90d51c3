"""A decoded message → the envelopes it puts on the log (pure).

The collection filter runs first, on the op paths, so the ≥99% of commits that touch nothing in scope
cost no CAR read and no record decode. For each op in scope the record block is taken from the
commit's CAR slice, checked against the op's CID, decoded as strict DAG-CBOR and turned into atproto
JSON (links as ``{"$link"}``, bytes as ``{"$bytes"}``, blobs as JSON blob refs). A bad op becomes a
:class:`~ingest.errors.Drop`; the other ops of the same commit still become events.

Spec: atproto.com/specs/sync (commit ops, Sync 1.1 ``prev``), /specs/data-model (JSON form).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError

from ingest.errors import Drop, DropReason
from ingest.ipld import dagcbor
from ingest.ipld.car import CarError, CarFile, read_car
from ingest.ipld.cid import CID, CIDError
from ingest.messages import Account, Commit, Identity, Info, Message, RepoOp, Sync
from schemas.envelope import AccountEvent, Action, Event, IdentityEvent, RecordEvent, SyncEvent
from schemas.ids import CollectionFilter

_ACTIONS = {a.value: a for a in Action}


@dataclass(slots=True)
class Normalized:
    """The events of one message, and what was dropped on the way."""

    events: list[Event] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)


def _cid_str(raw: bytes | None) -> str | None:
    return None if raw is None else str(CID.from_bytes(raw))


def _record_event(commit: Commit, op: RepoOp, car: CarFile, upstream: str) -> Event | Drop:
    collection, _, rkey = op.path.partition("/")
    action = _ACTIONS.get(op.action)
    if action is None:
        return Drop(DropReason.MALFORMED_MESSAGE, f"unknown action {op.action!r}", commit.repo, op.path)
    record = None
    cid = None
    try:
        if action is not Action.DELETE:
            if op.cid is None:
                return Drop(DropReason.MALFORMED_MESSAGE, "create/update without cid", commit.repo, op.path)
            cid_obj = CID.from_bytes(op.cid)
            block = car.get_verified(cid_obj)
            if block is None:
                return Drop(DropReason.RECORD_MISSING, f"block {cid_obj} not in CAR", commit.repo, op.path)
            value = dagcbor.to_json(dagcbor.decode(block))
            if not isinstance(value, dict):
                return Drop(DropReason.RECORD_UNDECODABLE, "record is not a map", commit.repo, op.path)
            record = value
            cid = str(cid_obj)
        return RecordEvent(
            did=commit.repo,
            upstream=upstream,
            seq=commit.seq,
            time=commit.time,
            rev=commit.rev,
            since=commit.since,
            commit=_cid_str(commit.commit),
            collection=collection,
            rkey=rkey,
            action=action,
            cid=cid,
            prev=_cid_str(op.prev),
            record=record,
        )
    except CarError as err:
        return Drop(DropReason.RECORD_CID_MISMATCH, str(err), commit.repo, op.path)
    except dagcbor.DagCborError as err:
        return Drop(DropReason.RECORD_UNDECODABLE, err.reason, commit.repo, op.path)
    except CIDError as err:
        return Drop(DropReason.MALFORMED_MESSAGE, f"bad cid: {err}", commit.repo, op.path)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return Drop(DropReason.INVALID_FIELD, f"{where}: {first['msg']}", commit.repo, op.path)


def _commit(commit: Commit, upstream: str, collections: CollectionFilter) -> Normalized:
    matches = collections.matches
    in_scope = [op for op in commit.ops if matches(op.path.partition("/")[0])]
    out = Normalized()
    if not in_scope:
        return out
    try:
        car = read_car(commit.blocks)
    except CarError as err:
        out.drops.append(Drop(DropReason.INVALID_CAR, str(err), commit.repo))
        return out
    for op in in_scope:
        result = _record_event(commit, op, car, upstream)
        if isinstance(result, Drop):
            out.drops.append(result)
        else:
            out.events.append(result)
    return out


def _sync(sync: Sync, upstream: str) -> Event | Drop:
    try:
        car = read_car(sync.blocks)
    except CarError as err:
        return Drop(DropReason.INVALID_CAR, str(err), sync.did)
    if len(car.roots) != 1:
        return Drop(DropReason.INVALID_CAR, "a #sync CAR has exactly one root", sync.did)
    return SyncEvent(
        did=sync.did,
        upstream=upstream,
        seq=sync.seq,
        time=sync.time,
        rev=sync.rev,
        commit=str(car.roots[0]),
    )


def normalize(message: Message, *, upstream: str, collections: CollectionFilter) -> Normalized:
    """The envelopes ``message`` contributes, plus the drops, for an upstream and a filter."""
    if isinstance(message, Commit):
        return _commit(message, upstream, collections)
    if isinstance(message, Info):
        return Normalized()
    out = Normalized()
    try:
        event: Event | Drop
        if isinstance(message, Identity):
            event = IdentityEvent(
                did=message.did,
                upstream=upstream,
                seq=message.seq,
                time=message.time,
                handle=message.handle,
            )
        elif isinstance(message, Account):
            event = AccountEvent(
                did=message.did,
                upstream=upstream,
                seq=message.seq,
                time=message.time,
                active=message.active,
                status=message.status,
            )
        else:
            event = _sync(message, upstream)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        did = getattr(message, "did", None)
        event = Drop(DropReason.INVALID_FIELD, f"{where}: {first['msg']}", did)
    if isinstance(event, Drop):
        out.drops.append(event)
    else:
        out.events.append(event)
    return out
