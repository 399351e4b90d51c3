"""The real ingester against an upstream that misbehaves between good frames, on the real broker.

The script (tests/fixtures/hostile_firehose.py) interleaves 120 good frames of a mixed corpus with
every kind of bad frame, a stall, a slow stretch, a text frame and an error frame. The ingester must
stay up, count each bad frame under its reason in its metrics, and put every event of the good frames
on the topic, once. Verification is off here (the corpus' commits are not signed by resolvable keys;
the hostile commits would otherwise be refused before their records are read).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from ingest import app
from ingest.cursor import PostgresCursorStore
from ingest.settings import IngestSettings
from schemas.envelope import RecordEvent
from tests.fixtures import hostile_firehose as hf
from tests.fixtures.corpus import mixed_corpus
from tests.fixtures.frames import error_frame, message_frame
from tests.fixtures.hostile_firehose import Entry, HostileFirehoseServer, Pause, Stall, Text
from tests.fixtures.kafka import consume_all
from tests.integration.test_ingest_live import platform, record_keys, running, wait_cursor
from tests.services import free_port

pytestmark = pytest.mark.integration

HOSTILE = "did:plc:hostilehostilehostileho"
MAX_FRAME = 2 * 1024 * 1024


class Script:
    """Good frames renumbered 1, 2, ... with the hostile entries placed between them."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.seq = 0
        self.expected: dict[str, int] = {}  # drop reason → how many the script sends
        self._rkeys = (f"3hostile{i:05d}" for i in range(100_000))

    def good(self, frame: bytes, *, tolerated: bool = False) -> int:
        self.seq += 1
        frame = hf.body_with_seq(frame, self.seq)
        if tolerated:
            # Not canonical in its framing only: tolerated, its events go out like any other's.
            frame = hf.non_shortest_header(frame)
        self.entries.append(Entry(self.seq, frame, "good, header not canonical" if tolerated else "good"))
        return self.seq

    def bad(self, label: str, payload: hf.Payload, reason: str | None, *, ends: bool = False) -> None:
        """A bad entry between the last good frame and the next; ``reason`` is its expected drop."""
        self.entries.append(Entry(self.seq + 0.5, payload, label, once=True, ends=ends))
        if reason is not None:
            self.expected[reason] = self.expected.get(reason, 0) + 1

    def bad_with_seq(
        self, label: str, build: Callable[[int, str, str], bytes], reason: str, *, repeats: bool = False
    ) -> None:
        """A bad frame that carries the next seq (the cursor moves past it)."""
        self.seq += 1
        frame = build(self.seq, HOSTILE, next(self._rkeys))
        self.entries.append(Entry(self.seq, frame, label, once=not repeats, ends=repeats))
        self.expected[reason] = self.expected.get(reason, 0) + 1


def build_script() -> tuple[Script, list[tuple[str, str, str]], list[tuple[str, str, int]]]:
    corpus = mixed_corpus(120, plyr_share=0.3, repos=5, seed=31)
    rng = random.Random(8)
    s = Script()
    first_commit = next(f for _, f in corpus.frames if f.startswith(hf.HEADER_COMMIT))
    hostile: list[Callable[[], None]] = [
        lambda: s.bad("garbage", hf.garbage(rng), "malformed_frame"),
        lambda: s.bad("truncated", hf.truncated(first_commit), "malformed_frame"),
        lambda: s.bad("nested 100,000 deep", hf.deeply_nested(), "malformed_frame"),
        lambda: s.bad("map keys out of order", hf.unsorted_keys(s.seq, HOSTILE), "malformed_frame"),
        lambda: s.bad("handle not UTF-8", hf.non_utf8_handle(s.seq, HOSTILE), "malformed_frame"),
        lambda: s.bad_with_seq("ops not a list", lambda q, d, _: hf.wrong_field_types(q, d), "malformed_message"),
        lambda: s.bad_with_seq("block not matching its CID", hf.record_not_matching_its_cid, "record_cid_mismatch"),
        lambda: s.bad_with_seq("record not canonical", hf.non_canonical_record, "record_undecodable"),
        lambda: s.bad_with_seq("record not UTF-8", hf.non_utf8_record, "record_undecodable"),
        lambda: s.bad_with_seq("300,000 tiny blocks", hf.many_tiny_blocks, "invalid_car"),
        lambda: s.bad_with_seq(
            "over the size limit",
            lambda q, d, r: hf.oversized(q, d, r, MAX_FRAME + 1024 * 1024),
            "frame_too_large",
            repeats=True,  # a relay sends it again on every reconnect
        ),
        lambda: s.bad("stall", Stall(), None),
        lambda: s.bad("text frame", Text(), None, ends=True),
        lambda: s.bad("ConsumerTooSlow", error_frame("ConsumerTooSlow", "slow down"), None, ends=True),
        lambda: s.bad("unknown kind", message_frame("#labels", {"seq": 1, "labels": []}), None),
    ]
    renumbered: dict[int, int] = {}
    for i, (old_seq, frame) in enumerate(corpus.frames):
        renumbered[old_seq] = s.good(frame, tolerated=i % 10 == 0 and frame.startswith(hf.HEADER_COMMIT))
        if i % 7 == 3 and hostile:
            hostile.pop(0)()
        if 60 <= i < 64:
            s.entries.append(Entry(s.seq + 0.5, Pause(0.3), "slow"))  # a slow stretch, under the stall timeout
    assert not hostile, "the corpus is too short for the script"
    others = [(kind, did, renumbered[seq]) for kind, did, seq in corpus.expected_other]
    return s, list(corpus.expected_ops), others


async def test_the_ingester_survives_a_hostile_upstream(
    kafka_bootstrap: str, database_url: str, topic: str, pool: asyncpg.Pool
) -> None:
    script, expected_ops, expected_other = build_script()
    registry = CollectorRegistry()
    plat = platform(kafka_bootstrap, database_url, topic)
    async with HostileFirehoseServer(script.entries) as server:
        settings = IngestSettings(
            upstreams=(server.url,),
            metrics_port=0,
            cursor_flush_interval_s=0.1,
            stall_timeout_s=1.5,
            max_frame_bytes=MAX_FRAME,
            plc_url=f"http://127.0.0.1:{free_port()}",
            verify_commits=False,
        )
        await app.open_cursor_store(pool)
        await PostgresCursorStore(pool).save(server.url, 0)
        async with running(plat, settings, registry) as task:
            await wait_cursor(pool, server.url, script.seq, timeout=90)
            assert not task.done(), "the ingester stopped"

    def sample(name: str, **labels: str) -> float:
        return registry.get_sample_value(f"plyr_ingest_{name}_total", {"upstream": server.url, **labels}) or 0.0

    drops = {reason: sample("drops", reason=reason) for reason in script.expected}
    assert drops == script.expected
    assert (
        sample("frames", kind="malformed") == script.expected["malformed_frame"] + script.expected["malformed_message"]
    )
    assert sample("frames", kind="unknown") == 1
    assert sample("error_frames", error="ConsumerTooSlow") == 1
    # The stall, the text frame, the error frame and the frame too large each cost a reconnect.
    assert sample("reconnects") >= 4
    events = await consume_all(kafka_bootstrap, topic, expect=len(expected_ops) + len(expected_other))
    keys = record_keys(events)
    assert sorted(keys) == sorted(expected_ops)  # every good record, once
    assert sorted((e.kind, e.did, e.seq) for e in events if not isinstance(e, RecordEvent)) == sorted(expected_other)
    assert all(e.did != HOSTILE for e in events)
