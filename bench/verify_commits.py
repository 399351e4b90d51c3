"""Verification benchmark: Sync 1.1 commit verification on one core, against decoding the same commits.

    python -m bench.verify_commits [--commits N] [--repos R] [--records M] [--p256-share F] [--rounds K]

Builds N in-scope ``#commit`` frames, interleaved over R repos of about M fm.plyr.* records each: 1-3
ops per commit (creates, updates, deletes), real MSTs, each op's covering proof in the CAR slice, and
real signatures (k256 keys, with a share F of the repos on p256). Then, in one process over the same
frames, the median of K rounds of:
- decode: what ingest does with an in-scope commit without verification: frame → typed message →
  CAR read;
- decode+verify: the same plus ``verify_commit`` against the state held for each repo (rev, data root),
  which advances commit by commit as it would in ingest; keys are parsed once per repo, as an identity
  cache would hold them.
The two paths' rounds alternate, so load from other jobs falls on both alike. Prints commits/s for
both and their ratio, and where the verification time goes (µs per commit:
signature check by curve, op inversion, commit block). Times are this process's CPU time, so another
job on a shared machine slows the run less than it would wall-clock figures; a reference line (a
fixed pure-Python loop) says how fast this core runs Python, and a line says whether the hot
modules (inversion, node_bytes, commit_bytes, car) ran compiled (mypyc) or as Python. The goal is
≥ 5,000 verified commits/s per core.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ingest.compiled import HOT_MODULES, compiled_modules
from ingest.frames import MessageFrame, decode_frame
from ingest.ipld.car import read_car
from ingest.ipld.cid import CID
from ingest.messages import Commit, parse_message
from ingest.verify.commit import RepoState, read_signed_commit, verify_commit
from ingest.verify.crypto import KeyAlgorithm, PublicKey
from ingest.verify.inversion import invert_ops
from tests.fixtures.corpus import rkey
from tests.fixtures.frames import Write, track_record
from tests.fixtures.signed_repo import SignedRepo, new_key

TRACK = "fm.plyr.track"


@dataclass
class Workload:
    """The frames, and for each repo its key and the state held before the first frame."""

    frames: list[bytes]
    keys: dict[str, PublicKey]
    initial: dict[str, RepoState]
    p256_repos: set[str]


def build(n: int, repos: int, records: int, p256_share: float, seed: int) -> Workload:
    rng = random.Random(seed)
    repo_list: list[SignedRepo] = []
    p256: set[str] = set()
    for i in range(repos):
        algorithm = KeyAlgorithm.P256 if i < round(repos * p256_share) else KeyAlgorithm.K256
        did = f"did:plc:bench{i:019d}"
        repo = SignedRepo(did, new_key(algorithm))
        size = rng.randint(records * 2 // 3, records * 4 // 3)
        repo.load({f"{TRACK}/{rkey(rng)}": track_record(f"t{j}") for j in range(size)})
        repo_list.append(repo)
        if algorithm is KeyAlgorithm.P256:
            p256.add(did)
    keys = {r.did: r.public_key for r in repo_list}
    initial = {r.did: r.state for r in repo_list}
    frames = []
    for i in range(n):
        repo = rng.choice(repo_list)
        existing = sorted(repo.records)
        writes: list[Write] = []
        touched: set[str] = set()
        for _ in range(rng.choice((1, 1, 2, 3))):
            roll = rng.random()
            path = rng.choice(existing)
            if path in touched:
                continue
            if roll < 0.6:
                path = f"{TRACK}/{rkey(rng)}"
                writes.append(Write("create", TRACK, path.split("/", 1)[1], track_record(f"c{i}")))
            elif roll < 0.85:
                writes.append(Write("update", TRACK, path.split("/", 1)[1], track_record(f"u{i}")))
            else:
                writes.append(Write("delete", TRACK, path.split("/", 1)[1]))
            touched.add(path)
        frames.append(repo.commit(writes))
    return Workload(frames, keys, initial, p256)


def _message(data: bytes) -> Commit:
    frame = decode_frame(data)
    assert isinstance(frame, MessageFrame)
    message = parse_message(frame)
    assert isinstance(message, Commit)
    return message


def decode(work: Workload) -> int:
    blocks = 0
    for data in work.frames:
        message = _message(data)
        blocks += len(read_car(message.blocks).blocks)
    return blocks


def decode_verify(work: Workload) -> int:
    now = datetime.now(UTC)
    state = dict(work.initial)
    keys = work.keys
    ops = 0
    for data in work.frames:
        message = _message(data)
        car = read_car(message.blocks)
        state[message.repo] = verify_commit(message, keys[message.repo], state[message.repo], now=now, car=car).state
        ops += len(message.ops)
    return ops


def measure(fns: list[Callable[[Workload], int]], work: Workload, rounds: int) -> list[float]:
    """The median commits/s of each function, their rounds interleaved so that a change in what else
    the machine runs falls on all of them alike."""
    rates: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, out in zip(fns, rates, strict=True):
            gc.collect()
            start = time.process_time()
            fn(work)
            out.append(len(work.frames) / (time.process_time() - start))
    return [statistics.median(r) for r in rates]


def breakdown(work: Workload) -> dict[str, float]:
    """µs per commit of the two costly steps, each timed alone over the same commits."""
    messages = [_message(f) for f in work.frames]
    cars = [read_car(m.blocks) for m in messages]
    signed = [read_signed_commit(car, CID(m.commit)) for m, car in zip(messages, cars, strict=True)]
    out: dict[str, float] = {}
    for algorithm in KeyAlgorithm:
        picked = [
            (work.keys[m.repo], s)
            for m, s in zip(messages, signed, strict=True)
            if (m.repo in work.p256_repos) == (algorithm is KeyAlgorithm.P256)
        ]
        if picked:
            start = time.process_time()
            for key, s in picked:
                assert key.check(s.unsigned, s.sig) is None
            out[f"signature check ({algorithm.name.lower()})"] = (time.process_time() - start) / len(picked) * 1e6
    start = time.process_time()
    for m, car, s in zip(messages, cars, signed, strict=True):
        invert_ops(s.data, m.ops, car.blocks)
    out["op inversion"] = (time.process_time() - start) / len(messages) * 1e6
    start = time.process_time()
    for m, car in zip(messages, cars, strict=True):
        read_signed_commit(car, CID(m.commit))
    out["commit block read + unsigned bytes"] = (time.process_time() - start) / len(messages) * 1e6
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--commits", type=int, default=2_000)
    p.add_argument("--repos", type=int, default=40)
    p.add_argument("--records", type=int, default=300)
    p.add_argument("--p256-share", type=float, default=0.2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    start = time.perf_counter()
    work = build(args.commits, args.repos, args.records, args.p256_share, args.seed)
    p256 = sum(1 for f in work.frames if _message(f).repo in work.p256_repos)
    ops = sum(len(_message(f).ops) for f in work.frames)
    size = statistics.mean(len(f) for f in work.frames)
    print(
        f"workload: {len(work.frames)} commits ({p256} p256-signed), {ops / len(work.frames):.2f} ops/commit, "
        f"mean frame {size:,.0f} bytes, {args.repos} repos of ~{args.records} records "
        f"(built in {time.perf_counter() - start:.0f} s); median of {args.rounds} rounds, one core"
    )
    # CPU time, like the figures below, so time spent waiting for the core is not counted.
    timer = timeit.Timer("sum(range(1000))", timer=time.process_time)
    reference = min(timer.repeat(number=2_000, repeat=5)) / 2_000 * 1e6
    print(f"python reference: sum(range(1000)) takes {reference:.1f} µs of CPU on this core")
    # Which code ran: the same sources run as Python (an editable install) or compiled (PLYR_MYPYC=1).
    built = [m.rsplit(".", 1)[1] for m in compiled_modules()]
    python = [m.rsplit(".", 1)[1] for m in HOT_MODULES if m.rsplit(".", 1)[1] not in built]
    parts = [f"compiled with mypyc: {', '.join(built)}"] if built else []
    parts += [f"Python: {', '.join(python)}"] if python else []
    print("verification code: " + "; ".join(parts))
    r_decode, r_verify = measure([decode, decode_verify], work, args.rounds)
    print(f"{'path':<36}{'commits/s':>12}{'µs/commit':>12}")
    print(f"{'decode (frame, message, CAR)':<36}{r_decode:>12,.0f}{1e6 / r_decode:>12,.1f}")
    print(f"{'decode + verify_commit':<36}{r_verify:>12,.0f}{1e6 / r_verify:>12,.1f}")
    cost = 1e6 / r_verify - 1e6 / r_decode
    print(f"ratio verified/decoded: {r_verify / r_decode:.2f}x (verification adds {cost:,.1f} µs per commit)")
    print("where verification time goes (µs per commit, each step timed alone):")
    for name, micros in breakdown(work).items():
        print(f"  {name:<34}{micros:>10,.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
