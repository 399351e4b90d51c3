"""A repo export (the CAR ``com.atproto.sync.getRepo`` returns) → the events of its in-scope records (pure).

Spec: atproto.com/specs/sync ("Full Repo Export", the backfill and record-level sync recipes),
/specs/repository (commit objects, MST, CAR files).

:func:`export_repo` checks, cheapest first:
1. the CAR is readable, within the size bound, with exactly one root;
2. the root is a v3 commit of the expected DID, its rev not further in the future than the clock
   skew allows and not older than the rev we hold (a stale mirror), signed by the repo's key;
3. the whole MST under the commit's ``data`` is walked (:func:`ingest.verify.mst.walk`): every node
   present, hashing to its CID and in the canonical shape, so the data root vouches for exactly the
   key → record CID set read here;
4. each in-scope record block hashes to the CID the tree names and decodes as strict DAG-CBOR.

The result is one ``create`` :class:`~schemas.envelope.RecordEvent` per decodable in-scope record, at
the commit's rev, followed by one :class:`~schemas.envelope.SnapshotEvent` listing every in-scope key
of the tree; the projector deletes what the repo held and the snapshot does not list.

Invariants:
- The snapshot lists every in-scope key the signed tree holds, whether or not its record decoded: a
  missing or undecodable record block is skipped and reported as a :class:`~ingest.errors.Drop`, but
  never reads as "the repo deleted it".
- A record block that does not hash to its CID fails the whole export (``record_cid_mismatch``): the
  server sent corrupt or forged bytes, and a retry may get a good copy. Nothing of the repo is sent.
- More in-scope records than ``max_records`` fails the export too: a truncated snapshot would delete
  the records left out.
- Every refusal is an :class:`ExportError` with a closed :class:`ExportFailure`; nothing else escapes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from pydantic import ValidationError

from ingest.errors import Drop, DropReason
from ingest.ipld import dagcbor
from ingest.ipld.car import CarError, read_car
from ingest.ipld.cid import CID
from ingest.verify import mst
from ingest.verify.commit import DEFAULT_CLOCK_SKEW, SignedCommit, VerifiedCommit, VerifyError, read_signed_commit
from ingest.verify.crypto import PublicKey
from schemas.envelope import Action, Event, RecordEvent, SnapshotEvent, SnapshotKey, Source
from schemas.ids import CollectionFilter, is_did, tid_to_datetime

DEFAULT_MAX_BYTES: Final = 256 * 1024 * 1024
DEFAULT_MAX_RECORDS: Final = 100_000
# A full repo has one block per record and MST node; a Bluesky account with years of posts and likes
# runs to a few hundred thousand.
DEFAULT_MAX_BLOCKS: Final = 4_000_000
# The largest block a repo may hold: atproto's record size limit is 1 MB; a commit or node is smaller.
_MAX_BLOCK: Final = 2_000_000


class ExportFailure(StrEnum):
    """Why a repo export was refused as a whole (closed: a metric label and the repo row's reason)."""

    MALFORMED_CAR = "malformed_car"  # not a readable CAR v1, or not exactly one root
    TOO_LARGE = "too_large"  # more bytes or blocks than the bounds allow
    MALFORMED_COMMIT = "malformed_commit"  # the root is absent, does not hash, or is not a commit
    UNSUPPORTED_VERSION = "unsupported_version"  # a commit version other than 3
    WRONG_DID = "wrong_did"  # the commit is another repo's
    FUTURE_REV = "future_rev"  # rev further ahead of our clock than the skew allows
    STALE_EXPORT = "stale_export"  # rev older than the one we hold: a stale copy of the repo
    BAD_SIGNATURE = "bad_signature"  # does not verify against the repo's signing key
    MISSING_NODE = "missing_node"  # an MST node under the data root is not in the CAR
    MALFORMED_TREE = "malformed_tree"  # a node that does not hash, is not a node, or breaks the canonical shape
    RECORD_CID_MISMATCH = "record_cid_mismatch"  # an in-scope record block does not hash to its CID
    TOO_MANY_RECORDS = "too_many_records"  # more in-scope records than the bound


class ExportError(ValueError):
    """The export was refused; ``reason`` says which rule, ``detail`` how."""

    def __init__(self, reason: ExportFailure, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ExportLimits:
    """Bounds on one export: bytes of the CAR, its blocks, and in-scope records."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_blocks: int = DEFAULT_MAX_BLOCKS
    max_records: int = DEFAULT_MAX_RECORDS


@dataclass(frozen=True, slots=True)
class RepoExport:
    """A verified export: the commit it was read at, its events (records, then the snapshot), what was
    skipped, and how many entries the whole tree holds."""

    did: str
    verified: VerifiedCommit
    events: list[Event]
    drops: list[Drop] = field(default_factory=list)
    tree_entries: int = 0
    # Whether the commit signature was checked (False only for an operator's --no-verify import).
    signature_checked: bool = True

    @property
    def snapshot(self) -> SnapshotEvent:
        """The snapshot closing the events."""
        last = self.events[-1]
        assert isinstance(last, SnapshotEvent)
        return last

    @property
    def records(self) -> list[RecordEvent]:
        """The record events (every event but the snapshot)."""
        return [e for e in self.events if isinstance(e, RecordEvent)]


class _Watched(Mapping[CID, bytes]):
    """The CAR's blocks, remembering a lookup that found nothing: the walk's one way to say "missing"."""

    __slots__ = ("_blocks", "missing")

    def __init__(self, blocks: dict[CID, bytes]) -> None:
        self._blocks = blocks
        self.missing: CID | None = None

    def __getitem__(self, cid: CID) -> bytes:
        return self._blocks[cid]

    def get(self, cid: CID, default: object = None) -> bytes | None:  # type: ignore[override]
        block = self._blocks.get(cid)
        if block is None:
            self.missing = cid
        return block

    def __iter__(self) -> Iterator[CID]:
        return iter(self._blocks)

    def __len__(self) -> int:
        return len(self._blocks)


_FROM_VERIFY: Final = {
    "malformed_commit": ExportFailure.MALFORMED_COMMIT,
    "unsupported_version": ExportFailure.UNSUPPORTED_VERSION,
}


def _signed_root(data: bytes, limits: ExportLimits) -> tuple[SignedCommit, CID, dict[CID, bytes]]:
    if len(data) > limits.max_bytes:
        raise ExportError(ExportFailure.TOO_LARGE, f"{len(data)} bytes > {limits.max_bytes}")
    try:
        car = read_car(data, max_blocks=limits.max_blocks, max_block_size=_MAX_BLOCK)
    except CarError as err:
        reason = (
            ExportFailure.TOO_LARGE if err.reason in ("too_large", "too_many_blocks") else ExportFailure.MALFORMED_CAR
        )
        raise ExportError(reason, str(err)) from err
    if len(car.roots) != 1:
        raise ExportError(ExportFailure.MALFORMED_CAR, f"a repo export has one root, not {len(car.roots)}")
    root = car.roots[0]
    try:
        signed = read_signed_commit(car, root)
    except VerifyError as err:
        raise ExportError(_FROM_VERIFY.get(err.reason.value, ExportFailure.MALFORMED_COMMIT), err.detail) from err
    return signed, root, car.blocks


def _check_commit(
    signed: SignedCommit,
    did: str,
    key: PublicKey | None,
    *,
    held_rev: str | None,
    now: datetime,
    max_clock_skew: timedelta,
) -> None:
    if signed.did != did:
        raise ExportError(ExportFailure.WRONG_DID, f"commit of {signed.did[:80]!r}, expected {did[:80]!r}")
    if tid_to_datetime(signed.rev) > now + max_clock_skew:
        raise ExportError(ExportFailure.FUTURE_REV, f"rev {signed.rev} is ahead of {now.isoformat()}")
    # TIDs sort as strings in time order. The same rev is fine: a resync of a repo that did not move.
    if held_rev is not None and signed.rev < held_rev:
        raise ExportError(ExportFailure.STALE_EXPORT, f"rev {signed.rev} is older than the held {held_rev}")
    if key is not None:
        fault = key.check(signed.unsigned, signed.sig)
        if fault is not None:
            raise ExportError(ExportFailure.BAD_SIGNATURE, f"{fault} signature for key {key.did_key()}")


def _walk(data_root: CID, blocks: dict[CID, bytes]) -> Iterator[tuple[str, CID]]:
    watched = _Watched(blocks)
    try:
        yield from mst.walk(data_root, watched)
    except mst.MstError as err:
        if watched.missing is not None:
            raise ExportError(ExportFailure.MISSING_NODE, f"MST node {watched.missing} is not in the CAR") from err
        raise ExportError(ExportFailure.MALFORMED_TREE, str(err)) from err


def export_repo(
    data: bytes,
    did: str,
    key: PublicKey | None,
    *,
    collections: CollectionFilter,
    source: Source,
    upstream: str,
    now: datetime,
    held_rev: str | None = None,
    limits: ExportLimits = ExportLimits(),
    max_clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
) -> RepoExport:
    """The events of the repo export ``data`` of ``did`` (see the module docstring); ExportError if refused.

    ``key`` is the repo's signing key from its DID document; None skips the signature check (an
    operator's offline import of a file they trust) and nothing else. ``held_rev`` is the rev we hold
    for the repo, if any; ``now`` an aware datetime, also the events' ``time``.
    """
    if not is_did(did):
        raise ExportError(ExportFailure.WRONG_DID, f"{did[:80]!r} is not a DID")
    signed, commit_cid, blocks = _signed_root(data, limits)
    _check_commit(signed, did, key, held_rev=held_rev, now=now, max_clock_skew=max_clock_skew)
    rev, commit = signed.rev, str(commit_cid)
    matches = collections.matches
    events: list[Event] = []
    drops: list[Drop] = []
    keys: list[SnapshotKey] = []
    entries = 0
    for path, cid in _walk(signed.data, blocks):
        entries += 1
        collection, _, rkey = path.partition("/")
        if not matches(collection):
            continue
        if len(keys) >= limits.max_records:
            raise ExportError(ExportFailure.TOO_MANY_RECORDS, f"more than {limits.max_records} in-scope records")
        cid_text = str(cid)
        try:
            keys.append(SnapshotKey(collection=collection, rkey=rkey, cid=cid_text))
        except ValidationError:
            drops.append(Drop(DropReason.INVALID_FIELD, "MST key is not <collection>/<record key>", did, path[:600]))
            continue
        block = blocks.get(cid)
        if block is None:
            drops.append(Drop(DropReason.RECORD_MISSING, f"block {cid_text} not in the export", did, path))
            continue
        if not cid.matches(block):
            raise ExportError(ExportFailure.RECORD_CID_MISMATCH, f"{path}: block does not hash to {cid_text}")
        try:
            value = dagcbor.to_json(dagcbor.decode(block))
        except dagcbor.DagCborError as err:
            drops.append(Drop(DropReason.RECORD_UNDECODABLE, err.reason, did, path))
            continue
        if type(value) is not dict:
            drops.append(Drop(DropReason.RECORD_UNDECODABLE, "record is not a map", did, path))
            continue
        events.append(
            RecordEvent(
                did=did,
                upstream=upstream,
                time=now,
                source=source,
                rev=rev,
                commit=commit,
                collection=collection,
                rkey=rkey,
                action=Action.CREATE,
                cid=cid_text,
                record=value,
            )
        )
    events.append(
        SnapshotEvent(
            did=did,
            upstream=upstream,
            time=now,
            source=source,
            rev=rev,
            commit=commit,
            collections=tuple(str(collections).split(",")),
            records=tuple(keys),
        )
    )
    return RepoExport(did, VerifiedCommit(rev, signed.data, commit_cid), events, drops, entries, key is not None)
