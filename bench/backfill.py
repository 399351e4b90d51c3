"""Backfill benchmark: repo exports (getRepo CARs) → verified events, on one core, in one process.

    python -m bench.backfill [--repos N] [--plyr A-B] [--other A-B] [--p256-share F] [--rounds K] [--save DIR]

Builds N repo exports of realistic size: A-B fm.plyr.* records each (tracks, likes, comments, lists,
a profile) among A-B app.bsky.* records (posts, likes, follows), real MSTs, each export's commit
signed (k256, a share F of the repos on p256). Then, over the same CAR bytes, the median of K rounds of:
- export: what the backfill worker does with a fetched CAR (:func:`ingest.repo_export.export_repo`):
  read the CAR, check the commit and its signature, walk the whole MST (every node hashed, canonical
  shape), hash-check and decode every in-scope record to atproto JSON, build the record events and
  the snapshot;
- the same steps one by one (µs per repo), to say where the time goes;
- baseline, if the atproto SDK is installed: ``atproto_core.car.CAR.from_bytes`` on the same bytes,
  which decodes every block with libipld (Rust) and checks nothing: no hashes, no signature, no tree,
  and links and byte strings come out alike.
Prints repos/min and records/s for each and the ratio. Times are this process's CPU time (a shared
machine slows the run less than wall clock would); the network and the broker are not measured.
``--save DIR`` also writes the CARs and a manifest (DID, signing key) for ``plyr-index backfill --from-car``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ingest.ipld import dagcbor
from ingest.ipld.car import read_car
from ingest.repo_export import ExportLimits, export_repo
from ingest.verify import mst
from ingest.verify.commit import read_signed_commit
from ingest.verify.crypto import KeyAlgorithm, PublicKey
from schemas.envelope import Action, RecordEvent, SnapshotKey, Source
from schemas.ids import CollectionFilter
from tests.fixtures.repo_export import ExportableRepo, mixed_records
from tests.fixtures.signed_repo import new_key

PLYR = CollectionFilter.parse("fm.plyr.*")


@dataclass
class Export:
    """One repo's export and what verifying it needs."""

    did: str
    key: PublicKey
    car: bytes
    plyr: int


def _span(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def build(n: int, plyr: tuple[int, int], other: tuple[int, int], p256_share: float, seed: int) -> list[Export]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        algorithm = KeyAlgorithm.P256 if i < round(n * p256_share) else KeyAlgorithm.K256
        repo = ExportableRepo(f"did:plc:bench{i:019d}", new_key(algorithm))
        records = mixed_records(repo.did, rng.randint(*plyr), rng.randint(*other), seed=seed + i)
        repo.load(records)
        in_scope = sum(p.startswith("fm.plyr.") for p in records)
        out.append(Export(repo.did, repo.public_key, repo.export_car(), in_scope))
    return out


def cpu(fn: Callable[[], object], rounds: int) -> float:
    """Median CPU seconds of ``fn`` over ``rounds`` (garbage collection as in a long-running worker)."""
    times = []
    for _ in range(rounds):
        gc.collect()
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def run_export(exports: list[Export]) -> None:
    now = datetime.now(UTC)
    limits = ExportLimits()
    for e in exports:
        export_repo(
            e.car, e.did, e.key, collections=PLYR, source=Source.BACKFILL, upstream="bench", now=now, limits=limits
        )


def stages(exports: list[Export], rounds: int) -> dict[str, float]:
    """CPU seconds of each step of an export, over all repos."""
    cars = [read_car(e.car) for e in exports]
    commits = [read_signed_commit(c, c.roots[0]) for c in cars]
    walks = [list(mst.walk(s.data, c.blocks)) for s, c in zip(commits, cars, strict=True)]
    scoped = [[(k, v) for k, v in w if PLYR.matches(k.partition("/")[0])] for w in walks]
    decoded = [
        [(k, v, dagcbor.to_json(dagcbor.decode(c.blocks[v]))) for k, v in s] for s, c in zip(scoped, cars, strict=True)
    ]
    now = datetime.now(UTC)

    def hash_and_decode() -> None:
        for s, c in zip(scoped, cars, strict=True):
            for _, v in s:
                block = c.blocks[v]
                v.matches(block)
                dagcbor.to_json(dagcbor.decode(block))

    def events() -> None:
        for d, s in zip(decoded, commits, strict=True):
            for k, v, record in d:
                collection, _, rkey = k.partition("/")
                SnapshotKey(collection=collection, rkey=rkey, cid=str(v))
                RecordEvent(
                    did="did:plc:bench0000000000000000000",
                    upstream="bench",
                    time=now,
                    source=Source.BACKFILL,
                    rev=s.rev,
                    commit="bafyreib2rxk3rybk3aobmv5cjuql3bm2twh4jo5uxjmxgrf5uqrnpdsjy4",
                    collection=collection,
                    rkey=rkey,
                    action=Action.CREATE,
                    cid=str(v),
                    record=record,
                )

    return {
        "read CAR (split into blocks)": cpu(lambda: [read_car(e.car) for e in exports], rounds),
        "commit + signature": cpu(
            lambda: [
                e.key.check(s.unsigned, s.sig)
                for e, s in zip(exports, [read_signed_commit(c, c.roots[0]) for c in cars], strict=True)
            ],
            rounds,
        ),
        "MST walk (every node hashed)": cpu(
            lambda: [list(mst.walk(s.data, c.blocks)) for s, c in zip(commits, cars, strict=True)], rounds
        ),
        "records: hash + decode + JSON": cpu(hash_and_decode, rounds),
        "events (envelopes, snapshot keys)": cpu(events, rounds),
    }


def sdk_parse(exports: list[Export]) -> Callable[[], None] | None:
    try:
        from atproto_core.car import CAR
    except ImportError:
        return None

    def parse() -> None:
        for e in exports:
            CAR.from_bytes(e.car)

    return parse


def save(exports: list[Export], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = []
    for i, e in enumerate(exports):
        name = f"repo{i:04d}.car"
        (folder / name).write_bytes(e.car)
        manifest.append({"file": name, "did": e.did, "signingKey": e.key.multibase()})
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repos", type=int, default=40)
    p.add_argument("--plyr", default="150-350", help="fm.plyr.* records per repo (A-B)")
    p.add_argument("--other", default="100-300", help="app.bsky.* records per repo (A-B)")
    p.add_argument("--p256-share", type=float, default=0.25)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--save", type=Path, metavar="DIR")
    args = p.parse_args()

    exports = build(args.repos, _span(args.plyr), _span(args.other), args.p256_share, args.seed)
    if args.save:
        save(exports, args.save)
    n = len(exports)
    records = sum(e.plyr for e in exports)
    size = sum(len(e.car) for e in exports)
    print(
        f"{n} repo exports: {size / n / 1024:.0f} KB and {records / n:.0f} fm.plyr.* records each on average"
        f" ({size / 1024 / 1024:.1f} MB in all); median CPU time of {args.rounds} rounds, one core"
    )
    t_export = cpu(lambda: run_export(exports), args.rounds)
    rows = [("export (verify + walk + decode + events)", t_export)]
    parse = sdk_parse(exports)
    t_sdk = cpu(parse, args.rounds) if parse is not None else None
    if t_sdk is not None:
        rows.append(("baseline: atproto_core CAR.from_bytes (decode only)", t_sdk))
    width = max(len(name) for name, _ in rows)
    for name, t in rows:
        rate = f"{n / t * 60:>9,.0f} repos/min  {records / t:>9,.0f} records/s  {size / t / 1e6:>6.1f} MB/s"
        print(f"  {name:<{width}}  {rate}")
    if t_sdk is not None:
        print(f"  ratio export / SDK decode: {t_export / t_sdk:.2f}x the CPU time")
    else:
        print("  (the atproto SDK is not installed: no baseline)")
    print("where the export's time goes (µs per repo):")
    for name, t in stages(exports, args.rounds).items():
        print(f"  {name:<36} {t / n * 1e6:>9,.0f}")


if __name__ == "__main__":
    main()
