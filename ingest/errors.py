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
    FRAME_TOO_LARGE = "frame_too_large"  # over INGEST_MAX_FRAME_BYTES: refused unread, then stepped past


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


class FrameTooLargeError(UpstreamError):
    """The upstream sent a frame over the size limit, and the connection was closed (1009) before
    reading it. From the same cursor the upstream would send it again: the caller steps past it."""


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


class TopicRetentionError(IngestError):
    """The events topic exists with a retention or cleanup policy that would drop history (finite
    ``retention.ms``/``retention.bytes``, or compaction): the log must be kept whole so that a replay
    from offset 0 rebuilds everything. The ingester refuses to start until an operator fixes it."""

    retriable = False


class CaptureError(IngestError):
    """A capture file is truncated or corrupt."""

    retriable = False


class IdentityProblem(StrEnum):
    """Why an ``#identity`` event went out without a resolved identity (closed: a metric label)."""

    UNSUPPORTED_DID = "unsupported_did"  # not did:plc or hostname did:web, or a host we may not contact
    NOT_FOUND = "not_found"  # the directory or host has no document for the DID
    BAD_DOCUMENT = "bad_document"  # what was served is not a DID document of this DID
    UNAVAILABLE = "unavailable"  # the directory or host did not answer (later may work)
    TIMEOUT = "timeout"  # the event's resolution deadline passed
    OVERLOADED = "overloaded"  # too many resolutions in flight: not attempted


class HandleProblem(StrEnum):
    """Why a DID's handle is not valid (closed: a metric label)."""

    NONE_CLAIMED = "none_claimed"  # the DID document names no handle
    NOT_RESOLVABLE = "not_resolvable"  # a reserved name (.local, .arpa ...) that is never looked up
    NO_RECORD = "no_record"  # neither DNS TXT nor HTTPS names a DID for it
    OTHER_DID = "other_did"  # it names another DID
    UNAVAILABLE = "unavailable"  # DNS and HTTPS did not answer: cannot tell now


class IdentityError(IngestError):
    """A DID's document could not be had; ``problem`` says why."""

    retriable = False

    def __init__(self, problem: IdentityProblem, detail: str) -> None:
        super().__init__(f"{problem}: {detail}")
        self.problem = problem


class IdentityUnavailableError(IdentityError):
    """The PLC directory, the did:web host or DNS did not answer in time; asking later may work."""

    retriable = True

    def __init__(self, detail: str) -> None:
        super().__init__(IdentityProblem.UNAVAILABLE, detail)


class SyncFailure(StrEnum):
    """Why a repo's backfill or resync failed before its export was read (closed: a metric label and the
    repo row's reason). Failures of the export itself are :class:`~ingest.repo_export.ExportFailure`."""

    IDENTITY_UNAVAILABLE = "identity_unavailable"  # the PLC directory or did:web host did not answer
    IDENTITY_INVALID = "identity_invalid"  # no DID document, a bad one, or a DID we cannot resolve
    NO_PDS = "no_pds"  # the DID document names no PDS, or one we may not contact
    NO_SIGNING_KEY = "no_signing_key"  # the DID document has no #atproto key we can read
    RATE_LIMITED = "rate_limited"  # the PDS answered 429: tried again after its Retry-After
    PDS_UNAVAILABLE = "pds_unavailable"  # no answer, a timeout, a 5xx
    REPO_UNAVAILABLE = "repo_unavailable"  # a 4xx: RepoNotFound, RepoTakendown, RepoDeactivated, ...


class RepoSyncError(IngestError):
    """A repo could not be backfilled or resynced this time; it stays queued and is tried again later.

    ``failure`` is a :class:`SyncFailure` or an :class:`~ingest.repo_export.ExportFailure`;
    ``retry_after`` is how long the server asked us to wait, if it said."""

    retriable = True

    def __init__(self, failure: StrEnum, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{failure}: {detail}" if detail else str(failure))
        self.failure = failure
        self.detail = detail
        self.retry_after = retry_after


class DiscoveryError(IngestError):
    """The relay did not list the repos of a collection (unreachable, refused, a bad answer)."""

    retriable = True


class SyncBusyError(IngestError):
    """Another process (a running ingester, another ``--run``) is processing the backfill queue."""

    retriable = False
