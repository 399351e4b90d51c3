"""Real inputs the fuzzers start from, built once per session with the project's frame builders.

Frames are those the firehose fixtures send (:mod:`tests.fixtures.corpus`, :mod:`tests.fixtures.frames`):
signed ``#commit`` frames with their CAR slices and MST proofs (fm.plyr.* and other collections,
creates, updates and deletes), ``#sync``, ``#identity``, ``#account``, ``#info``, error frames and a
frame of a kind this version does not know. Signed Sync 1.1 commits with the repo state to verify
them against come from :mod:`tests.fixtures.signed_repo`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from ingest.frames import MessageFrame, decode_frame
from ingest.ipld.car import read_car
from ingest.ipld.cid import CID
from ingest.messages import Commit, Sync
from ingest.verify.commit import RepoState
from ingest.verify.crypto import PublicKey
from schemas import codec
from schemas.envelope import Event, RecordEvent
from tests.fixtures import events as ev
from tests.fixtures.corpus import mixed_corpus
from tests.fixtures.frames import Repo, Write, error_frame, info_frame, message_frame, track_record
from tests.fixtures.signed_repo import SignedRepo, as_commit, as_sync

DID = "did:plc:fuzzfuzzfuzzfuzzfuzzfuzz"
TRACK = "fm.plyr.track"


@cache
def frames() -> tuple[bytes, ...]:
    """Real frames of every kind."""
    corpus = mixed_corpus(40, plyr_share=0.6, repos=3, seed=11)
    out = [data for _, data in corpus.frames]
    repo = Repo("did:plc:fuzzsyncaaaaaaaaaaaaaaaa")
    out.append(repo.commit([Write("create", TRACK, "3kaaaaaaaaaaa", track_record("x"))], 1000))
    out.append(repo.sync(1001))
    out.append(info_frame("OutdatedCursor", "Requested cursor exceeded limit."))
    out.append(error_frame("FutureCursor", "Cursor in the future."))
    out.append(error_frame("ConsumerTooSlow"))
    out.append(message_frame("#labels", {"seq": 5, "labels": []}))
    return tuple(out)


@cache
def cars() -> tuple[bytes, ...]:
    """The CAR slices of the seed frames' commits and syncs."""
    out = []
    for data in frames():
        frame = decode_frame(data)
        if isinstance(frame, MessageFrame) and isinstance(frame.body.get("blocks"), bytes):
            out.append(frame.body["blocks"])
    return tuple(out)


@cache
def blocks() -> tuple[bytes, ...]:
    """Every block of the seed CARs: records, MST nodes, signed commits."""
    return tuple(b for car in cars() for b in read_car(car).blocks.values())


@dataclass(frozen=True)
class SignedCase:
    """A signed commit and what a verifier that followed the repo holds before it."""

    message: Commit
    key: PublicKey
    state: RepoState
    repo: SignedRepo


@cache
def signed_commits() -> tuple[SignedCase, ...]:
    """Honest Sync 1.1 commits (first commit, creates, updates, deletes, several ops) of a repo of 60 records."""
    repo = SignedRepo(DID)
    out = []
    genesis_state = repo.state
    first = repo.commit([Write("create", TRACK, "3genesis00000", track_record())])
    out.append(SignedCase(as_commit(first), repo.public_key, genesis_state, repo))
    repo.load({f"{TRACK}/3{i:012d}": track_record(f"t{i}") for i in range(60)})
    batches = [
        [Write("create", TRACK, "3new000000000", track_record("new"))],
        [Write("update", TRACK, "3000000000007", track_record("renamed"))],
        [Write("delete", TRACK, "3000000000011")],
        [
            Write("create", TRACK, "3new000000001", track_record("a")),
            Write("delete", TRACK, "3000000000003"),
            Write("update", TRACK, "3000000000020", track_record("b")),
        ],
    ]
    for writes in batches:
        state = repo.state
        out.append(SignedCase(as_commit(repo.commit(writes)), repo.public_key, state, repo))
    return tuple(out)


@cache
def signed_syncs() -> tuple[tuple[Sync, PublicKey], ...]:
    """Honest ``#sync`` messages of the seed repo, with its key."""
    repo = signed_commits()[-1].repo
    return tuple((as_sync(repo.sync()), repo.public_key) for _ in range(2))


@cache
def envelopes() -> tuple[bytes, ...]:
    """Encoded envelopes of every kind, as the log holds them."""
    uri = f"at://{DID}/{TRACK}/3kaaaaaaaaaaa"
    cid = ev.cid_of(ev.track("x"))
    events: list[Event] = [
        ev.put(DID, TRACK, "3kaaaaaaaaaaa", 1, ev.track("Song", duration=10)),
        ev.delete(DID, TRACK, "3kaaaaaaaaaaa", 2),
        ev.put(DID, "fm.plyr.like", "3kbbbbbbbbbbb", 3, ev.like(uri, cid)),
        ev.put(DID, "fm.plyr.list", "3kccccccccccc", 4, ev.playlist("Mix", [(uri, cid)])),
        ev.identity(DID, 5, "artist.test"),
        ev.account(DID, 6, False, "takendown"),
    ]
    events.append(ev.snapshot(DID, 7, [e for e in events[:1] if isinstance(e, RecordEvent)]))
    return tuple(codec.encode(e) for e in events)


def cid_values() -> tuple[CID, ...]:
    """A few CIDs of real blocks, for ops and links that point at something that exists."""
    return tuple(CID.for_dag_cbor(b) for b in blocks()[:8])
