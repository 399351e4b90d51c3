"""The change log rules on fixtures: kinds, create vs update from the ledger, stale and never-live
events, list item diffs, purges; folded event by event as the store does, without a database."""

from __future__ import annotations

from typing import Any

from projector.fold import rows
from projector.fold.changes import Change, ChangeLog, Shown, items_added
from projector.fold.ledger import Decision, LedgerRow, RecordState, decide, next_row
from schemas.envelope import AccountEvent, Event, RecordEvent
from tests.fixtures import events as ev

A = "did:plc:artistaaaaaaaaaaaaaaaaaa"
B = "did:plc:listenerbbbbbbbbbbbbbbbb"
TRACK, LIKE, LIST, COMMENT, PROFILE = rows.TRACK, rows.LIKE, rows.LIST, rows.COMMENT, rows.PROFILE
T1, T2, T3, T4 = (f"at://{A}/{TRACK}/3t{i}aaaaaaaaaa" for i in range(1, 5))
CID = ev.cid_of(ev.track("x"))

_ROWS: dict[str, Any] = {
    TRACK: lambda r, c: rows.track(r, c),
    LIKE: lambda r, c: rows.like(r),
    COMMENT: lambda r, c: rows.comment(r),
    LIST: lambda r, c: rows.list_(r, c),
    PROFILE: lambda r, c: rows.profile(r),
}


def fold(
    events: list[Event],
    ledger: dict[str, LedgerRow] | None = None,
    views: dict[str, Shown] | None = None,
    invalid: frozenset[int] = frozenset(),
) -> list[Change]:
    """The changes of ``events`` against a ledger (uri → row) and what live records show."""
    ledger = dict(ledger or {})
    log = ChangeLog(dict(views or {}))
    for i, event in enumerate(events):
        if isinstance(event, AccountEvent):
            log.account(event)
            continue
        assert isinstance(event, RecordEvent)
        before = ledger.get(event.uri)
        decision = decide(event, before, valid=i not in invalid)
        if decision is Decision.STALE:
            continue
        ledger[event.uri] = next_row(event, decision)
        row = None
        if decision is Decision.UPSERT:
            assert event.record is not None
            row = _ROWS[event.collection](event.record, event.cid)
        log.record(event, before, decision, row)
    return log.changes


def kinds(changes: list[Change]) -> list[str]:
    return [c.kind.value for c in changes]


def album(name: str, items: list[str]) -> dict[str, Any]:
    return {**ev.playlist(name, [(u, CID) for u in items]), "listType": "album"}


def test_track_create_update_delete_and_rebirth() -> None:
    changes = fold(
        [
            ev.put(A, TRACK, "3t1aaaaaaaaaa", 1, ev.track("a")),
            ev.put(A, TRACK, "3t1aaaaaaaaaa", 2, ev.track("b"), create=False),
            ev.delete(A, TRACK, "3t1aaaaaaaaaa", 3),
            ev.put(A, TRACK, "3t1aaaaaaaaaa", 4, ev.track("again")),
        ]
    )
    assert kinds(changes) == ["track.created", "track.updated", "track.deleted", "track.created"]
    assert {(c.did, c.uri, c.subject_uri, c.detail) for c in changes} == {(A, T1, None, None)}


def test_create_vs_update_follows_the_ledger_not_the_action() -> None:
    # An "update" of a record the index never saw live creates it; a "create" of a live one updates it.
    live = {T1: LedgerRow(ev.rev(1), RecordState.LIVE, CID)}
    assert kinds(fold([ev.put(A, TRACK, "3t1aaaaaaaaaa", 2, ev.track("b"))], live)) == ["track.updated"]
    assert kinds(fold([ev.put(A, TRACK, "3t1aaaaaaaaaa", 2, ev.track("b"), create=False)])) == ["track.created"]
    dead = {T1: LedgerRow(ev.rev(1), RecordState.DELETED, None)}
    assert kinds(fold([ev.put(A, TRACK, "3t1aaaaaaaaaa", 2, ev.track("b"), create=False)], dead)) == ["track.created"]


def test_stale_and_never_live_events_log_nothing() -> None:
    changes = fold(
        [
            ev.put(A, TRACK, "3t1aaaaaaaaaa", 5, ev.track("final")),
            ev.put(A, TRACK, "3t1aaaaaaaaaa", 4, ev.track("older"), create=False),  # stale
            ev.put(A, TRACK, "3t1aaaaaaaaaa", 5, ev.track("final")),  # re-delivered
            ev.delete(A, TRACK, "3t2aaaaaaaaaa", 6),  # never live
            ev.delete(A, TRACK, "3t2aaaaaaaaaa", 7),  # still not live
            ev.put(A, TRACK, "3t3aaaaaaaaaa", 8, ev.track("gone")),
            ev.delete(A, TRACK, "3t3aaaaaaaaaa", 10),
            ev.put(A, TRACK, "3t3aaaaaaaaaa", 9, ev.track("gone")),  # late create after the delete
            ev.delete(A, LIKE, "3l1aaaaaaaaaa", 11),
            ev.delete(A, PROFILE, "self", 12),
        ]
    )
    assert [(c.kind.value, c.uri) for c in changes] == [
        ("track.created", T1),
        ("track.created", T3),
        ("track.deleted", T3),
    ]


def test_an_invalid_version_of_a_live_record_deletes_it() -> None:
    events: list[Event] = [
        ev.put(A, TRACK, "3t1aaaaaaaaaa", 1, ev.track("a")),
        ev.put(A, TRACK, "3t1aaaaaaaaaa", 2, ev.track("broken"), create=False),
        ev.put(A, TRACK, "3t2aaaaaaaaaa", 3, ev.track("broken from the start")),
    ]
    assert kinds(fold(events, invalid=frozenset({1, 2}))) == ["track.created", "track.deleted"]


def test_likes_carry_their_track_and_a_moved_like_is_a_delete_and_a_create() -> None:
    l1 = f"at://{B}/{LIKE}/3l1bbbbbbbbbb"
    changes = fold(
        [
            ev.put(B, LIKE, "3l1bbbbbbbbbb", 1, ev.like(T1, CID)),
            ev.put(B, LIKE, "3l1bbbbbbbbbb", 2, ev.like(T1, CID, created_at="2026-10-05T00:00:00Z"), create=False),
            ev.put(B, LIKE, "3l1bbbbbbbbbb", 3, ev.like(T2, CID), create=False),
            ev.delete(B, LIKE, "3l1bbbbbbbbbb", 4),
        ]
    )
    assert [(c.kind.value, c.did, c.uri, c.subject_uri) for c in changes] == [
        ("like.created", B, l1, T1),
        ("like.deleted", B, l1, T1),
        ("like.created", B, l1, T2),
        ("like.deleted", B, l1, T2),
    ]


def test_a_delete_takes_the_subject_from_what_the_read_models_showed_before_the_batch() -> None:
    l1, c1 = f"at://{B}/{LIKE}/3l1bbbbbbbbbb", f"at://{B}/{COMMENT}/3c1bbbbbbbbbb"
    ledger = {u: LedgerRow(ev.rev(1), RecordState.LIVE, CID) for u in (l1, c1)}
    views = {l1: Shown(subject_uri=T3), c1: Shown(subject_uri=T4)}
    changes = fold([ev.delete(B, LIKE, "3l1bbbbbbbbbb", 2), ev.delete(B, COMMENT, "3c1bbbbbbbbbb", 3)], ledger, views)
    assert [(c.kind.value, c.subject_uri) for c in changes] == [("like.deleted", T3), ("comment.deleted", T4)]


def test_comments() -> None:
    changes = fold(
        [
            ev.put(B, COMMENT, "3c1bbbbbbbbbb", 1, ev.comment(T1, CID, "first", 10)),
            ev.put(B, COMMENT, "3c1bbbbbbbbbb", 2, ev.comment(T1, CID, "edited", 10), create=False),
            ev.delete(B, COMMENT, "3c1bbbbbbbbbb", 3),
        ]
    )
    assert [(c.kind.value, c.subject_uri) for c in changes] == [
        ("comment.created", T1),
        ("comment.updated", T1),
        ("comment.deleted", T1),
    ]


def test_list_items_added_on_create_and_update() -> None:
    p1 = f"at://{A}/{LIST}/3p1aaaaaaaaaa"
    detail = {"listType": "album", "name": "LP"}
    changes = fold(
        [
            ev.put(A, LIST, "3p1aaaaaaaaaa", 1, album("LP", [T1, T2, T3])),
            ev.put(A, LIST, "3p1aaaaaaaaaa", 2, album("LP", [T3, T1, T2, T4]), create=False),
            ev.put(A, LIST, "3p1aaaaaaaaaa", 3, album("LP", [T4, T1]), create=False),  # removals add nothing
            ev.delete(A, LIST, "3p1aaaaaaaaaa", 4),
        ]
    )
    assert [(c.kind.value, c.subject_uri) for c in changes] == [
        ("list.created", None),
        ("list.item_added", T1),
        ("list.item_added", T2),
        ("list.item_added", T3),
        ("list.updated", None),
        ("list.item_added", T4),
        ("list.updated", None),
        ("list.deleted", None),
    ]
    assert all(c.uri == p1 and c.did == A and c.detail == detail for c in changes)


def test_list_diff_against_the_items_shown_before_the_batch() -> None:
    p1 = f"at://{A}/{LIST}/3p1aaaaaaaaaa"
    ledger = {p1: LedgerRow(ev.rev(1), RecordState.LIVE, CID)}
    views = {p1: Shown(list_type="playlist", name="old", items=(T1, T2))}
    changes = fold([ev.put(A, LIST, "3p1aaaaaaaaaa", 2, ev.playlist("new", [(T2, CID), (T3, CID)]))], ledger, views)
    assert [(c.kind.value, c.subject_uri, c.detail) for c in changes] == [
        ("list.updated", None, {"listType": "playlist", "name": "new"}),
        ("list.item_added", T3, {"listType": "playlist", "name": "new"}),
    ]
    deleted = fold([ev.delete(A, LIST, "3p1aaaaaaaaaa", 2)], ledger, views)
    assert [(c.kind.value, c.detail) for c in deleted] == [("list.deleted", {"listType": "playlist", "name": "old"})]


def test_items_added() -> None:
    assert items_added([], [T1, T2, T1]) == [T1, T2]
    assert items_added([T1, T2], [T2, T1]) == []
    assert items_added([T1], [T3, T1, T2, T3]) == [T3, T2]


def test_profile_and_account_status() -> None:
    profile = {"$type": PROFILE, "bio": "hi"}
    changes = fold(
        [
            ev.put(A, PROFILE, "self", 1, profile),
            ev.put(A, PROFILE, "self", 2, {**profile, "bio": "hello"}, create=False),
            ev.account(A, 3, False, "takendown"),
            ev.account(A, 4, True),
            ev.delete(A, PROFILE, "self", 5),
        ]
    )
    assert [(c.kind.value, c.did, c.uri, c.detail) for c in changes] == [
        ("profile.updated", A, None, None),
        ("profile.updated", A, None, None),
        ("account.status", A, None, {"active": False, "status": "takendown"}),
        ("account.status", A, None, {"active": True, "status": None}),
        ("profile.updated", A, None, None),
    ]


def test_account_status_is_logged_when_it_changes_only() -> None:
    log = ChangeLog(accounts={B: (False, "deactivated")})
    for event in [
        ev.account(A, 1, True),  # a repo never seen is active already
        ev.account(B, 2, False, "deactivated"),  # what the read models already hold
        ev.account(B, 3, True),
        ev.account(B, 4, True),  # the same event again (another upstream)
        ev.account(B, 5, False, "takendown"),
    ]:
        assert isinstance(event, AccountEvent)
        log.account(event)
    assert [(c.did, c.detail) for c in log.changes] == [
        (B, {"active": True, "status": None}),
        (B, {"active": False, "status": "takendown"}),
    ]


def test_a_purge_logs_only_its_status_and_forgets_what_the_repo_showed() -> None:
    log = ChangeLog()
    like = ev.put(B, LIKE, "3l1bbbbbbbbbb", 1, ev.like(T1, CID))
    assert isinstance(like, RecordEvent) and like.record is not None
    log.record(like, None, Decision.UPSERT, rows.like(like.record))
    log.account(AccountEvent(did=B, upstream="test", time=ev.T0, active=False, status="deleted"))
    assert kinds(log.changes) == ["like.created", "account.status"]
    assert log.views == {}
