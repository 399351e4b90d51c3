"""#identity frames through the real ingest (capture file → Kafka, resolving against a local PLC
directory and DNS server) and the real projector: a handle the frame names but that does not
resolve back to the DID ends unverified, not shown, in the artist row."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from ingest import app
from ingest.capture import write_frames
from ingest.settings import IngestSettings
from runtime.settings import PlatformSettings
from schemas.envelope import IdentityEvent
from tests.fixtures.frames import identity_frame
from tests.fixtures.identity_world import IdentityWorld, identity_world
from tests.fixtures.kafka import consume_all
from tests.integration.test_projector import projecting, settings, wait_applied

pytestmark = pytest.mark.integration

ALICE = "did:plc:alicealicealicealicealic"
MALLORY = "did:plc:mallorymallorymallorymal"
BOB = "did:plc:bobbobbobbobbobbobbobbobb"
CAROL = "did:plc:carolcarolcarolcarolcaro"


def frames() -> list[bytes]:
    return [
        identity_frame(ALICE, 1, "alice.test"),
        # Mallory's frame (and Mallory's own DID document) name Alice's handle.
        identity_frame(MALLORY, 2, "alice.test"),
        # Bob's frame names a handle his document does not claim.
        identity_frame(BOB, 3, "bob.test"),
        # Carol has no DID document at all: her frame's handle passes, unverified.
        identity_frame(CAROL, 4, "carol.test"),
    ]


def set_up(world: IdentityWorld) -> None:
    world.add_did(ALICE, "alice.test")
    world.add_did(MALLORY, "alice.test")
    world.add_did(BOB, None)
    world.point_dns("alice.test", ALICE)
    world.point_dns("bob.test", BOB)


async def ingest_and_project(
    tmp_path: Path, kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, ingest: IngestSettings, topic: str
) -> tuple[list[IdentityEvent], dict[str, asyncpg.Record], CollectorRegistry]:
    plat = PlatformSettings(kafka_bootstrap=kafka_bootstrap, database_url=database_url, events_topic=topic)
    registry = CollectorRegistry()
    assert await app.run(plat, ingest, out=io.BytesIO(), registry=registry) == 0
    events = [e for e in await consume_all(kafka_bootstrap, topic, expect=4) if isinstance(e, IdentityEvent)]
    schema = f"ident_{uuid.uuid4().hex[:8]}"
    async with projecting(plat, settings(schema)):
        await wait_applied(pool, schema, topic, len(events))
    rows = await pool.fetch(f"SELECT did, handle, handle_valid, pds FROM {schema}.artists")
    return events, {r["did"]: r for r in rows}, registry


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(f"plyr_ingest_{name}_total", labels) or 0.0


async def test_a_lying_handle_ends_unverified_in_the_artist_row(
    tmp_path: Path, kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    capture = tmp_path / "identity.bin"
    write_frames(capture, frames())
    async with identity_world() as world:
        set_up(world)
        ingest = IngestSettings(
            from_file=capture,
            metrics_port=0,
            plc_url=world.plc_url,
            dns_nameservers=(f"127.0.0.1:{world.dns_port}",),
            identity_timeout_s=2,
        )
        events, rows, registry = await ingest_and_project(tmp_path, kafka_bootstrap, database_url, pool, ingest, topic)
    by_did = {e.did: e for e in events}
    assert (by_did[ALICE].handle, by_did[ALICE].handle_valid, by_did[ALICE].pds) == (
        "alice.test",
        True,
        "https://pds.example.com",
    )
    assert by_did[ALICE].signing_key is not None
    assert (by_did[MALLORY].handle, by_did[MALLORY].handle_valid) == ("alice.test", False)
    assert (by_did[BOB].handle, by_did[BOB].handle_valid) == (None, False)
    assert (by_did[CAROL].handle, by_did[CAROL].handle_valid, by_did[CAROL].pds) == ("carol.test", False, None)

    pds = "https://pds.example.com"
    assert {did: (r["handle"], r["handle_valid"], r["pds"]) for did, r in rows.items()} == {
        ALICE: ("alice.test", True, pds),
        MALLORY: (None, False, pds),
        BOB: (None, False, pds),
        CAROL: (None, False, None),
    }

    assert sample(registry, "identities", outcome="verified") == 1
    assert sample(registry, "identities", outcome="handle_invalid") == 2
    assert sample(registry, "invalid_handles", reason="other_did") == 1
    assert sample(registry, "invalid_handles", reason="none_claimed") == 1
    assert sample(registry, "identities", outcome="unresolved") == 1
    assert sample(registry, "identity_failures", reason="not_found") == 1


async def test_with_resolution_off_every_handle_is_unverified(
    tmp_path: Path, kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic: str
) -> None:
    capture = tmp_path / "identity.bin"
    write_frames(capture, frames())
    ingest = IngestSettings(from_file=capture, metrics_port=0, resolve_identity=False)
    events, rows, registry = await ingest_and_project(tmp_path, kafka_bootstrap, database_url, pool, ingest, topic)
    claimed = {ALICE: "alice.test", MALLORY: "alice.test", BOB: "bob.test", CAROL: "carol.test"}
    assert {e.did: (e.handle, e.handle_valid) for e in events} == {did: (h, False) for did, h in claimed.items()}
    shown = {did: (r["handle"], r["handle_valid"]) for did, r in rows.items()}
    assert shown == dict.fromkeys(claimed, (None, False))
    assert sample(registry, "identities", outcome="disabled") == 4
