"""The verification gate in the ingester, on real signed Sync 1.1 frames and the real repo state table:
honest chains pass, redeliveries are skipped, a lying or gapped repo is desynchronized with its reason
and nothing of it reaches the log, and frames of a repo waiting for its resync are held and released
in order once it lands. The signing keys come from a resolver that answers from the test's repos (the
resolver is not what is tested here: tests/integration/test_identity.py covers it)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from ingest.acks import AckTracker
from ingest.app import Ingester, open_cursor_store
from ingest.dedupe import Deduper
from ingest.gate import Gate
from ingest.identity import VerifiedIdentity
from ingest.metrics import IngestMetrics
from ingest.repo_state import PostgresRepoStateStore, RepoStatus, SyncState
from ingest.verify import mst
from ingest.verify.crypto import KeyAlgorithm
from schemas.diddoc import DidDocument
from schemas.envelope import Event, RecordEvent
from schemas.ids import CollectionFilter
from tests.fixtures.frames import Write, next_tid
from tests.fixtures.signed_repo import SignedRepo, new_key, sign

pytestmark = pytest.mark.integration

UPSTREAM = "wss://relay.test"
TRACK = "fm.plyr.track"


def track(title: str) -> dict[str, object]:
    return {"$type": TRACK, "title": title, "artist": "a", "fileType": "mp3", "createdAt": "2026-11-01T00:00:00Z"}


class ListSink:
    """Collects events; each is delivered at once."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def send(self, event: Event) -> asyncio.Future[object] | None:
        self.events.append(event)
        done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def flush(self) -> None:
        return None


class RepoKeys:
    """Answers DID documents with the signing keys of the test's repos."""

    def __init__(self, *repos: SignedRepo) -> None:
        self.repos = {r.did: r for r in repos}

    async def resolve_did(self, did: str) -> DidDocument:
        return DidDocument(did, None, None, self.repos[did].public_key.multibase())

    async def resolve_handle(self, handle: str) -> str | None:
        return None

    async def verify_identity(self, did: str) -> VerifiedIdentity:
        raise NotImplementedError

    def invalidate(self, did: str) -> None:
        return None


async def make(pool: asyncpg.Pool, *repos: SignedRepo) -> tuple[Ingester, ListSink, Gate, IngestMetrics]:
    await open_cursor_store(pool)  # migrates the ingest schema
    await pool.execute("TRUNCATE plyr_ingest.repos")
    metrics = IngestMetrics(CollectorRegistry())
    gate = Gate(
        PostgresRepoStateStore(pool),
        RepoKeys(*repos),
        metrics,
        max_clock_skew=timedelta(minutes=5),
        max_held_per_repo=10,
    )
    await gate.load()
    sink = ListSink()
    ingester = Ingester(sink, CollectionFilter.parse("fm.plyr.*"), metrics, Deduper(), None, gate)
    return ingester, sink, gate, metrics


def rkeys(sink: ListSink) -> list[str]:
    return [e.rkey for e in sink.events if isinstance(e, RecordEvent)]


async def stored(pool: asyncpg.Pool, did: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT rev, data_cid, sync_state, reason FROM plyr_ingest.repos WHERE did = $1", did)
    assert row is not None
    return row


async def test_honest_chains_pass_and_redeliveries_are_skipped(pool: asyncpg.Pool) -> None:
    repo = SignedRepo("did:plc:gatehonestaaaaaaaaaaaaaa")
    p256 = SignedRepo("did:plc:gatep256bbbbbbbbbbbbbbbbb", key=new_key(KeyAlgorithm.P256))
    ingester, sink, gate, metrics = await make(pool, repo, p256)
    first = repo.commit([Write("create", TRACK, "t1", track("one"))])  # since absent: the repo's first
    await ingester.handle(UPSTREAM, first, None)
    # A commit with nothing in scope still moves a tracked repo's chain.
    await ingester.handle(UPSTREAM, repo.commit([Write("create", "app.bsky.feed.post", "p1", {"text": "hi"})]), None)
    second = repo.commit([Write("update", TRACK, "t1", track("one, again"))])
    await ingester.handle(UPSTREAM, second, None)
    await ingester.handle(UPSTREAM, second, None)  # redelivered
    await ingester.handle(UPSTREAM, p256.commit([Write("create", TRACK, "x", track("p256"))]), None)
    assert rkeys(sink) == ["t1", "t1", "x"]
    assert metrics.verdicts.labels("skip")._value.get() == 1
    await ingester.flush_repos()
    row = await stored(pool, repo.did)
    assert (row["rev"], row["data_cid"], row["sync_state"]) == (repo.rev, str(repo.data), "synchronized")
    assert gate.tracked(p256.did)


async def test_a_lying_repo_is_desynchronized_and_nothing_of_it_is_sent(pool: asyncpg.Pool) -> None:
    liar = SignedRepo("did:plc:gateliarcccccccccccccccccc")
    honest = SignedRepo("did:plc:gatehonestdddddddddddddddd")
    ingester, sink, _, metrics = await make(pool, liar, honest)
    await ingester.handle(UPSTREAM, liar.commit([Write("create", TRACK, "ok", track("ok"))]), None)
    other = new_key(KeyAlgorithm.K256)
    forged = liar.commit([Write("create", TRACK, "forged", track("forged"))], signer=lambda b: sign(other, b))
    await ingester.handle(UPSTREAM, forged, None)
    # Another repo's commits go on unaffected.
    await ingester.handle(UPSTREAM, honest.commit([Write("create", TRACK, "h", track("h"))]), None)
    assert rkeys(sink) == ["ok", "h"]
    assert metrics.verify_failures.labels("bad_signature")._value.get() == 1
    await ingester.flush_repos()
    row = await stored(pool, liar.did)
    assert (row["sync_state"], row["reason"]) == ("desynchronized", "bad_signature")


async def test_a_gap_holds_the_repo_until_its_resync_lands(pool: asyncpg.Pool) -> None:
    repo = SignedRepo("did:plc:gategapeeeeeeeeeeeeeeeeee")
    ingester, sink, _, metrics = await make(pool, repo)
    await ingester.handle(UPSTREAM, repo.commit([Write("create", TRACK, "a", track("a"))]), None)
    repo.commit([Write("create", TRACK, "missed", track("missed"))])  # never reaches us
    await ingester.handle(UPSTREAM, repo.commit([Write("create", TRACK, "b", track("b"))]), None)
    assert metrics.verify_failures.labels("prev_data_mismatch")._value.get() == 1
    resynced_at = RepoStatus(repo.did, repo.rev, str(repo.data), None, SyncState.SYNCHRONIZED)
    # Arrives while the resync runs: held, in order; the cursor waits for it.
    tracker = AckTracker(repo.seq)
    await ingester.handle(UPSTREAM, repo.commit([Write("create", TRACK, "c", track("c"))]), tracker)
    await ingester.handle(UPSTREAM, repo.commit([Write("create", TRACK, "d", track("d"))]), tracker)
    assert rkeys(sink) == ["a"]
    assert tracker.poll() == repo.seq - 2
    # The resync exported the repo after b (its snapshot holds "missed" and "b"): c and d follow it.
    await ingester.release(resynced_at)
    assert rkeys(sink) == ["a", "c", "d"]
    async with asyncio.timeout(5):
        assert await tracker.drain() == repo.seq
    await ingester.flush_repos()
    row = await stored(pool, repo.did)
    assert (row["rev"], row["sync_state"]) == (repo.rev, "synchronized")


async def test_a_repo_first_seen_mid_history_is_queued_for_backfill(pool: asyncpg.Pool) -> None:
    repo = SignedRepo("did:plc:gatelatefffffffffffffffff")
    repo.load({f"{TRACK}/old": track("before we listened")})
    ingester, sink, _, _ = await make(pool, repo)
    await ingester.handle(UPSTREAM, repo.commit([Write("create", TRACK, "new", track("new"))]), None)
    assert rkeys(sink) == []
    await ingester.flush_repos()
    row = await stored(pool, repo.did)
    assert (row["sync_state"], row["reason"]) == ("backfilling", "new_repo")
    # Its backfill lands at the commit it exported; the held commit is not newer, the snapshot has it.
    await ingester.release(RepoStatus(repo.did, repo.rev, str(repo.data), None, SyncState.SYNCHRONIZED))
    assert rkeys(sink) == []
    # What comes after verifies against the exported state.
    await ingester.handle(
        UPSTREAM, repo.commit([Write("create", TRACK, "later", track("later"))], rev=next_tid()), None
    )
    assert rkeys(sink) == ["later"]


async def test_a_new_account_after_its_empty_first_commit_passes(pool: asyncpg.Pool) -> None:
    # The reference PDS opens every account with an empty commit; the first fm.plyr.* commit follows it
    # (since set, prevData the empty tree): nothing came before, so there is nothing to backfill.
    repo = SignedRepo("did:plc:gatenewaccountgggggggggggg")
    ingester, sink, _, _ = await make(pool, repo)
    await ingester.handle(UPSTREAM, repo.commit([]), None)
    await ingester.handle(UPSTREAM, repo.commit([Write("create", TRACK, "first", track("first"))]), None)
    assert rkeys(sink) == ["first"]
    await ingester.flush_repos()
    row = await stored(pool, repo.did)
    assert (row["rev"], row["sync_state"], row["reason"]) == (repo.rev, "synchronized", None)
    # A repo whose tree held records when we first saw it is still queued (test above); one that lies
    # about an empty tree fails verification (its ops do not undo to it).
    liar = SignedRepo("did:plc:gateemptyliarhhhhhhhhhhhhh")
    liar.load({f"{TRACK}/old": track("old")})
    liar.data = mst.build({}).root  # the next commit claims an empty tree before it
    ingester, sink, _, metrics = await make(pool, liar)
    await ingester.handle(UPSTREAM, liar.commit([Write("create", TRACK, "new", track("new"))]), None)
    assert rkeys(sink) == []
    assert metrics.verify_failures.labels("inversion_mismatch")._value.get() == 1
