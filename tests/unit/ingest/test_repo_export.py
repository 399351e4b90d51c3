"""export_repo on real signed repo exports (k256/p256, a real MST): an honest export gives every in-scope
record exactly as written and a snapshot of every in-scope key; an export that lies is refused with its
reason; a record that cannot be read is skipped, reported, and still listed; bit flips never crash."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ingest.errors import DropReason
from ingest.ipld import dagcbor
from ingest.ipld.car import read_car, write_car
from ingest.ipld.cid import CID
from ingest.repo_export import ExportError, ExportFailure, ExportLimits, RepoExport, export_repo
from ingest.verify import mst
from ingest.verify.crypto import KeyAlgorithm, PublicKey
from schemas.codec import decode, encode
from schemas.envelope import Action, RecordEvent, SnapshotEvent, Source
from schemas.ids import CollectionFilter, tid_from_datetime
from tests.fixtures import events as ev
from tests.fixtures.repo_export import ExportableRepo, ExportBlocks, block_of, car_of, mixed_records
from tests.fixtures.signed_repo import new_key, sign

DID = "did:plc:exportexportexportexport"
PLYR = CollectionFilter.parse("fm.plyr.*")


def _repo(algorithm: KeyAlgorithm = KeyAlgorithm.K256, plyr: int = 40, other: int = 60) -> ExportableRepo:
    repo = ExportableRepo(DID, new_key(algorithm))
    repo.load(mixed_records(DID, plyr, other))
    return repo


def _export(
    data: bytes,
    key: PublicKey | None,
    *,
    collections: CollectionFilter = PLYR,
    held_rev: str | None = None,
    limits: ExportLimits | None = None,
    did: str = DID,
) -> RepoExport:
    return export_repo(
        data,
        did,
        key,
        collections=collections,
        source=Source.BACKFILL,
        upstream="pds.test",
        now=datetime.now(UTC),
        held_rev=held_rev,
        limits=limits or ExportLimits(),
    )


def _reason(data: bytes, key: PublicKey | None, **kwargs: Any) -> ExportFailure:
    with pytest.raises(ExportError) as err:
        _export(data, key, **kwargs)
    return err.value.reason


def _in_scope(repo: ExportableRepo, collections: CollectionFilter = PLYR) -> dict[str, dict[str, Any]]:
    return {p: r for p, r in repo.json.items() if collections.matches(p.partition("/")[0])}


@pytest.mark.parametrize("algorithm", [KeyAlgorithm.K256, KeyAlgorithm.P256])
def test_an_honest_export_gives_every_in_scope_record_then_the_snapshot(algorithm: KeyAlgorithm) -> None:
    repo = _repo(algorithm)
    parts = repo.export_blocks()
    out = _export(car_of(parts), repo.public_key)

    want = _in_scope(repo)
    records = out.records
    assert [f"{e.collection}/{e.rkey}" for e in records] == sorted(want)
    for event in records:
        path = f"{event.collection}/{event.rkey}"
        assert event.record == want[path]
        assert event.cid == str(repo.records[path])
        assert (event.action, event.source, event.rev, event.commit) == (
            Action.CREATE,
            Source.BACKFILL,
            repo.rev,
            str(parts.root),
        )
        assert (event.did, event.upstream, event.seq) == (DID, "pds.test", None)
    snapshot = out.events[-1]
    assert isinstance(snapshot, SnapshotEvent) and snapshot is out.snapshot
    assert (snapshot.rev, snapshot.commit, snapshot.collections) == (repo.rev, str(parts.root), ("fm.plyr.*",))
    assert {(k.collection, k.rkey, k.cid) for k in snapshot.records} == {
        (*p.split("/"), str(repo.records[p])) for p in want
    }
    assert (out.verified.rev, out.verified.data, out.verified.commit) == (repo.rev, repo.data, parts.root)
    assert out.tree_entries == len(repo.records) == 100
    assert out.drops == [] and out.signature_checked


def test_the_events_are_valid_envelopes_through_the_codec() -> None:
    repo = _repo(KeyAlgorithm.P256)
    out = _export(repo.export_car(), repo.public_key)
    for event in out.events:
        again = decode(encode(event))
        assert again == event
        assert type(again) is type(event)
    assert RecordEvent.model_validate(out.records[0].model_dump()) == out.records[0]


def test_the_filter_decides_what_is_kept() -> None:
    repo = _repo()
    car = repo.export_car()
    tracks = CollectionFilter.parse("fm.plyr.track")
    only = _export(car, repo.public_key, collections=tracks)
    assert {e.collection for e in only.records} == {"fm.plyr.track"}
    assert only.snapshot.collections == ("fm.plyr.track",)
    assert len(only.snapshot.records) == len(_in_scope(repo, tracks))
    everything = _export(car, repo.public_key, collections=CollectionFilter.parse("*"))
    assert len(everything.records) == len(repo.records)
    assert everything.snapshot.collections == ("*",)


def test_an_empty_repo_is_a_snapshot_of_nothing() -> None:
    repo = ExportableRepo(DID)
    repo.load({})
    out = _export(repo.export_car(), repo.public_key)
    assert len(out.events) == 1
    assert out.snapshot.records == ()
    assert out.tree_entries == 0


def test_exact_json_of_links_bytes_and_blobs() -> None:
    repo = ExportableRepo(DID)
    audio = str(CID.for_raw(b"audio"))
    record = ev.track(
        "Blob",
        audioBlob={"$type": "blob", "ref": {"$link": audio}, "mimeType": "audio/mpeg", "size": 5},
        labels={"$bytes": "AAEC"},
    )
    repo.load({"fm.plyr.track/3aaaaaaaaaaaa": record})
    (event,) = _export(repo.export_car(), repo.public_key).records
    assert event.record == record


def test_a_signature_by_another_key_is_refused_and_no_key_skips_only_that() -> None:
    repo = _repo()
    mallory = new_key(KeyAlgorithm.K256)
    forged = repo.export_car(signer=lambda b: sign(mallory, b))
    assert _reason(forged, repo.public_key) is ExportFailure.BAD_SIGNATURE
    high_s = repo.export_car(signer=lambda b: sign(repo.key, b, high_s=True))
    assert _reason(high_s, repo.public_key) is ExportFailure.BAD_SIGNATURE
    unverified = _export(forged, None)
    assert not unverified.signature_checked
    assert len(unverified.records) == len(_in_scope(repo))


def test_another_repos_commit_a_future_rev_and_a_stale_copy_are_refused() -> None:
    repo = _repo()
    car = repo.export_car()
    assert _reason(car, repo.public_key, did="did:plc:someoneelsesomeoneelse") is ExportFailure.WRONG_DID
    assert _reason(car, repo.public_key, did="not a did") is ExportFailure.WRONG_DID
    assert repo.rev is not None
    newer = tid_from_datetime(datetime.now(UTC) + timedelta(minutes=1))
    assert _reason(car, repo.public_key, held_rev=newer) is ExportFailure.STALE_EXPORT
    # The same rev as the one held: a resync of a repo that did not move.
    assert _export(car, repo.public_key, held_rev=repo.rev).verified.rev == repo.rev
    future = ExportableRepo(DID, repo.key)
    future.load({"fm.plyr.track/3aaaaaaaaaaaa": ev.track("x")})
    future.rev = tid_from_datetime(datetime.now(UTC) + timedelta(hours=1))
    assert _reason(future.export_car(), repo.public_key) is ExportFailure.FUTURE_REV


def _inner_node(parts: ExportBlocks) -> CID:
    """An MST node below the root."""
    nodes = [c for c, b in parts.blocks.items() if c not in (parts.root, parts.data) and _is_node(b)]
    assert nodes
    return nodes[0]


def _is_node(block: bytes) -> bool:
    try:
        mst.decode_node(block)
    except mst.MstError:
        return False
    return True


def test_a_missing_or_swapped_mst_node_is_refused() -> None:
    repo = _repo(plyr=100, other=200)
    parts = repo.export_blocks()
    node = _inner_node(parts)
    missing = dict(parts.blocks)
    del missing[node]
    assert _reason(car_of(ExportBlocks(parts.root, parts.data, missing)), repo.public_key) is (
        ExportFailure.MISSING_NODE
    )
    del parts.blocks[parts.data]
    assert _reason(car_of(parts), repo.public_key) is ExportFailure.MISSING_NODE

    parts = repo.export_blocks()
    other = next(c for c, b in parts.blocks.items() if c != node and c != parts.data and _is_node(b))
    parts.blocks[node] = parts.blocks[other]
    assert _reason(car_of(parts), repo.public_key) is ExportFailure.MALFORMED_TREE


def test_a_tree_that_is_not_canonical_is_refused() -> None:
    repo = ExportableRepo(DID)
    cid, block = block_of(ev.track("x"))
    keys = [f"fm.plyr.track/3{i:012d}" for i in range(200)]
    low = next(k for k in keys if mst.key_height(k) == 0)
    high = next(k for k in keys if mst.key_height(k) > 0)
    # Two keys of different heights side by side in one node.
    root_block = mst.encode_node(mst.Node(None, tuple(mst.Entry(k, cid, None) for k in sorted([low, high]))))
    root = CID.for_dag_cbor(root_block)
    repo.rev = tid_from_datetime(datetime.now(UTC))
    commit, commit_block = repo.signed_commit(root, repo.rev)
    car = write_car([commit], {commit: commit_block, root: root_block, cid: block})
    assert _reason(car, repo.public_key) is ExportFailure.MALFORMED_TREE


def test_a_record_block_that_does_not_match_its_cid_fails_the_whole_export() -> None:
    repo = _repo()
    parts = repo.export_blocks()
    path = next(p for p in sorted(repo.records) if p.startswith("fm.plyr.track/"))
    parts.blocks[repo.records[path]] = block_of(ev.track("forged"))[1]
    assert _reason(car_of(parts), repo.public_key) is ExportFailure.RECORD_CID_MISMATCH
    # Out of scope, it is never read.
    parts = repo.export_blocks()
    post = next(p for p in sorted(repo.records) if p.startswith("app.bsky."))
    parts.blocks[repo.records[post]] = b"garbage"
    assert len(_export(car_of(parts), repo.public_key).records) == len(_in_scope(repo))


def _put_raw(repo: ExportableRepo, path: str, block: bytes) -> CID:
    cid = CID.for_dag_cbor(block)
    repo.records[path] = cid
    repo.record_blocks[cid] = block
    repo.data = mst.build(repo.records).root
    return cid


def test_missing_and_undecodable_records_are_skipped_reported_and_still_listed() -> None:
    repo = _repo()
    # Keys out of canonical order: not strict DAG-CBOR. A list: not a record.
    unordered = _put_raw(repo, "fm.plyr.track/3zzzzzzzzzzz2", b"\xa2\x61b\x01\x61a\x02")
    listed = _put_raw(repo, "fm.plyr.track/3zzzzzzzzzzz3", dagcbor.encode([1, 2]))
    # An rkey that is not a record key: not listed either.
    _put_raw(repo, "fm.plyr.track/bad key", dagcbor.encode({"a": 1}))
    parts = repo.export_blocks()
    gone = next(p for p in sorted(repo.records) if p.startswith("fm.plyr.like/"))
    del parts.blocks[repo.records[gone]]
    # Identical records share a block: each of them is missing.
    sharing = [p for p, c in repo.records.items() if c == repo.records[gone]]
    out = _export(car_of(parts), repo.public_key)

    reasons = {d.path: d.reason for d in out.drops}
    assert reasons == {
        **dict.fromkeys(sharing, DropReason.RECORD_MISSING),
        "fm.plyr.track/3zzzzzzzzzzz2": DropReason.RECORD_UNDECODABLE,
        "fm.plyr.track/3zzzzzzzzzzz3": DropReason.RECORD_UNDECODABLE,
        "fm.plyr.track/bad key": DropReason.INVALID_FIELD,
    }
    assert all(d.did == DID for d in out.drops)
    emitted = {f"{e.collection}/{e.rkey}" for e in out.records}
    listed_keys = {f"{k.collection}/{k.rkey}": k.cid for k in out.snapshot.records}
    assert gone not in emitted and gone in listed_keys
    assert listed_keys["fm.plyr.track/3zzzzzzzzzzz2"] == str(unordered)
    assert listed_keys["fm.plyr.track/3zzzzzzzzzzz3"] == str(listed)
    assert "fm.plyr.track/bad key" not in listed_keys
    assert len(emitted) == len(_in_scope(repo)) - len(sharing)


def test_cars_that_are_not_exports_are_refused() -> None:
    repo = _repo()
    parts = repo.export_blocks()
    assert _reason(b"not a car", repo.public_key) is ExportFailure.MALFORMED_CAR
    two_roots = write_car([parts.root, parts.data], parts.blocks)
    assert _reason(two_roots, repo.public_key) is ExportFailure.MALFORMED_CAR
    node_root = write_car([parts.data], parts.blocks)
    assert _reason(node_root, repo.public_key) is ExportFailure.MALFORMED_COMMIT
    without_commit = dict(parts.blocks)
    del without_commit[parts.root]
    assert _reason(write_car([parts.root], without_commit), repo.public_key) is ExportFailure.MALFORMED_COMMIT


def test_size_and_record_bounds() -> None:
    repo = _repo()
    car = repo.export_car()
    assert _reason(car, repo.public_key, limits=ExportLimits(max_bytes=len(car) - 1)) is ExportFailure.TOO_LARGE
    blocks = len(read_car(car).blocks)
    assert _reason(car, repo.public_key, limits=ExportLimits(max_blocks=blocks - 1)) is ExportFailure.TOO_LARGE
    n = len(_in_scope(repo))
    assert _reason(car, repo.public_key, limits=ExportLimits(max_records=n - 1)) is ExportFailure.TOO_MANY_RECORDS
    assert len(_export(car, repo.public_key, limits=ExportLimits(max_records=n)).records) == n


def test_bit_flips_are_refused_or_read_never_crash() -> None:
    repo = _repo(plyr=20, other=20)
    car = repo.export_car()
    rng = random.Random(7)
    outcomes: set[str] = set()
    for _ in range(400):
        flipped = bytearray(car)
        for _ in range(rng.randint(1, 3)):
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        try:
            out = _export(bytes(flipped), repo.public_key)
        except ExportError as err:
            outcomes.add(err.reason.value)
        else:
            # A flip in an out-of-scope record block, or one the tree never reads.
            assert all(isinstance(e, RecordEvent) for e in out.events[:-1])
            outcomes.add("read")
    assert len(outcomes) >= 3
