"""A capture that resembles the relay firehose, for the ingest benchmarks.

- ≥99% of commits touch other collections (posts, likes, reposts, follows), ~0.5% touch fm.plyr.*,
  and ~0.3% of frames are #identity / #account.
- Each commit's CAR slice carries the signed commit (real k256 signature), the record, and the Sync 1.1
  covering proof of the written key (the MST path plus its neighbours' chains) in a repo of tens of
  thousands of records, which puts the mean frame near the ~5.5 KB real relay frames average.

Built once and cached under bench/.cache (a zstd capture file, the same format ``plyr-index
capture`` writes).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from ingest.capture import read_frames, write_frames
from ingest.ipld import dagcbor
from ingest.ipld.car import write_car
from ingest.ipld.cid import CID
from ingest.verify import mst
from tests.fixtures.corpus import rkey
from tests.fixtures.frames import (
    account_frame,
    identity_frame,
    message_frame,
    next_tid,
    sign_k256,
    track_record,
)

CACHE = Path(__file__).resolve().parent / ".cache"
OTHER = ["app.bsky.feed.post", "app.bsky.feed.like", "app.bsky.feed.repost", "app.bsky.graph.follow"]


def _record(rng: random.Random, collection: str, did: str) -> dict[str, Any]:
    now = "2026-11-25T06:00:00.000Z"
    if collection == "app.bsky.feed.post":
        words = " ".join(
            rng.choice(["music", "night", "drive", "the", "a", "loop", "sound", "today"])
            for _ in range(rng.randint(5, 40))
        )
        return {"$type": collection, "text": words, "langs": ["en"], "createdAt": now}
    if collection == "app.bsky.graph.follow":
        return {"$type": collection, "subject": did, "createdAt": now}
    subject = {
        "uri": f"at://{did}/app.bsky.feed.post/{rkey(rng)}",
        "cid": "bafyreie5cvv4h45feadgeuwhbcutmh6t2ceseocckahdoe6uat64zmz454",
    }
    return {"$type": collection, "subject": subject, "createdAt": now}


def build(n_frames: int, *, seed: int = 42, repos: int = 6, records_per_repo: int = 20_000) -> list[bytes]:
    """``n_frames`` frames of the mix described above."""
    from cryptography.hazmat.primitives.asymmetric import ec

    rng = random.Random(seed)
    leaf = CID.for_dag_cbor(dagcbor.encode({"x": 1}))
    trees = []
    for i in range(repos):
        entries = {f"{rng.choice(OTHER)}/{rkey(rng)}": leaf for _ in range(records_per_repo)}
        trees.append(
            (
                f"did:plc:bench{i:019d}",
                mst.build(entries),
                ec.generate_private_key(ec.SECP256K1()),
            )
        )
    frames: list[bytes] = []
    for seq in range(1, n_frames + 1):
        did, tree, key = trees[rng.randrange(repos)]
        roll = rng.random()
        if roll < 0.002:
            frames.append(identity_frame(did, seq, f"user{seq}.test"))
            continue
        if roll < 0.003:
            frames.append(account_frame(did, seq, True))
            continue
        if roll < 0.008:
            collection = rng.choice(["fm.plyr.track", "fm.plyr.like", "fm.plyr.comment"])
            record: dict[str, Any] = (
                track_record(f"track {seq}")
                if collection == "fm.plyr.track"
                else {
                    "$type": collection,
                    "subject": {"uri": f"at://{did}/fm.plyr.track/{rkey(rng)}", "cid": str(leaf)},
                    "createdAt": "2026-11-25T06:00:00.000Z",
                }
            )
        else:
            collection = rng.choice(OTHER)
            record = _record(rng, collection, did)
        path = f"{collection}/{rkey(rng)}"
        data = dagcbor.encode(dagcbor.from_json(record))
        cid = CID.for_dag_cbor(data)
        blocks = {cid: data}
        blocks.update(mst.covering_proof_blocks(tree, path))
        rev = next_tid()
        unsigned = {"did": did, "version": 3, "data": tree.root, "rev": rev, "prev": None}
        commit = dagcbor.encode({**unsigned, "sig": sign_k256(key, dagcbor.encode(unsigned))})
        commit_cid = CID.for_dag_cbor(commit)
        blocks[commit_cid] = commit
        frames.append(
            message_frame(
                "#commit",
                {
                    "seq": seq,
                    "rebase": False,
                    "tooBig": False,
                    "repo": did,
                    "commit": commit_cid,
                    "rev": rev,
                    "since": None,
                    "blocks": write_car([commit_cid], blocks),
                    "ops": [{"action": "create", "path": path, "cid": cid}],
                    "blobs": [],
                    "prevData": tree.root,
                    "time": "2026-11-25T06:00:00.000Z",
                },
            )
        )
    return frames


def load(n_frames: int, seed: int = 42) -> list[bytes]:
    """The cached capture of ``n_frames`` (built on first use)."""
    # Bump the version when build() changes, so a stale cache is not reused.
    path = CACHE / f"network-mix-v2-{n_frames}-{seed}.bin.zst"
    if not path.exists():
        CACHE.mkdir(exist_ok=True)
        write_frames(path, build(n_frames, seed=seed))
    return list(read_frames(path))
