"""ingest/identity_events.py with a fake resolver: what an #identity event goes out with, that the frame
loop never waits on resolution, bounds, per-DID order, and that failures are counted, never raised."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from ingest.errors import HandleProblem, IdentityError, IdentityProblem
from ingest.identity import VerifiedIdentity
from ingest.identity_events import IdentityEvents, IdentityOutcome, resolved_event
from ingest.metrics import IngestMetrics
from schemas.diddoc import DidDocument
from schemas.envelope import Event, IdentityEvent

ALICE = "did:plc:alicealicealicealicealic"
BOB = "did:plc:bobbobbobbobbobbobbobbobb"
PDS = "https://pds.example.com"
KEY = "zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme"


def frame_event(did: str, handle: str | None, seq: int = 1) -> IdentityEvent:
    return IdentityEvent(did=did, upstream="relay.test", seq=seq, time=datetime(2026, 1, 1, tzinfo=UTC), handle=handle)


def valid(did: str, handle: str) -> VerifiedIdentity:
    return VerifiedIdentity(did, handle, True, None, PDS, KEY)


class FakeResolver:
    """An IdentityResolver from a table; a DID's lookup can be held until the test releases it."""

    def __init__(self, answers: dict[str, VerifiedIdentity | IdentityError]) -> None:
        self.answers = answers
        self.held: dict[str, asyncio.Event] = {}
        self.invalidated: list[str] = []
        self.started: list[str] = []

    def hold(self, did: str) -> asyncio.Event:
        self.held[did] = asyncio.Event()
        return self.held[did]

    async def verify_identity(self, did: str) -> VerifiedIdentity:
        self.started.append(did)
        if did in self.held:
            await self.held[did].wait()
        answer = self.answers[did]
        if isinstance(answer, IdentityError):
            raise answer
        return answer

    async def resolve_did(self, did: str) -> DidDocument:
        identity = await self.verify_identity(did)
        return DidDocument(did, identity.handle, identity.pds, identity.signing_key)

    async def resolve_handle(self, handle: str) -> str | None:
        for did, answer in self.answers.items():
            if isinstance(answer, VerifiedIdentity) and answer.handle == handle and answer.handle_valid:
                return did
        return None

    def invalidate(self, did: str) -> None:
        self.invalidated.append(did)


class ListSink:
    """Records what was sent; delivery is immediate (None) unless ``fail`` is set."""

    def __init__(self) -> None:
        self.sent: list[IdentityEvent] = []
        self.fail: Exception | None = None

    async def send(self, event: Event) -> asyncio.Future[object] | None:
        assert isinstance(event, IdentityEvent)
        if self.fail is not None:
            raise self.fail
        self.sent.append(event)
        return None


def counter(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(f"plyr_ingest_{name}_total", labels) or 0.0


def stage(
    resolver: FakeResolver | None, *, concurrency: int = 16, max_pending: int = 1000, deadline: float = 20.0
) -> tuple[IdentityEvents, ListSink, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    events = IdentityEvents(resolver, metrics, concurrency=concurrency, max_pending=max_pending, deadline=deadline)
    return events, ListSink(), registry


def test_the_documents_claim_replaces_the_frames_handle() -> None:
    event = frame_event(ALICE, "liar.test")
    out = resolved_event(event, valid(ALICE, "alice.test"))
    assert (out.handle, out.handle_valid, out.pds, out.signing_key) == ("alice.test", True, PDS, KEY)
    assert (out.did, out.seq, out.upstream, out.time) == (event.did, event.seq, event.upstream, event.time)
    unclaimed = resolved_event(event, VerifiedIdentity(ALICE, None, False, HandleProblem.NONE_CLAIMED, None, None))
    assert (unclaimed.handle, unclaimed.handle_valid) == (None, False)


async def test_verified_and_invalid_handles() -> None:
    resolver = FakeResolver(
        {
            ALICE: valid(ALICE, "alice.test"),
            BOB: VerifiedIdentity(BOB, "alice.test", False, HandleProblem.OTHER_DID, PDS, KEY),
        }
    )
    events, sink, registry = stage(resolver)
    async with events:
        await events.submit(frame_event(ALICE, "alice.test"), sink.send)
        await events.submit(frame_event(BOB, "alice.test"), sink.send)
        await events.drain()
    by_did = {e.did: e for e in sink.sent}
    assert (by_did[ALICE].handle, by_did[ALICE].handle_valid) == ("alice.test", True)
    assert (by_did[BOB].handle, by_did[BOB].handle_valid, by_did[BOB].pds) == ("alice.test", False, PDS)
    assert resolver.invalidated == [ALICE, BOB]
    assert counter(registry, "identities", outcome="verified") == 1
    assert counter(registry, "identities", outcome="handle_invalid") == 1
    assert counter(registry, "invalid_handles", reason="other_did") == 1


@pytest.mark.parametrize(
    "error",
    [
        IdentityError(IdentityProblem.NOT_FOUND, "404"),
        IdentityError(IdentityProblem.BAD_DOCUMENT, "wrong id"),
        IdentityError(IdentityProblem.UNAVAILABLE, "down"),
    ],
)
async def test_a_failure_sends_the_frames_handle_unverified(error: IdentityError) -> None:
    events, sink, registry = stage(FakeResolver({ALICE: error}))
    async with events:
        await events.submit(frame_event(ALICE, "alice.test"), sink.send)
        await events.drain()
    assert [(e.handle, e.handle_valid, e.pds) for e in sink.sent] == [("alice.test", False, None)]
    assert counter(registry, "identity_failures", reason=error.problem.value) == 1
    assert counter(registry, "identities", outcome="unresolved") == 1


async def test_the_frame_loop_does_not_wait_and_a_slow_resolution_times_out() -> None:
    resolver = FakeResolver({ALICE: valid(ALICE, "alice.test")})
    resolver.hold(ALICE)  # never released
    events, sink, registry = stage(resolver, deadline=0.2)
    async with events:
        futures = await events.submit(frame_event(ALICE, "alice.test"), sink.send)
        assert not sink.sent and len(futures) == 1 and not futures[0].done()
        await asyncio.wait_for(events.drain(), 5)
    assert futures[0].done() and [(e.handle, e.handle_valid) for e in sink.sent] == [("alice.test", False)]
    assert counter(registry, "identity_failures", reason="timeout") == 1


async def test_overload_sends_unverified_at_once_and_keeps_one_dids_order() -> None:
    resolver = FakeResolver({ALICE: valid(ALICE, "alice.test"), BOB: valid(BOB, "bob.test")})
    release = resolver.hold(ALICE)
    events, sink, registry = stage(resolver, max_pending=1)
    async with events:
        await events.submit(frame_event(ALICE, "alice.test", seq=1), sink.send)
        # Full: Bob's event is not resolved, and goes out now.
        await events.submit(frame_event(BOB, "bob.test", seq=2), sink.send)
        assert [(e.did, e.handle_valid) for e in sink.sent] == [(BOB, False)]
        # Full, and Alice has an event in flight: this one waits for it, unresolved.
        await events.submit(frame_event(ALICE, "new.test", seq=3), sink.send)
        assert len(sink.sent) == 1
        release.set()
        await events.drain()
    assert [(e.seq, e.handle, e.handle_valid) for e in sink.sent] == [
        (2, "bob.test", False),
        (1, "alice.test", True),
        (3, "new.test", False),
    ]
    assert counter(registry, "identity_failures", reason="overloaded") == 2


async def test_one_dids_events_go_out_in_frame_order() -> None:
    resolver = FakeResolver({ALICE: valid(ALICE, "alice.test")})
    release = resolver.hold(ALICE)
    events, sink, _ = stage(resolver, concurrency=4)
    async with events:
        for seq in (1, 2, 3):
            await events.submit(frame_event(ALICE, "alice.test", seq=seq), sink.send)
        await asyncio.sleep(0.05)
        assert not sink.sent and resolver.started == [ALICE]  # the next waits for the one before
        release.set()
        await events.drain()
    assert [e.seq for e in sink.sent] == [1, 2, 3]


async def test_concurrency_is_bounded() -> None:
    dids = [f"did:plc:{chr(97 + i) * 24}" for i in range(6)]
    resolver = FakeResolver(
        {did: VerifiedIdentity(did, None, False, HandleProblem.NONE_CLAIMED, None, None) for did in dids}
    )
    releases = [resolver.hold(did) for did in dids]
    events, sink, _ = stage(resolver, concurrency=2)
    async with events:
        for did in dids:
            await events.submit(frame_event(did, None), sink.send)
        await asyncio.sleep(0.05)
        assert len(resolver.started) == 2
        for release in releases:
            release.set()
        await events.drain()
    assert len(sink.sent) == 6


async def test_resolution_off_passes_the_handle_through_unverified() -> None:
    events, sink, registry = stage(None)
    async with events:
        futures = await events.submit(frame_event(ALICE, "alice.test"), sink.send)
    assert futures == [] and [(e.handle, e.handle_valid) for e in sink.sent] == [("alice.test", False)]
    assert counter(registry, "identities", outcome=IdentityOutcome.DISABLED.value) == 1
    assert counter(registry, "identities", outcome="verified") == 0  # registered at startup, at zero


async def test_a_failed_delivery_surfaces_and_close_cancels() -> None:
    resolver = FakeResolver({ALICE: valid(ALICE, "alice.test"), BOB: valid(BOB, "bob.test")})
    events, sink, _ = stage(resolver)
    sink.fail = ConnectionError("broker gone")
    async with events:
        futures = await events.submit(frame_event(ALICE, "alice.test"), sink.send)
        with pytest.raises(ConnectionError):
            await events.drain()
        assert isinstance(futures[0].exception(), ConnectionError)
        resolver.hold(BOB)
        held = await events.submit(frame_event(BOB, "bob.test"), sink.send)
    await asyncio.sleep(0)
    assert held[0].cancelled()
    with pytest.raises(RuntimeError):
        await events.submit(frame_event(BOB, "bob.test"), sink.send)
