"""Fuzz the MST walker (ingest/verify/mst.py) and the Sync 1.1 op inverter (ingest/verify/inversion.py).

Trees come from :mod:`tests.fuzz.trees`: one node of a real tree rewritten, every node above it
re-linked, so each link hashes right. The inverter gets the real ops of real Sync 1.1 commits over
such trees, and random ops over real ones.

Allowed outcomes: ``decode_node`` a Node or MstError; ``walk`` the entries or MstError;
``invert_ops`` a CID or InversionError (with an InversionFailure reason).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.ipld.car import read_car
from ingest.ipld.cid import CID
from ingest.messages import RepoOp
from ingest.verify import mst
from ingest.verify.commit import read_signed_commit
from ingest.verify.inversion import InversionError, InversionFailure, invert_ops
from tests.fuzz import seeds
from tests.fuzz.harness import Refused, attempt, fuzz
from tests.fuzz.strategies import DEEP
from tests.fuzz.trees import mutant

pytestmark = pytest.mark.fuzz


@cache
def _tree() -> mst.MstTree:
    """A real tree of 400 keys (four layers or so)."""
    value = CID.for_dag_cbor(b"record")
    return mst.build({f"fm.plyr.track/3k{i:011d}": value for i in range(400)})


@cache
def _slices() -> tuple[tuple[CID, tuple[RepoOp, ...], dict[CID, bytes]], ...]:
    """(signed data root, ops, CAR blocks) of each seed commit."""
    out = []
    for case in seeds.signed_commits():
        car = read_car(case.message.blocks)
        signed = read_signed_commit(car, CID(case.message.commit))
        out.append((signed.data, case.message.ops, car.blocks))
    return tuple(out)


@fuzz(200)
@given(st.integers(0, 2**32))
def test_mst_walk_over_a_rewritten_node(seed: int) -> None:
    rng = random.Random(seed)
    tree = _tree()
    root, blocks, data = mutant(tree.blocks, tree.root, rng)
    attempt("mst.decode_node", (mst.MstError,), mst.decode_node, data)
    attempt("mst.walk", (mst.MstError,), lambda: list(mst.walk(root, blocks)))


@fuzz(60)
@given(DEEP | st.binary(max_size=64))
def test_mst_decode_any_bytes(data: bytes) -> None:
    attempt("mst.decode_node", (mst.MstError,), mst.decode_node, data)
    root = CID.for_dag_cbor(data)
    attempt("mst.walk", (mst.MstError,), lambda: list(mst.walk(root, {root: data})))


def _invert(root: CID, ops: tuple[RepoOp, ...], blocks: Mapping[CID, bytes]) -> None:
    out = attempt("inversion.invert_ops", (InversionError,), invert_ops, root, ops, blocks)
    if isinstance(out, Refused):
        assert isinstance(out.error, InversionError) and isinstance(out.error.reason, InversionFailure)
    else:
        assert type(out) is CID


@fuzz(400)
@given(st.integers(0, 2**32))
def test_inversion_real_ops_over_a_rewritten_slice(seed: int) -> None:
    rng = random.Random(seed)
    data_root, ops, blocks = rng.choice(_slices())
    root, lying, _ = mutant(blocks, data_root, rng)
    _invert(root, ops, lying)


def _random_op(rng: random.Random, paths: list[str], cids: list[bytes]) -> RepoOp:
    path = rng.choice(
        (rng.choice(paths), rng.choice(paths), rng.choice(paths) + "x", "", "fm.plyr.track/\ud800", "a" * 300)
    )
    if rng.random() < 0.75:
        # Well formed: the op's cid/prev as its action wants them, pointing at real CIDs.
        action = rng.choice(("create", "update", "delete"))
        cid = rng.choice(cids) if action != "delete" else None
        prev = rng.choice(cids) if action != "create" else None
        return RepoOp(action, path, cid, prev)

    def any_cid() -> bytes | None:
        return rng.choice((None, rng.choice(cids), rng.randbytes(rng.randint(0, 40)), CID.for_raw(b"x").raw))

    return RepoOp(rng.choice(("create", "update", "delete", "Create", "")), path, any_cid(), any_cid())


@fuzz(400)
@given(st.integers(0, 2**32))
def test_inversion_random_ops_over_real_slices(seed: int) -> None:
    rng = random.Random(seed)
    data_root, real_ops, blocks = rng.choice(_slices())
    paths = [op.path for op in real_ops] + ["fm.plyr.track/3000000000001", "fm.plyr.track/3zzz"]
    cids = [c.raw for c in blocks] + [c for op in real_ops for c in (op.cid, op.prev) if c is not None]
    ops = list(real_ops) if rng.random() < 0.5 else []
    for _ in range(rng.randint(1, 4)):
        ops.append(_random_op(rng, paths, cids))
    rng.shuffle(ops)
    _invert(data_root, tuple(ops), blocks)
