"""``#identity`` events → what goes on the log: the DID resolved again, the handle checked both ways.

The event built from the frame (:mod:`ingest.normalize`) carries the frame's handle, unverified. Here,
off the frame loop, the DID is dropped from the resolver's cache (the identity may have changed),
resolved, and the event is sent with what resolution found (:func:`resolved_event`).

Invariants:
- The frame loop never waits on the network: :meth:`IdentityEvents.submit` starts a background job
  and returns its future at once; the upstream's ack tracker holds the cursor until the job's event
  is acknowledged, so a crash redoes it rather than losing it.
- Bounded: at most ``concurrency`` resolutions run at once, each within ``deadline`` seconds; with
  ``max_pending`` jobs in flight, a further event goes out unverified at once (``overloaded``).
- One DID's identity events are sent in frame order (a job waits for the previous one of its DID),
  so an older answer never lands after a newer one.
- A resolution failure never raises and never stalls: the event goes out with the frame's handle
  unverified, counted under a closed :class:`~ingest.errors.IdentityProblem`. Only a failed delivery
  (the sink's error) comes out of the job, to the tracker, as for every other event.
- Off (no resolver): the event goes out as the frame gave it, unverified (``disabled``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from enum import StrEnum
from types import TracebackType
from typing import Self

from pydantic import ValidationError

from ingest.errors import HandleProblem, IdentityError, IdentityProblem
from ingest.identity import IdentityResolver, VerifiedIdentity
from ingest.metrics import IngestMetrics
from runtime.logging import get_logger
from schemas.envelope import Event, IdentityEvent

log = get_logger("ingest.identity")

Send = Callable[[Event], Awaitable[asyncio.Future[object] | None]]


class IdentityOutcome(StrEnum):
    """What an #identity event went out with (closed: a metric label)."""

    VERIFIED = "verified"  # resolved; the handle resolves back to the DID
    HANDLE_INVALID = "handle_invalid"  # resolved; the handle does not verify (or there is none)
    UNRESOLVED = "unresolved"  # resolution failed or was not attempted: the frame's handle, unverified
    DISABLED = "disabled"  # resolution is turned off: the frame's handle, unverified


def resolved_event(event: IdentityEvent, identity: VerifiedIdentity) -> IdentityEvent:
    """``event`` with what resolution found. The DID document's handle claim replaces the frame's: a
    frame cannot name a handle the document does not claim."""
    return IdentityEvent.model_validate(
        {
            **event.model_dump(),
            "handle": identity.handle,
            "handle_valid": identity.handle_valid,
            "pds": identity.pds,
            "signing_key": identity.signing_key,
        }
    )


class IdentityEvents:
    """Sends #identity events once resolved, in the background; an async context manager whose close
    cancels the jobs still running (their frames stay unacknowledged, so they are redone)."""

    def __init__(
        self,
        resolver: IdentityResolver | None,
        metrics: IngestMetrics,
        *,
        concurrency: int = 16,
        max_pending: int = 1000,
        deadline: float = 15.0,
    ) -> None:
        self._resolver = resolver
        self._metrics = metrics
        self._slots = asyncio.Semaphore(concurrency)
        self._max_pending = max_pending
        self._deadline = deadline
        self._jobs: set[asyncio.Task[object]] = set()
        # did → its most recent job, which the next event of that DID waits for.
        self._last: dict[str, asyncio.Task[object]] = {}
        self._closed = False
        # Closed label sets: every series exists from startup, at zero.
        for outcome in IdentityOutcome:
            metrics.identities.labels(outcome)
        for problem in IdentityProblem:
            metrics.identity_failures.labels(problem)
        for reason in HandleProblem:
            metrics.invalid_handles.labels(reason)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Cancel the jobs in flight and refuse new ones (idempotent)."""
        self._closed = True
        for job in self._jobs:
            job.cancel()

    def __len__(self) -> int:
        return len(self._jobs)

    async def submit(self, event: IdentityEvent, send: Send) -> list[asyncio.Future[object]]:
        """Send ``event`` once resolved; the futures complete when it is delivered."""
        if self._closed:
            raise RuntimeError("IdentityEvents is closed")
        resolve = self._resolver is not None
        if self._resolver is None:
            self._metrics.identities.labels(IdentityOutcome.DISABLED).inc()
        elif len(self._jobs) >= self._max_pending:
            resolve = False
            self._unresolved(event, IdentityProblem.OVERLOADED)
        previous = self._last.get(event.did)
        if not resolve and previous is None:
            # Nothing to wait for and nothing to look up: send it now, as any other event.
            delivery = await send(event)
            return [delivery] if delivery is not None else []
        job = asyncio.create_task(self._job(event, send, previous, resolve))
        self._jobs.add(job)
        self._last[event.did] = job
        job.add_done_callback(lambda done: self._forget(event.did, done))
        self._metrics.identity_pending.set(len(self._jobs))
        return [job]

    async def drain(self) -> None:
        """Wait for every job; raise the first delivery failure among them."""
        while self._jobs:
            done, _ = await asyncio.wait(set(self._jobs))
            for job in done:
                if not job.cancelled() and (err := job.exception()) is not None:
                    raise err

    def _forget(self, did: str, job: asyncio.Task[object]) -> None:
        self._jobs.discard(job)
        if self._last.get(did) is job:
            del self._last[did]
        self._metrics.identity_pending.set(len(self._jobs))

    async def _job(
        self, event: IdentityEvent, send: Send, previous: asyncio.Task[object] | None, resolve: bool
    ) -> object:
        if previous is not None:
            # Only the order matters here: the previous job's own outcome went to its own frame.
            await asyncio.wait([previous])
        out = await self._resolved(event) if resolve else event
        delivery = await send(out)
        return None if delivery is None else await delivery

    async def _resolved(self, event: IdentityEvent) -> IdentityEvent:
        resolver = self._resolver
        assert resolver is not None
        try:
            async with asyncio.timeout(self._deadline):
                async with self._slots:
                    # Dropped right before asking: whatever was cached may predate this event.
                    resolver.invalidate(event.did)
                    identity = await resolver.verify_identity(event.did)
            out = resolved_event(event, identity)
        except TimeoutError:
            return self._unresolved(event, IdentityProblem.TIMEOUT)
        except IdentityError as err:
            return self._unresolved(event, err.problem, str(err))
        except ValidationError as err:
            # What the document said does not fit the envelope (checked upstream, so not expected).
            return self._unresolved(event, IdentityProblem.BAD_DOCUMENT, str(err))
        if identity.handle_problem is None:
            self._metrics.identities.labels(IdentityOutcome.VERIFIED).inc()
        else:
            self._metrics.identities.labels(IdentityOutcome.HANDLE_INVALID).inc()
            self._metrics.invalid_handles.labels(identity.handle_problem).inc()
            log.debug("handle_invalid", did=event.did, handle=identity.handle, reason=identity.handle_problem.value)
        return out

    def _unresolved(self, event: IdentityEvent, problem: IdentityProblem, detail: str = "") -> IdentityEvent:
        self._metrics.identities.labels(IdentityOutcome.UNRESOLVED).inc()
        self._metrics.identity_failures.labels(problem).inc()
        log.debug("identity_unresolved", did=event.did, reason=problem.value, detail=detail[:300])
        return event
