"""The event envelope: the one typed, versioned value that crosses every boundary.

Ingest produces one envelope per record operation of an in-scope commit and one per ``#identity``,
``#account`` and ``#sync`` message; backfill and resync produce the same record shapes with another
``source``, followed by one ``snapshot`` of the repo's complete record set. The projector folds
them. Every envelope carries ``schema_version``; older versions are upcast on read by
:mod:`schemas.codec`, and the log itself is never rewritten.

Invariants:
- Kafka key = the repo DID (:func:`schemas.topics.key_for`), so one repo's events stay in order.
- A ``record`` event with action create/update carries ``cid`` and ``record`` (atproto JSON form, as
  received, not yet validated against its lexicon); a delete carries neither.
- ``rev`` is the commit's TID; per repo, a higher rev is newer (TIDs sort lexicographically).
- An ``identity`` event's ``handle`` is a claim; it may be shown only when ``handle_valid`` (v2).

Versions: v2 added ``handle_valid``, ``pds`` and ``signing_key`` to ``identity`` events (ingest
resolves the DID document and checks the handle both ways); v1 identity events upcast with
``handle_valid`` false, since their handle was copied from the frame unchecked.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.ids import CidStr, Did, Handle, Nsid, RecordKey, Tid

SCHEMA_VERSION: Literal[2] = 2


class Action(StrEnum):
    """What a record operation did."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class Source(StrEnum):
    """Which path put the event into the log."""

    FIREHOSE = "firehose"
    BACKFILL = "backfill"
    RESYNC = "resync"
    OPERATOR = "operator"


class ModerationAction(StrEnum):
    """An operator's local decision."""

    TAKEDOWN = "takedown"
    RESTORE = "restore"


class AccountStatus(StrEnum):
    """Upstream account states (atproto.com/specs/account); absent means active."""

    TAKENDOWN = "takendown"
    SUSPENDED = "suspended"
    DEACTIVATED = "deactivated"
    DELETED = "deleted"
    DESYNCHRONIZED = "desynchronized"
    THROTTLED = "throttled"


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[2] = SCHEMA_VERSION
    did: Did
    # Where the event came from: the upstream host for firehose events, "file:<name>" for a capture,
    # the PDS host for backfill/resync.
    upstream: str
    # The upstream's sequence number; None where there is none (backfill, resync).
    seq: int | None = None
    # The upstream's event time (frame ``time``), or when backfill read the repo.
    time: datetime
    source: Source = Source.FIREHOSE


class RecordEvent(_Event):
    """One create/update/delete of one record, from a commit (or a backfill/resync snapshot)."""

    kind: Literal["record"] = "record"
    rev: Tid
    since: Tid | None = None
    commit: CidStr | None = None
    collection: Nsid
    rkey: RecordKey
    action: Action
    cid: CidStr | None = None
    # Sync 1.1: the record CID this op replaced (update/delete); lets consumers detect gaps.
    prev: CidStr | None = None
    record: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _payload_matches_action(self) -> Self:
        if self.action is Action.DELETE:
            if self.record is not None or self.cid is not None:
                raise ValueError("a delete carries no record and no cid")
        elif self.record is None or self.cid is None:
            raise ValueError(f"a {self.action.value} needs both record and cid")
        return self

    # Cached: the projector asks for it several times per event (ledger, writes, change log), and the
    # model is frozen, so it cannot go stale. pydantic leaves cached properties out of equality and dumps.
    @cached_property
    def uri(self) -> str:
        """The record's AT-URI."""
        return f"at://{self.did}/{self.collection}/{self.rkey}"


class IdentityEvent(_Event):
    """The repo's identity (DID document or handle) may have changed; what ingest found when it looked."""

    kind: Literal["identity"] = "identity"
    # The handle the identity names: the DID document's claim when ingest resolved the DID, else the
    # frame's, as received. A claim only: show it when ``handle_valid``.
    handle: Handle | None = None
    # The handle resolves back to this DID (DNS TXT or HTTPS well-known) and the DID document claims
    # it. False when it does not, and when resolution failed or was turned off.
    handle_valid: bool = False
    # The PDS origin from the DID document (checked safe to contact); None when not resolved.
    pds: str | None = Field(default=None, max_length=2048)
    # The DID document's #atproto Multikey (publicKeyMultibase); None when not resolved.
    signing_key: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _valid_handle_is_named(self) -> Self:
        if self.handle_valid and self.handle is None:
            raise ValueError("handle_valid needs a handle")
        return self


class AccountEvent(_Event):
    """The repo's hosting status changed."""

    kind: Literal["account"] = "account"
    active: bool
    # An open set upstream (new statuses may appear): kept as received; AccountStatus names the
    # known ones. Consumers hide an inactive repo whatever the status, and purge on "deleted".
    status: str | None = Field(default=None, max_length=64)


class SyncEvent(_Event):
    """The repo's state was declared anew (``#sync``): consumers may need to resync it."""

    kind: Literal["sync"] = "sync"
    rev: Tid
    commit: CidStr


class SnapshotKey(BaseModel):
    """One record a repo held at a snapshot."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    collection: Nsid
    rkey: RecordKey
    cid: CidStr


class SnapshotEvent(_Event):
    """The complete set of in-scope records a repo held at ``rev``, read from a verified export
    (backfill or resync) and sent after that export's record events.

    A consumer deletes every record of the repo it holds at a rev older than ``rev`` that is not
    listed: that is how a resync removes records that vanished while we were not listening (a diff
    of the repo against a key → cid table that only the consumer holds exactly). A record written
    after ``rev`` (a newer live commit) is never touched.
    """

    kind: Literal["snapshot"] = "snapshot"
    rev: Tid
    commit: CidStr
    # The collections the export was filtered to (prefix patterns as configured, e.g. "fm.plyr.*"):
    # only records of these collections are judged by the snapshot.
    collections: tuple[str, ...]
    records: tuple[SnapshotKey, ...] = ()


class ModerationEvent(_Event):
    """An operator of this index takes a repo, or one record of it, down here, or restores it
    (``source`` operator).

    Separate from the repo's upstream status: a takedown here hides the content from every read
    whatever upstream says, and survives the repo's deactivation and reactivation upstream. It rides
    the log like everything else, keyed by the repo, so a replay rebuilds it too. With ``collection``
    and ``rkey`` it concerns that record alone (its later versions stay hidden until a restore);
    without them, the whole repo. Both optional, so v2 moderation events written before records could
    be named read unchanged.
    """

    kind: Literal["moderation"] = "moderation"
    action: ModerationAction
    reason: str | None = Field(default=None, max_length=1024)
    collection: Nsid | None = None
    rkey: RecordKey | None = None

    @model_validator(mode="after")
    def _record_named_whole(self) -> Self:
        if (self.collection is None) != (self.rkey is None):
            raise ValueError("a record is named by both collection and rkey")
        return self

    @property
    def uri(self) -> str | None:
        """The AT-URI of the record concerned; None when the event concerns the whole repo."""
        if self.collection is None:
            return None
        return f"at://{self.did}/{self.collection}/{self.rkey}"


EventEnvelope = Annotated[
    RecordEvent | IdentityEvent | AccountEvent | SyncEvent | SnapshotEvent | ModerationEvent,
    Field(discriminator="kind"),
]
"""Any event on the log; ``kind`` tells which."""

Event = RecordEvent | IdentityEvent | AccountEvent | SyncEvent | SnapshotEvent | ModerationEvent
