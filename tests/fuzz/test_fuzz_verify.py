"""Fuzz the commit verifier (ingest/verify/commit.py) with real signed Sync 1.1 commits made to lie.

Three kinds of lie: the message's fields replaced (CAR bytes edited, ops, prevData, rev, repo, since,
the commit CID); the signed commit block replaced by any map under a CID that matches it; and, the
hardest, a repo that signs its lies: one MST node rewritten (tests/fuzz/trees.py), the tree re-linked
and a new commit over the new root signed with the repo's own key, so verification gets past the
signature and into the inversion. Verifiers start from no state, the honest state, or a wrong one.

Allowed outcomes: ``verify_commit`` / ``verify_sync`` give a VerifiedCommit or a VerifyError whose
reason is a VerifyFailure.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.ipld import dagcbor
from ingest.ipld.car import read_car, write_car
from ingest.ipld.cid import CID
from ingest.messages import Commit, RepoOp
from ingest.verify.commit import RepoState, VerifiedCommit, VerifyError, VerifyFailure, verify_commit, verify_sync
from ingest.verify.crypto import KeyAlgorithm
from tests.fixtures.signed_repo import new_key, public_key
from tests.fuzz import seeds
from tests.fuzz.harness import Refused, attempt, fuzz
from tests.fuzz.strategies import VALUES, mutate, random_cbor
from tests.fuzz.trees import mutant

pytestmark = pytest.mark.fuzz

# The seeds' revs are TIDs of when they were first built (cached, possibly minutes into a long run):
# checks run against the clock at the time, so a fuzzed commit fails for its lie, not for its age.
OTHER_KEY = public_key(new_key(KeyAlgorithm.P256))


def _check(message: Commit, case: seeds.SignedCase, rng: random.Random) -> None:
    state = rng.choice((RepoState(), case.state, case.state, RepoState("3zzzzzzzzzzzz", None)))
    key = case.key if rng.random() < 0.9 else OTHER_KEY
    out = attempt(
        "verify.verify_commit", (VerifyError,), lambda: verify_commit(message, key, state, now=datetime.now(UTC))
    )
    if isinstance(out, Refused):
        assert isinstance(out.error, VerifyError) and isinstance(out.error.reason, VerifyFailure)
    else:
        assert isinstance(out, VerifiedCommit)


def _cid_field(rng: random.Random, real: bytes | None) -> bytes | None:
    return rng.choice(
        (None, real, rng.randbytes(rng.randint(0, 40)), CID.for_dag_cbor(b"x").raw, (real or b"\x01")[:-1])
    )


def _lying_fields(case: seeds.SignedCase, rng: random.Random) -> Commit:
    m = case.message
    changes: dict[str, Any] = {}
    for _ in range(rng.randint(1, 3)):
        field = rng.choice(("blocks", "blocks", "blocks", "ops", "prev_data", "rev", "repo", "since", "commit"))
        if field == "blocks":
            changes["blocks"] = mutate(m.blocks, rng, rng.randint(1, 4), seeds.cars())
        elif field == "ops":
            ops = list(m.ops)
            if ops and rng.random() < 0.5:
                op = ops.pop(rng.randrange(len(ops)))
                if rng.random() < 0.7:
                    ops.append(
                        RepoOp(
                            rng.choice(("create", "update", "delete", "x")),
                            rng.choice((op.path, op.path + "0", "", "a/b")),
                            _cid_field(rng, op.cid),
                            _cid_field(rng, op.prev),
                        )
                    )
            else:
                ops += ops[:1]
            changes["ops"] = tuple(ops)
        elif field == "prev_data":
            changes["prev_data"] = _cid_field(rng, m.prev_data)
        elif field == "rev":
            changes["rev"] = rng.choice(("", "3zzzzzzzzzzzz", "2222222222222", m.rev[:-1], "\ud800" * 13))
        elif field == "repo":
            changes["repo"] = rng.choice(("", "did:plc:other", m.repo + "x"))
        elif field == "since":
            changes["since"] = rng.choice((None, "", m.rev))
        else:
            changes["commit"] = _cid_field(rng, m.commit) or b""
    return dataclasses.replace(m, **changes)


@fuzz(400)
@given(st.integers(0, 2**32))
def test_messages_with_lying_fields(seed: int) -> None:
    rng = random.Random(seed)
    case = rng.choice(seeds.signed_commits())
    _check(_lying_fields(case, rng), case, rng)


@fuzz(200)
@given(st.integers(0, 2**32), VALUES)
def test_any_value_as_the_commit_block(seed: int, value: Any) -> None:
    rng = random.Random(seed)
    case = rng.choice(seeds.signed_commits())
    car = read_car(case.message.blocks)
    if rng.random() < 0.5 and isinstance(value, dict):
        # A commit-shaped map with one field of any type.
        honest = dagcbor.decode(car.blocks[CID(case.message.commit)])
        value = {**honest, rng.choice(("did", "version", "data", "rev", "sig", "prev")): next(iter(value.values()), 0)}
    block = dagcbor.encode(value) if rng.random() < 0.8 else random_cbor(rng)
    cid = CID.for_dag_cbor(block)
    blocks = {cid: block, **{c: b for c, b in car.blocks.items() if c != CID(case.message.commit)}}
    message = dataclasses.replace(case.message, commit=cid.raw, blocks=write_car([cid], blocks))
    _check(message, case, rng)


@fuzz(300)
@given(st.integers(0, 2**32))
def test_a_repo_that_signs_a_lying_tree(seed: int) -> None:
    rng = random.Random(seed)
    case = rng.choice(seeds.signed_commits())
    m = case.message
    car = read_car(m.blocks)
    honest = dagcbor.decode(car.blocks[CID(m.commit)])
    root, blocks, _ = mutant(car.blocks, honest["data"], rng)
    commit_cid, commit_block = case.repo.signed_commit(root, m.rev)
    blocks = {commit_cid: commit_block, **{c: b for c, b in blocks.items() if c != CID(m.commit)}}
    message = dataclasses.replace(m, commit=commit_cid.raw, blocks=write_car([commit_cid], blocks))
    _check(message, case, rng)


@fuzz(200)
@given(st.integers(0, 2**32))
def test_syncs(seed: int) -> None:
    rng = random.Random(seed)
    sync, key = rng.choice(seeds.signed_syncs())
    changes: dict[str, Any] = {}
    if rng.random() < 0.6:
        changes["blocks"] = mutate(sync.blocks, rng, rng.randint(1, 4), seeds.cars())
    if rng.random() < 0.3:
        changes["rev"] = rng.choice(("", "3zzzzzzzzzzzz", sync.rev[:-1]))
    if rng.random() < 0.2:
        changes["did"] = "did:plc:other"
    state = rng.choice((RepoState(), RepoState("3zzzzzzzzzzzz", None)))
    key = key if rng.random() < 0.8 else OTHER_KEY
    out = attempt(
        "verify.verify_sync",
        (VerifyError,),
        lambda: verify_sync(dataclasses.replace(sync, **changes), key, state, now=datetime.now(UTC)),
    )
    assert isinstance(out, Refused | VerifiedCommit)


def test_honest_seeds_verify() -> None:
    # The fuzzers above start from commits that pass: a lie is then the only reason one fails.
    for case in seeds.signed_commits():
        assert isinstance(verify_commit(case.message, case.key, case.state, now=datetime.now(UTC)), VerifiedCommit)
