"""ingest/identity.py against a real local HTTP server (PLC directory, did:web, well-known) and a real
local DNS server: handles verify both ways or are invalid; the cache hits, expires and is invalidated;
failures are typed and cached for less time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from ingest.errors import HandleProblem, IdentityError, IdentityProblem, IdentityUnavailableError
from ingest.identity import AtprotoIdentityResolver, VerifiedIdentity, dns_resolver
from runtime.outbound import Outbound
from tests.fixtures.identity_world import IdentityWorld, LoopbackResolver, identity_world
from tests.services import free_port

pytestmark = pytest.mark.integration

ALICE = "did:plc:alicealicealicealicealic"
BOB = "did:plc:bobbobbobbobbobbobbobbobb"
MALLORY = "did:plc:mallorymallorymallorymal"
KEY = "zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme"


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def world() -> AsyncIterator[IdentityWorld]:
    async with identity_world() as w:
        yield w


@asynccontextmanager
async def resolving(
    world: IdentityWorld, plc_url: str | None = None, **options: Any
) -> AsyncIterator[AtprotoIdentityResolver]:
    """The real resolver, its names pointed at the world (private hosts allowed: plain http)."""
    options.setdefault("timeout", 2.0)
    async with (
        Outbound(allow_private=True, dns=LoopbackResolver(world.http_port)) as outbound,
        AtprotoIdentityResolver(
            outbound, dns_resolver([world.nameserver]), plc_url=plc_url or world.plc_url, **options
        ) as resolver,
    ):
        yield resolver


async def test_a_handle_verified_by_dns(world: IdentityWorld) -> None:
    world.add_did(ALICE, "Alice.Test")
    world.point_dns("alice.test", ALICE)
    async with resolving(world) as resolver:
        identity = await resolver.verify_identity(ALICE)
    assert identity == VerifiedIdentity(ALICE, "alice.test", True, None, "https://pds.example.com", KEY)
    assert "_atproto.alice.test" in world.questions
    assert not any("atproto-did" in r for r in world.requests)  # DNS answered: no HTTPS needed


async def test_a_handle_verified_by_https(world: IdentityWorld) -> None:
    world.add_did(BOB, "bob.test")
    world.well_known["bob.test"] = f"{BOB}\n"
    async with resolving(world) as resolver:
        identity = await resolver.verify_identity(BOB)
        assert await resolver.resolve_handle("BOB.test") == BOB
    assert (identity.handle, identity.handle_valid) == ("bob.test", True)
    assert "_atproto.bob.test" in world.questions and "bob.test /.well-known/atproto-did" in world.requests


async def test_a_did_web_identity(world: IdentityWorld) -> None:
    did = "did:web:studio.test"
    world.add_did(did, "studio.test")
    world.well_known["studio.test"] = did
    async with resolving(world) as resolver:
        identity = await resolver.verify_identity(did)
    assert (identity.handle, identity.handle_valid, identity.signing_key) == ("studio.test", True, KEY)
    assert "studio.test /.well-known/did.json" in world.requests


async def test_a_handle_pointing_at_another_did_is_invalid(world: IdentityWorld) -> None:
    # Mallory's document claims Alice's handle; the handle's DNS names Alice.
    world.add_did(ALICE, "alice.test")
    world.add_did(MALLORY, "alice.test")
    world.point_dns("alice.test", ALICE)
    # And by HTTPS: a handle whose well-known names someone else.
    world.add_did(BOB, "bob.test")
    world.well_known["bob.test"] = MALLORY
    async with resolving(world) as resolver:
        mallory = await resolver.verify_identity(MALLORY)
        bob = await resolver.verify_identity(BOB)
        alice = await resolver.verify_identity(ALICE)
    assert (mallory.handle, mallory.handle_valid, mallory.handle_problem) == (
        "alice.test",
        False,
        HandleProblem.OTHER_DID,
    )
    assert (bob.handle_valid, bob.handle_problem) == (False, HandleProblem.OTHER_DID)
    assert alice.handle_valid
    # The rest of a document still counts: the PDS and the key are the DID's own.
    assert mallory.pds == "https://pds.example.com" and mallory.signing_key == KEY


async def test_a_handle_the_document_does_not_claim_is_not_valid(world: IdentityWorld) -> None:
    # The handle names Bob (DNS), but Bob's document claims no handle, or another one.
    world.point_dns("bob.test", BOB)
    world.add_did(BOB, None)
    world.add_did(ALICE, None, alsoKnownAs=["https://alice.example", "at://bob.test.invalid", "at://bob.test"])
    async with resolving(world) as resolver:
        bob = await resolver.verify_identity(BOB)
        alice = await resolver.verify_identity(ALICE)
    assert (bob.handle, bob.handle_valid, bob.handle_problem) == (None, False, HandleProblem.NONE_CLAIMED)
    # Only the first at:// alias is the claim, and .invalid is never looked up.
    assert (alice.handle, alice.handle_valid, alice.handle_problem) == (
        "bob.test.invalid",
        False,
        HandleProblem.NOT_RESOLVABLE,
    )
    assert not any("invalid" in q for q in world.questions)


async def test_no_record_conflicting_records_and_a_silent_dns(world: IdentityWorld) -> None:
    world.add_did(ALICE, "nowhere.test")
    # Two DIDs in TXT: DNS does not count, HTTPS decides.
    world.add_did(BOB, "split.test")
    world.txt["_atproto.split.test"] = [f"did={BOB}", f"did={MALLORY}", "unrelated=1"]
    world.well_known["split.test"] = BOB
    # DNS never answers and HTTPS has nothing: cannot tell now.
    world.add_did(MALLORY, "quiet.test")
    world.silent.add("_atproto.quiet.test")
    async with resolving(world, timeout=0.5) as resolver:
        alice = await resolver.verify_identity(ALICE)
        bob = await resolver.verify_identity(BOB)
        mallory = await resolver.verify_identity(MALLORY)
    assert alice.handle_problem is HandleProblem.NO_RECORD
    assert bob.handle_valid
    assert mallory.handle_problem is HandleProblem.UNAVAILABLE and not mallory.handle_valid


async def test_cache_hits_expiry_and_invalidate(world: IdentityWorld) -> None:
    world.add_did(ALICE, "alice.test")
    world.point_dns("alice.test", ALICE)
    clock = Clock()
    async with resolving(world, ttl=100, failure_ttl=10, clock=clock) as resolver:
        await resolver.verify_identity(ALICE)
        await resolver.verify_identity(ALICE)
        assert world.plc_requests(ALICE) == 1 and world.questions.count("_atproto.alice.test") == 1
        clock.now += 101
        await resolver.verify_identity(ALICE)
        assert world.plc_requests(ALICE) == 2 and world.questions.count("_atproto.alice.test") == 2
        # The handle moves to another DID; invalidating the DID drops its handle's answer too.
        world.point_dns("alice.test", BOB)
        assert (await resolver.verify_identity(ALICE)).handle_valid
        resolver.invalidate(ALICE)
        moved = await resolver.verify_identity(ALICE)
        assert (moved.handle_valid, moved.handle_problem) == (False, HandleProblem.OTHER_DID)
        assert world.plc_requests(ALICE) == 3


async def test_a_handle_answer_older_than_the_document_is_asked_again(world: IdentityWorld) -> None:
    world.add_did(ALICE, "old.test")
    world.point_dns("old.test", ALICE)
    async with resolving(world) as resolver:
        assert (await resolver.verify_identity(ALICE)).handle_valid
        # Someone looked up new.test before Alice took it: that answer is cached.
        assert await resolver.resolve_handle("new.test") is None
        world.add_did(ALICE, "new.test")
        world.point_dns("new.test", ALICE)
        resolver.invalidate(ALICE)
        identity = await resolver.verify_identity(ALICE)
    assert (identity.handle, identity.handle_valid) == ("new.test", True)
    assert world.questions.count("_atproto.new.test") == 2


async def test_concurrent_lookups_of_one_did_share_one_request(world: IdentityWorld) -> None:
    world.add_did(ALICE, "alice.test")
    world.point_dns("alice.test", ALICE)
    async with resolving(world) as resolver:
        results = await asyncio.gather(*(resolver.verify_identity(ALICE) for _ in range(20)))
    assert all(r.handle_valid for r in results)
    assert world.plc_requests(ALICE) == 1 and world.questions.count("_atproto.alice.test") == 1


async def test_failures_are_typed_and_cached_for_less_time(world: IdentityWorld) -> None:
    world.add_did(BOB, "bob.test", id=MALLORY)  # a document for someone else
    world.plc["did:plc:brokenbrokenbrokenbroken"] = ["not", "a", "document"]
    clock = Clock()
    async with resolving(world, ttl=100, failure_ttl=10, clock=clock) as resolver:
        with pytest.raises(IdentityError) as missing:
            await resolver.verify_identity(ALICE)
        assert missing.value.problem is IdentityProblem.NOT_FOUND and not missing.value.retriable
        for did in (BOB, "did:plc:brokenbrokenbrokenbroken"):
            with pytest.raises(IdentityError) as bad:
                await resolver.resolve_did(did)
            assert bad.value.problem is IdentityProblem.BAD_DOCUMENT
        for did in ("did:key:" + KEY, "did:web:a.test:path", "not a did"):
            with pytest.raises(IdentityError) as unsupported:
                await resolver.resolve_did(did)
            assert unsupported.value.problem is IdentityProblem.UNSUPPORTED_DID
        # Alice registers: the failure is remembered until failure_ttl, not ttl.
        world.add_did(ALICE, None)
        with pytest.raises(IdentityError):
            await resolver.verify_identity(ALICE)
        clock.now += 11
        assert (await resolver.verify_identity(ALICE)).did == ALICE
        assert world.plc_requests(ALICE) == 2


async def test_an_unreachable_plc_directory_is_a_retriable_error(world: IdentityWorld) -> None:
    async with resolving(world, plc_url=f"http://127.0.0.1:{free_port()}") as resolver:
        with pytest.raises(IdentityUnavailableError) as caught:
            await resolver.verify_identity(ALICE)
    assert caught.value.problem is IdentityProblem.UNAVAILABLE and caught.value.retriable


async def test_private_hosts_are_refused_outside_development(world: IdentityWorld) -> None:
    # The real guard: a did:web on loopback and a handle whose host is loopback are not fetched.
    world.add_did(ALICE, "alice.test")
    async with (
        Outbound(allow_private=False) as outbound,
        AtprotoIdentityResolver(
            outbound, dns_resolver([world.nameserver]), plc_url=world.plc_url, timeout=2.0
        ) as resolver,
    ):
        with pytest.raises(IdentityError) as caught:
            await resolver.resolve_did(f"did:web:127.0.0.1%3A{world.http_port}")
        assert caught.value.problem is IdentityProblem.UNSUPPORTED_DID
        identity = await resolver.verify_identity(ALICE)
    assert not identity.handle_valid
    assert not any("atproto-did" in r or "did.json" in r for r in world.requests)
