"""Sync 1.1 verification of one ``#commit`` or ``#sync`` (atproto.com/specs/sync, /specs/repository#commit-objects).

Owns :func:`verify_commit` and :func:`verify_sync`: from a typed message, the repo's signing key and
what we hold for the repo (:class:`RepoState`), either a :class:`VerifiedCommit` (the new rev and
data root to hold from now on) or a :class:`VerifyError` whose ``reason`` is a :class:`VerifyFailure`.
Nothing here does I/O or reads the clock: the caller resolves the key, loads the state and passes
``now``.

What a commit must show, cheapest first so a redelivered or forged frame costs little:
1. its signed commit object is in its CAR slice under the frame's ``commit`` CID, hashes to it, and is
   a version 3 commit of the frame's repo with the frame's rev;
2. the rev is newer than the one we hold and not further in the future than the clock skew allows;
3. the signature over the unsigned commit (its DAG-CBOR without ``sig``) verifies against the key;
4. ``prevData`` is the data root we hold (when we hold one): otherwise commits were missed and the
   repo needs a resync, even if this one is honest;
5. undoing the ops on the slice's partial MST (:mod:`ingest.verify.inversion`) gives ``prevData``,
   so the ops are exactly the change between the two signed roots.
A repo's first commit (``since`` null) may omit ``prevData``; its ops must then undo to the empty tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from ingest.ipld import dagcbor
from ingest.ipld.car import CarError, CarFile, read_car
from ingest.ipld.cid import CID, CIDError
from ingest.messages import Commit, Sync
from ingest.verify import mst
from ingest.verify.commit_bytes import read_canonical_commit
from ingest.verify.crypto import PublicKey
from ingest.verify.inversion import InversionError, InversionFailure, invert_ops
from schemas.ids import is_tid, tid_to_datetime

DEFAULT_CLOCK_SKEW: Final = timedelta(minutes=5)
COMMIT_VERSION: Final = 3
EMPTY_TREE: Final = mst.build({}).root


class VerifyFailure(StrEnum):
    """Why a commit or sync was not accepted; a closed set, for metrics and dead letters."""

    MALFORMED_COMMIT = "malformed_commit"  # CAR unreadable; commit block absent, not hashing, not a commit; rev differs
    UNSUPPORTED_VERSION = "unsupported_version"  # a commit version other than 3
    WRONG_DID = "wrong_did"  # the signed commit is another repo's
    STALE_REV = "stale_rev"  # rev not newer than the one we hold (redelivery, replay)
    FUTURE_REV = "future_rev"  # rev further ahead of our clock than the skew allows
    BAD_SIGNATURE = "bad_signature"  # does not verify against the key: wrong key, high-S, malformed, forged
    MISSING_PREV_DATA = "missing_prev_data"  # no prevData on a commit that is not the repo's first (pre-Sync 1.1)
    PREV_DATA_MISMATCH = "prev_data_mismatch"  # prevData is not the data root we hold: commits missed, resync
    INVALID_OPS = "invalid_ops"  # an op with an unknown action, cid/prev against its action, a path twice
    OP_MISMATCH = "op_mismatch"  # the signed tree does not hold what an op says
    INCOMPLETE_PROOF = "incomplete_proof"  # the slice lacks an MST node that undoing the ops needs
    MALFORMED_PROOF = "malformed_proof"  # an MST node of the slice is not a canonical node
    INVERSION_MISMATCH = "inversion_mismatch"  # the ops undone do not give prevData: they are not the whole change


_FROM_INVERSION: Final = {
    InversionFailure.INVALID_OP: VerifyFailure.INVALID_OPS,
    InversionFailure.OP_MISMATCH: VerifyFailure.OP_MISMATCH,
    InversionFailure.MISSING_BLOCK: VerifyFailure.INCOMPLETE_PROOF,
    InversionFailure.MALFORMED_NODE: VerifyFailure.MALFORMED_PROOF,
}


class VerifyError(ValueError):
    """The message failed verification; ``reason`` says which rule, ``detail`` how."""

    def __init__(self, reason: VerifyFailure, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class RepoState:
    """What we hold for a repo: the rev and data root of the last commit accepted (None: not known)."""

    rev: str | None = None
    data: CID | None = None


@dataclass(frozen=True, slots=True)
class VerifiedCommit:
    """A commit (or sync) that passed: the rev and data root to hold for the repo from now on."""

    rev: str
    data: CID
    commit: CID

    @property
    def state(self) -> RepoState:
        """The repo state after this commit."""
        return RepoState(self.rev, self.data)


@dataclass(frozen=True, slots=True)
class SignedCommit:
    """A v3 commit object as read from its block, with the bytes its signature covers."""

    did: str
    version: int
    data: CID
    rev: str
    prev: CID | None
    sig: bytes
    unsigned: bytes


def read_signed_commit(car: CarFile, cid: CID) -> SignedCommit:
    """The commit object under ``cid`` in ``car``, checked against its CID and for its shape."""
    try:
        block = car.get_verified(cid)
    except CarError as err:
        raise VerifyError(VerifyFailure.MALFORMED_COMMIT, str(err)) from err
    if block is None:
        raise VerifyError(VerifyFailure.MALFORMED_COMMIT, f"commit block {cid} is not in the CAR")
    fields = read_canonical_commit(block)
    if fields is not None:
        # The canonical v3 layout, read and proved in one step; only the TID syntax is left.
        if not is_tid(fields.rev):
            raise VerifyError(VerifyFailure.MALFORMED_COMMIT, f"commit rev {fields.rev[:20]!r} is not a TID")
        return SignedCommit(
            fields.did, COMMIT_VERSION, fields.data, fields.rev, fields.prev, fields.sig, fields.unsigned
        )
    try:
        obj = dagcbor.decode(block)
    except dagcbor.DagCborError as err:
        raise VerifyError(VerifyFailure.MALFORMED_COMMIT, f"commit block: {err}") from err
    if type(obj) is not dict:
        raise VerifyError(VerifyFailure.MALFORMED_COMMIT, "the commit is not a map")
    did, version, data, rev, sig = (obj.get(k) for k in ("did", "version", "data", "rev", "sig"))
    prev = obj.get("prev")
    if type(version) is not int:
        raise VerifyError(VerifyFailure.MALFORMED_COMMIT, "commit version is not an integer")
    if version != COMMIT_VERSION:
        raise VerifyError(VerifyFailure.UNSUPPORTED_VERSION, f"commit version {version}")
    if type(did) is not str or type(rev) is not str or type(data) is not CID or type(sig) is not bytes:
        raise VerifyError(VerifyFailure.MALFORMED_COMMIT, "commit did, rev, data, sig are not str, str, link, bytes")
    if prev is not None and type(prev) is not CID:
        raise VerifyError(VerifyFailure.MALFORMED_COMMIT, "commit prev is not a link or null")
    if not is_tid(rev):
        raise VerifyError(VerifyFailure.MALFORMED_COMMIT, f"commit rev {rev[:20]!r} is not a TID")
    return SignedCommit(did, version, data, rev, prev, sig, _unsigned_bytes(block, obj, sig))


def _unsigned_bytes(block: bytes, obj: dict[str, Any], sig: bytes) -> bytes:
    """The DAG-CBOR of the commit without ``sig``: every other field is signed, whatever they are.

    The strict decoder accepted ``block``, so it is canonical: the ``sig`` entry is one contiguous run
    of bytes and the map's head one byte (fewer than 24 entries). Cutting that run out and counting
    one entry less gives the unsigned bytes without encoding again (≈1 µs against ≈15 µs). If the run
    is not found exactly once (the signature's bytes also inside another field), encode instead.
    """
    entry = b"\x63sig" + dagcbor.encode(sig)
    start = block.find(entry)
    if 0xA1 <= block[0] <= 0xB7 and start > 0 and block.find(entry, start + 1) == -1:
        return bytes((block[0] - 1,)) + block[1:start] + block[start + len(entry) :]
    return dagcbor.encode({k: v for k, v in obj.items() if k != "sig"})


def _read_car(blocks: bytes, car: CarFile | None) -> CarFile:
    if car is not None:
        return car
    try:
        return read_car(blocks)
    except CarError as err:
        raise VerifyError(VerifyFailure.MALFORMED_COMMIT, f"blocks: {err}") from err


def _check_signed(
    signed: SignedCommit,
    *,
    did: str,
    rev: str,
    key: PublicKey,
    state: RepoState,
    now: datetime,
    max_clock_skew: timedelta,
) -> None:
    """Rules 1-3: the commit is the frame's repo and rev, newer than ours, not from the future, signed."""
    if signed.did != did:
        raise VerifyError(VerifyFailure.WRONG_DID, f"commit of {signed.did[:80]!r} in a message for {did[:80]!r}")
    if signed.rev != rev:
        raise VerifyError(VerifyFailure.MALFORMED_COMMIT, f"message rev {rev[:20]!r} is not the commit's {signed.rev}")
    # TIDs sort as strings in time order.
    if state.rev is not None and signed.rev <= state.rev:
        raise VerifyError(VerifyFailure.STALE_REV, f"rev {signed.rev} is not newer than {state.rev}")
    if tid_to_datetime(signed.rev) > now + max_clock_skew:
        raise VerifyError(VerifyFailure.FUTURE_REV, f"rev {signed.rev} is ahead of {now.isoformat()}")
    fault = key.check(signed.unsigned, signed.sig)
    if fault is not None:
        raise VerifyError(VerifyFailure.BAD_SIGNATURE, f"{fault} signature for key {key.did_key()}")


def _cid(raw: bytes, what: str) -> CID:
    try:
        return CID(raw)
    except CIDError as err:
        raise VerifyError(VerifyFailure.MALFORMED_COMMIT, f"{what} is not a CID: {err}") from err


def verify_commit(
    message: Commit,
    key: PublicKey,
    state: RepoState,
    *,
    now: datetime,
    car: CarFile | None = None,
    max_clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
) -> VerifiedCommit:
    """Verify one ``#commit`` (see the module docstring); VerifyError if it fails.

    ``key`` is the repo's current signing key, ``state`` what we hold for the repo, ``now`` an aware
    datetime; ``car`` is the message's blocks if the caller has read them already.
    """
    car = _read_car(message.blocks, car)
    commit_cid = _cid(message.commit, "the message's commit")
    signed = read_signed_commit(car, commit_cid)
    _check_signed(
        signed, did=message.repo, rev=message.rev, key=key, state=state, now=now, max_clock_skew=max_clock_skew
    )
    if message.prev_data is not None:
        prev_data = _cid(message.prev_data, "prevData")
    elif message.since is None:
        prev_data = EMPTY_TREE
    else:
        raise VerifyError(VerifyFailure.MISSING_PREV_DATA, f"commit since {message.since[:20]!r} without prevData")
    if state.data is not None and prev_data != state.data:
        raise VerifyError(VerifyFailure.PREV_DATA_MISMATCH, f"prevData {prev_data} is not the held {state.data}")
    try:
        inverted = invert_ops(signed.data, message.ops, car.blocks)
    except InversionError as err:
        raise VerifyError(_FROM_INVERSION[err.reason], str(err)) from err
    if inverted != prev_data:
        raise VerifyError(VerifyFailure.INVERSION_MISMATCH, f"ops undone give {inverted}, not prevData {prev_data}")
    return VerifiedCommit(signed.rev, signed.data, commit_cid)


def verify_sync(
    message: Sync,
    key: PublicKey,
    state: RepoState,
    *,
    now: datetime,
    car: CarFile | None = None,
    max_clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
) -> VerifiedCommit:
    """Verify one ``#sync``: its CAR's root is a signed commit of the repo, newer than ours; VerifyError if not.

    A sync declares the repo's current commit without a diff, so there is nothing to invert: the caller
    holds the new rev and data root, and resyncs the repo if the data root is not the one it held.
    """
    car = _read_car(message.blocks, car)
    if len(car.roots) != 1:
        raise VerifyError(VerifyFailure.MALFORMED_COMMIT, f"a sync CAR must have one root, not {len(car.roots)}")
    signed = read_signed_commit(car, car.roots[0])
    _check_signed(
        signed, did=message.did, rev=message.rev, key=key, state=state, now=now, max_clock_skew=max_clock_skew
    )
    return VerifiedCommit(signed.rev, signed.data, car.roots[0])
