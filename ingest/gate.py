"""The verification gate: which live commits of repos in scope go on the log (Sync 1.1).

Per repo in scope we hold a :class:`~ingest.repo_state.RepoStatus` (rev, data root, sync state).
For each ``#commit``/``#sync`` of such a repo the gate decides:

- **pass**: the repo is synchronized and the commit verifies (:func:`ingest.verify.commit.verify_commit`
  against the DID document's signing key and the held data root): its events go on the log and the
  repo moves to the commit's rev and data root;
- **skip**: the rev is not newer than the one held: a redelivery (after a restart, or from a second
  upstream) of a commit already on the log; nothing is lost, so the repo stays synchronized;
- **hold**: the repo is being backfilled or resynced: the frame waits, in order, and is checked
  again when the export lands (:meth:`Gate.release`); the snapshot covers what is older than it;
- **fail**: any other verification failure marks the repo desynchronized with the reason, queues a
  resync, and puts nothing of the commit on the log.

A repo enters scope with its first commit that touches an in-scope collection: as synchronized if
nothing came before it (``since`` absent, or ``prevData`` the empty tree), else backfilling, since
records it wrote before we listened are missing.

Durability: a repo's new state is written back only once the events of the commit that produced it
were acknowledged (:meth:`Gate.flush`), so after a crash the frames redelivered from the saved
cursor verify again instead of being skipped as already seen. A held frame's future completes when
it is released and delivered, so the upstream's cursor never passes a held frame.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from ingest.errors import IngestError
from ingest.identity import IdentityResolver
from ingest.ipld.cid import CID, CIDError
from ingest.messages import Commit, Sync
from ingest.metrics import IngestMetrics
from ingest.pipeline import FrameOutcome
from ingest.repo_state import RepoStateStore, RepoStatus, SyncState
from ingest.verify.commit import (
    EMPTY_TREE,
    RepoState,
    VerifiedCommit,
    VerifyError,
    VerifyFailure,
    verify_commit,
    verify_sync,
)
from ingest.verify.crypto import KeyFormatError, PublicKey, parse_multikey
from runtime.logging import get_logger

log = get_logger("ingest.gate")

# A repo whose signing key cannot be had is held like one being resynced: the resync verifies it.
KEY_UNAVAILABLE = "key_unavailable"
HELD_OVERFLOW = "held_overflow"
_EMPTY_TREE = EMPTY_TREE.raw


class Verdict(StrEnum):
    """What the gate decided for one frame (closed: a metric label)."""

    PASS = "pass"
    SKIP = "skip"
    HOLD = "hold"
    FAIL = "fail"
    UNTRACKED = "untracked"


@dataclass(slots=True)
class Held:
    """A frame waiting for its repo's backfill or resync; ``done`` completes once it is settled."""

    upstream: str
    outcome: FrameOutcome
    done: asyncio.Future[object]
    # when it was held (monotonic seconds)
    since: float


@dataclass(slots=True)
class _Pending:
    """A repo state waiting for the delivery of the events that produced it."""

    status: RepoStatus
    deliveries: list[asyncio.Future[object]] = field(default_factory=list)


class Gate:
    """Verifies the commits of repos in scope and holds those of repos not synchronized."""

    def __init__(
        self,
        store: RepoStateStore,
        resolver: IdentityResolver,
        metrics: IngestMetrics,
        *,
        max_clock_skew: timedelta,
        max_held_per_repo: int,
        max_hold: timedelta = timedelta(minutes=10),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._resolver = resolver
        self._metrics = metrics
        self._skew = max_clock_skew
        self._max_held = max_held_per_repo
        self._clock = clock
        self._max_hold = max_hold.total_seconds()
        self._monotonic = monotonic
        self.repos: dict[str, RepoStatus] = {}
        self._held: dict[str, deque[Held]] = {}
        self._pending: dict[str, deque[_Pending]] = {}
        # Requests (new repos, failures) to write at once, so another process's worker sees them.
        self._requests: dict[str, RepoStatus] = {}
        self._keys: dict[str, PublicKey] = {}

    async def load(self) -> None:
        """Take the stored state of every repo in scope (at each pipeline start: what was acknowledged)."""
        self.repos = await self._store.load_all()
        self._pending.clear()

    def tracked(self, did: str) -> bool:
        """Whether ``did`` is in scope (its every commit is verified)."""
        return did in self.repos

    async def admit(self, upstream: str, outcome: FrameOutcome) -> tuple[Verdict, Held | None]:
        """Decide for one frame; a held frame comes back with its future, for the upstream's cursor."""
        message = outcome.message
        if message is None:
            return Verdict.UNTRACKED, None
        did = message.repo if isinstance(message, Commit) else message.did
        status = self.repos.get(did)
        if status is None:
            # A repo enters scope with a commit that has in-scope ops (a #sync says nothing of that).
            if not (isinstance(message, Commit) and outcome.events):
                return Verdict.UNTRACKED, None
            # Nothing came before if the repo is new (no since) or its tree was empty: a new account's
            # first commit is an empty one (the reference PDS writes it at createAccount); verifying
            # the commit below proves its ops undo to that empty tree.
            first = isinstance(message, Commit) and (message.since is None or message.prev_data == _EMPTY_TREE)
            status = RepoStatus(did) if first else self._request(RepoStatus(did), SyncState.BACKFILLING, "new_repo")
            self.repos[did] = status
        if status.state is not SyncState.SYNCHRONIZED:
            return Verdict.HOLD, self._hold(did, upstream, outcome)
        verdict = await self._verify(did, status, message)
        if verdict is Verdict.HOLD:
            return verdict, self._hold(did, upstream, outcome)
        return verdict, None

    def delivered(self, outcome: FrameOutcome, deliveries: list[asyncio.Future[object]]) -> None:
        """The futures of the events of a passed frame, which moved its repo to its current state
        (see :meth:`flush`)."""
        message = outcome.message
        did = message.repo if isinstance(message, Commit) else message.did if message is not None else ""
        if did not in self.repos:
            return
        queue = self._pending.setdefault(did, deque())
        queue.append(_Pending(self.repos[did], list(deliveries)))

    async def _verify(self, did: str, status: RepoStatus, message: Commit | Sync) -> Verdict:
        key = await self._key(did)
        if key is None:
            self._fail(did, status, KEY_UNAVAILABLE)
            return Verdict.HOLD
        held = RepoState(status.rev, _cid(status.data))
        try:
            if isinstance(message, Commit):
                verified = verify_commit(message, key, held, now=self._clock(), max_clock_skew=self._skew)
            else:
                verified = verify_sync(message, key, held, now=self._clock(), max_clock_skew=self._skew)
        except VerifyError as err:
            self._metrics.verify_failures.labels(err.reason.value).inc()
            if err.reason is VerifyFailure.STALE_REV:
                return Verdict.SKIP
            log.warning("commit_failed_verification", did=did, rev=message.rev, reason=err.reason.value)
            self._fail(did, status, err.reason.value)
            return Verdict.FAIL
        if isinstance(message, Sync) and status.data is not None and verified.data != _cid(status.data):
            # A sync declares a new state without the diff: what changed must be fetched.
            self._fail(did, status, "sync")
            return Verdict.FAIL
        self._advance(did, status, verified)
        return Verdict.PASS

    def _advance(self, did: str, status: RepoStatus, verified: VerifiedCommit) -> None:
        self.repos[did] = status.moved(
            rev=verified.rev, data=str(verified.data), commit=str(verified.commit), reason=None
        )

    def _fail(self, did: str, status: RepoStatus, reason: str) -> None:
        self.repos[did] = self._request(status, SyncState.DESYNCHRONIZED, reason)

    def _request(self, status: RepoStatus, state: SyncState, reason: str) -> RepoStatus:
        moved = status.moved(state=state, reason=reason)
        self._requests[status.did] = moved
        self._metrics.repo_requests.labels(state.value).inc()
        return moved

    async def _key(self, did: str) -> PublicKey | None:
        try:
            document = await self._resolver.resolve_did(did)
        except IngestError as err:
            log.warning("signing_key_unavailable", did=did, error=str(err)[:200])
            return None
        if document.signing_key is None:
            return None
        key = self._keys.get(document.signing_key)
        if key is None:
            try:
                key = parse_multikey(document.signing_key)
            except KeyFormatError as err:
                log.warning("signing_key_unusable", did=did, error=str(err)[:200])
                return None
            if len(self._keys) > 100_000:
                self._keys.clear()
            self._keys[document.signing_key] = key
        return key

    def _hold(self, did: str, upstream: str, outcome: FrameOutcome) -> Held:
        queue = self._held.setdefault(did, deque())
        held = Held(upstream, outcome, asyncio.get_running_loop().create_future(), self._monotonic())
        if len(queue) >= self._max_held:
            # Too much arrived while the repo waits: drop the oldest; the repo is resynced again
            # after this export lands, and that later snapshot covers what was dropped.
            dropped = queue.popleft()
            dropped.done.set_result(None)
            self._metrics.verify_failures.labels(HELD_OVERFLOW).inc()
            self.repos[did] = self.repos[did].moved(reason=HELD_OVERFLOW)
        queue.append(held)
        self._metrics.held.inc()
        return held

    def synced(self, status: RepoStatus) -> list[Held]:
        """A repo's backfill or resync landed at ``status`` (its events acknowledged): take the new
        state, and return its held frames, in order, for the caller to admit again."""
        current = self.repos.get(status.did, status)
        overflowed = current.reason == HELD_OVERFLOW
        if current.state is SyncState.SYNCHRONIZED and current.rev is not None and (status.rev or "") < current.rev:
            # Already past this export (a newer one landed, or the live chain moved on): keep ours.
            status = current
        self.repos[status.did] = status
        self._pending.pop(status.did, None)
        self._requests.pop(status.did, None)  # the request this export answered
        if overflowed:
            self.repos[status.did] = self._request(status, SyncState.RESYNCING, HELD_OVERFLOW)
        held = list(self._held.pop(status.did, ()))
        self._metrics.held.dec(len(held))
        return held

    async def flush(self) -> int:
        """Write the requests, and each repo's newest state whose events were all acknowledged;
        return how many requests (backfills, resyncs) were written."""
        self._expire()
        ready: list[RepoStatus] = []
        for did, queue in list(self._pending.items()):
            newest = None
            while queue and all(f.done() and not f.cancelled() and f.exception() is None for f in queue[0].deliveries):
                newest = queue.popleft().status
            if newest is not None:
                ready.append(newest)
            if not queue:
                del self._pending[did]
        # Requests last: they are newer than any acknowledged state of their repo.
        requests = len(self._requests)
        ready.extend(self._requests.values())
        self._requests.clear()
        await self._store.save(ready)
        return requests

    def _expire(self) -> None:
        """Let go of frames held longer than ``max_hold``, so a repo whose export keeps failing does
        not stop its upstream's cursor. Safe: the repo is resynced again once its current export
        lands, and that later snapshot covers what was let go."""
        deadline = self._monotonic() - self._max_hold
        for did, queue in self._held.items():
            expired = 0
            while queue and queue[0].since < deadline:
                queue.popleft().done.set_result(None)
                expired += 1
            if expired:
                self._metrics.held.dec(expired)
                self._metrics.verify_failures.labels(HELD_OVERFLOW).inc(expired)
                self.repos[did] = self.repos[did].moved(reason=HELD_OVERFLOW)


def _cid(text: str | None) -> CID | None:
    if text is None:
        return None
    try:
        return CID.decode(text)
    except CIDError:
        return None
