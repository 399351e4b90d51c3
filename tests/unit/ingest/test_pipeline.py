"""process_frame on real frames of every kind, and on broken ones."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from ingest.errors import DropReason
from ingest.ipld import dagcbor
from ingest.ipld.car import read_car, write_car
from ingest.ipld.cid import CID
from ingest.pipeline import FrameKind, process_frame
from schemas.envelope import AccountEvent, Action, IdentityEvent, RecordEvent, SyncEvent
from schemas.ids import CollectionFilter
from tests.fixtures.frames import (
    Repo,
    Write,
    account_frame,
    error_frame,
    frame,
    identity_frame,
    info_frame,
    message_frame,
    track_record,
)

PLYR = CollectionFilter.parse("fm.plyr.*")
DID = "did:plc:abcdefghijklmnopqrstuvwx"


def run(data: bytes, collections: CollectionFilter = PLYR) -> Any:
    return process_frame(data, upstream="relay.test", collections=collections)


def test_track_create_becomes_one_record_event_in_json_form() -> None:
    repo = Repo(DID)
    blob_cid = CID.for_raw(b"audio bytes")
    record = track_record(
        audioBlob={"$type": "blob", "ref": {"$link": str(blob_cid)}, "mimeType": "audio/mpeg", "size": 11},
        extraBytes={"$bytes": base64.b64encode(b"\x00\x01\xff").decode().rstrip("=")},
    )
    data = repo.commit([Write("create", "fm.plyr.track", "3kabc2xyz22a2", record)], seq=7)
    out = run(data)
    assert out.kind is FrameKind.COMMIT and out.seq == 7 and out.drops == []
    [event] = out.events
    assert isinstance(event, RecordEvent)
    assert (event.did, event.collection, event.rkey, event.action) == (
        DID,
        "fm.plyr.track",
        "3kabc2xyz22a2",
        Action.CREATE,
    )
    assert event.record == record  # links stay {"$link"}, bytes stay {"$bytes"}: exact JSON form
    assert event.record["audioBlob"]["ref"] == {"$link": str(blob_cid)}
    assert event.cid == str(CID.for_dag_cbor(dagcbor.encode(dagcbor.from_json(record))))
    assert event.rev == repo.rev and event.commit == str(repo.commit_cid) and event.seq == 7
    assert event.uri == f"at://{DID}/fm.plyr.track/3kabc2xyz22a2"


def test_update_carries_prev_and_delete_carries_no_record() -> None:
    repo = Repo(DID)
    repo.commit([Write("create", "fm.plyr.track", "3kabc2xyz22a2", track_record("one"))], seq=1)
    first_cid = repo.records["fm.plyr.track/3kabc2xyz22a2"][0]
    upd = run(repo.commit([Write("update", "fm.plyr.track", "3kabc2xyz22a2", track_record("two"))], seq=2))
    [event] = upd.events
    assert isinstance(event, RecordEvent)
    assert event.action is Action.UPDATE and event.prev == str(first_cid) and event.record is not None
    assert event.record["title"] == "two"
    dele = run(repo.commit([Write("delete", "fm.plyr.track", "3kabc2xyz22a2")], seq=3))
    [gone] = dele.events
    assert isinstance(gone, RecordEvent)
    assert gone.action is Action.DELETE and gone.record is None and gone.cid is None


def test_commits_outside_the_filter_produce_nothing_and_star_keeps_everything() -> None:
    repo = Repo(DID)
    data = repo.commit(
        [
            Write(
                "create",
                "app.bsky.feed.post",
                "3kabc2xyz22a2",
                {"$type": "app.bsky.feed.post", "text": "hi", "createdAt": "2026-01-01T00:00:00Z"},
            )
        ],
        seq=9,
    )
    out = run(data)
    assert out.kind is FrameKind.COMMIT and out.seq == 9 and out.events == [] and out.drops == []
    assert len(run(data, CollectionFilter.parse("*")).events) == 1
    assert len(run(data, CollectionFilter.parse("app.bsky.feed.*")).events) == 1


def test_mixed_commit_keeps_only_in_scope_ops() -> None:
    repo = Repo(DID)
    data = repo.commit(
        [
            Write("create", "app.bsky.feed.like", "3kabc2xyz22a2", {"$type": "app.bsky.feed.like"}),
            Write("create", "fm.plyr.like", "3kabc2xyz22a3", {"$type": "fm.plyr.like"}),
        ],
        seq=10,
    )
    assert [e.collection for e in run(data).events] == ["fm.plyr.like"]


def test_identity_account_sync_events() -> None:
    ident = run(identity_frame(DID, 11, "artist.test"))
    assert isinstance(ident.events[0], IdentityEvent) and ident.events[0].handle == "artist.test"
    acct = run(account_frame(DID, 12, False, "takendown"))
    assert isinstance(acct.events[0], AccountEvent)
    assert (acct.events[0].active, acct.events[0].status) == (False, "takendown")
    repo = Repo(DID)
    repo.commit([Write("create", "fm.plyr.track", "3kabc2xyz22a2", track_record())], seq=1)
    sync = run(repo.sync(13))
    [event] = sync.events
    assert isinstance(event, SyncEvent) and event.rev == repo.rev and sync.seq == 13


def test_info_error_and_unknown_frames() -> None:
    info = run(info_frame("OutdatedCursor", "too old"))
    assert info.kind is FrameKind.INFO and info.info is not None and info.info.name == "OutdatedCursor"
    err = run(error_frame("FutureCursor", "cursor in the future"))
    assert err.kind is FrameKind.ERROR and err.error is not None and err.error.error == "FutureCursor"
    unknown = run(message_frame("#brandNew", {"seq": 5}))
    assert unknown.kind is FrameKind.UNKNOWN and unknown.events == [] and unknown.drops == []
    assert run(frame({"op": 7}, {})).kind is FrameKind.UNKNOWN


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xff",
        b"garbage" * 10,
        dagcbor.encode({"op": 1, "t": "#commit"}),
        dagcbor.encode({"op": 1}) + dagcbor.encode({}) + dagcbor.encode({}),
        dagcbor.encode([1]) + dagcbor.encode({}),
    ],
)
def test_malformed_frames_are_drops_not_exceptions(data: bytes) -> None:
    out = run(data)
    assert out.kind is FrameKind.MALFORMED
    assert [d.reason for d in out.drops] == [DropReason.MALFORMED_FRAME]


def test_wrong_field_types_are_malformed_messages_with_their_seq() -> None:
    out = run(message_frame("#identity", {"seq": 44, "did": 12, "time": "2026-01-01T00:00:00Z"}))
    assert out.kind is FrameKind.MALFORMED and out.seq == 44
    assert out.drops[0].reason is DropReason.MALFORMED_MESSAGE


def test_invalid_did_is_an_invalid_field_drop() -> None:
    out = run(identity_frame("not-a-did", 3, "x.test"))
    assert out.events == [] and out.drops[0].reason is DropReason.INVALID_FIELD


def _tamper(data: bytes, fn: Any) -> bytes:
    header_len = len(dagcbor.encode({"op": 1, "t": "#commit"}))
    body = dagcbor.decode(data[header_len:])
    fn(body)
    return data[:header_len] + dagcbor.encode(body)


def test_record_block_that_does_not_match_its_cid_is_dropped_other_ops_survive() -> None:
    repo = Repo(DID)
    data = repo.commit(
        [
            Write("create", "fm.plyr.track", "3kabc2xyz22a2", track_record("a")),
            Write("create", "fm.plyr.track", "3kabc2xyz22a3", track_record("b")),
        ],
        seq=20,
    )
    victim = repo.records["fm.plyr.track/3kabc2xyz22a2"][0]

    def swap(body: dict[str, Any]) -> None:
        car = read_car(body["blocks"])
        blocks = dict(car.blocks)
        blocks[victim] = dagcbor.encode({"$type": "fm.plyr.track", "title": "forged"})
        body["blocks"] = write_car(list(car.roots), blocks)

    out = run(_tamper(data, swap))
    assert [d.reason for d in out.drops] == [DropReason.RECORD_CID_MISMATCH]
    assert [e.rkey for e in out.events] == ["3kabc2xyz22a3"]


def test_missing_record_block_and_broken_car() -> None:
    repo = Repo(DID)
    data = repo.commit([Write("create", "fm.plyr.track", "3kabc2xyz22a2", track_record())], seq=21)
    victim = repo.records["fm.plyr.track/3kabc2xyz22a2"][0]

    def remove(body: dict[str, Any]) -> None:
        car = read_car(body["blocks"])
        body["blocks"] = write_car(list(car.roots), {c: b for c, b in car.blocks.items() if c != victim})

    assert run(_tamper(data, remove)).drops[0].reason is DropReason.RECORD_MISSING

    def smash(body: dict[str, Any]) -> None:
        body["blocks"] = body["blocks"][:20]

    assert run(_tamper(data, smash)).drops[0].reason is DropReason.INVALID_CAR


def test_non_canonical_record_block_is_undecodable() -> None:
    repo = Repo(DID)
    data = repo.commit([Write("create", "fm.plyr.track", "3kabc2xyz22a2", track_record())], seq=22)
    # A map whose keys are out of canonical order: valid CBOR, not DAG-CBOR.
    bad = b"\xa2\x65title\x61x\x61a\x01"
    bad_cid = CID.for_dag_cbor(bad)

    def replace(body: dict[str, Any]) -> None:
        car = read_car(body["blocks"])
        blocks = dict(car.blocks)
        blocks[bad_cid] = bad
        body["blocks"] = write_car(list(car.roots), blocks)
        body["ops"][0]["cid"] = bad_cid

    out = run(_tamper(data, replace))
    assert [d.reason for d in out.drops] == [DropReason.RECORD_UNDECODABLE]
