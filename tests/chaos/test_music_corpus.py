"""The crash suite's ground truth: the corpus says what it claims, and the comparison sees every lost and
every doubled row (pure, no services)."""

from __future__ import annotations

from projector.validate import RecordValidator
from tests.fixtures.music_corpus import TRACK, compare, expected_state, music_corpus

CORPUS = music_corpus(150, repos=8, deleted_repos=2, seed=5)


def test_repos_have_distinct_dids() -> None:
    dids = {op.did for op in CORPUS.ops}
    assert len(dids) == 8
    assert all(len(did) == len("did:plc:") + 24 for did in dids)


def test_records_are_valid_exactly_where_the_corpus_says() -> None:
    validate = RecordValidator()
    for op in CORPUS.ops:
        if op.record is not None:
            assert (validate(op.collection, op.record) is None) == op.valid, op


def test_deleted_repos_keep_only_tombstones() -> None:
    want = expected_state(CORPUS)
    purged = {a.did for a in CORPUS.accounts if a.status == "deleted"}
    assert len(purged) == 2
    assert not [t for t in want["tracks"] if t[0].split("/")[2] in purged]
    assert all(r[4] == "deleted" for r in want["records"] if r[0] in purged)
    assert all(a[5:] == (0, 0, 0) and a[2] is None for a in want["artists"] if a[0] in purged)
    assert {r[1] for r in want["records"]} >= {TRACK}


def test_compare_sees_lost_doubled_and_changed_rows() -> None:
    want = expected_state(CORPUS)
    assert compare(want, want).count == 0
    got = {table: list(rows) for table, rows in want.items()}
    lost = got["likes"].pop()
    got["tracks"].append(got["tracks"][0])
    uri, cid, title, duration, likes, comments = got["tracks"][1]
    got["tracks"][1] = (uri, cid, title, duration, likes + 1, comments)
    diff = compare(got, want)
    assert diff.tables["likes"] == ([lost], [])
    missing, extra = diff.tables["tracks"]
    assert missing == [want["tracks"][1]]
    assert sorted(extra) == sorted([want["tracks"][0], got["tracks"][1]])
    assert diff.count == 4
