"""Dead letters re-applied after a lexicon fix (``plyr-index dead-letters reapply``).

A dead letter names the exact message that carried the invalid record version: (topic, partition,
offset). The log keeps every message forever, so each one is read back from the broker and prepared
again with today's lexicons, through the same pure stage as a live batch
(:func:`projector.prepare.prepare`). The log is read rather than the row's ``raw`` copy because the
read models also need what only the envelope holds: the record's CID (tracks and lists keep it for
strong references) and the event time (``indexedAt``). The row's did, collection, rkey and rev must
match the message, or the letter is left alone.

Batches of letters go to :meth:`projector.store.Store.reapply`, one transaction each, which applies a
version only while the ledger still holds it as the current invalid one. Re-running is harmless: a
letter applied or superseded is gone, and one still invalid is judged again the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from projector.prepare import LogMessage, PreparedItem
from projector.store import ReapplyResult, Store
from runtime.logging import get_logger
from schemas.envelope import RecordEvent
from schemas.migrate import quote_schema

log = get_logger("projector.dead_letters")

Position = tuple[str, int, int]  # (topic, partition, offset)

# Within a partition, wanted offsets closer than this to what was just read are reached by reading
# on; farther ones by seeking.
_READ_ON = 2_000
# A batch that found a ledger row locked by a projector's batch is tried again this many times.
_LOCK_ATTEMPTS = 20


class LogUnavailable(Exception):
    """The broker could not be asked for the messages."""


@dataclass
class ReapplyReport:
    """What ``dead-letters reapply`` did, summed over its batches."""

    examined: int = 0
    applied: int = 0
    superseded: int = 0
    still_invalid: int = 0
    # letters whose message is no longer on the log, or does not match the row
    missing: int = 0
    # letters that are not a record version (an undecodable envelope): not judged by lexicons
    not_records: int = 0
    changes: int = 0

    def add(self, result: ReapplyResult) -> None:
        """Count one batch's result."""
        self.applied += result.applied
        self.superseded += result.superseded
        self.still_invalid += result.still_invalid
        self.changes += result.changes


async def read_at(bootstrap: str, positions: Iterable[Position], *, seconds: float = 30.0) -> dict[Position, bytes]:
    """The values of the messages at ``positions``; a position past the end of its partition, below
    its start (retention) or on a topic that is gone is simply absent from the answer."""
    wanted: dict[TopicPartition, list[int]] = {}
    for topic, partition, offset in positions:
        wanted.setdefault(TopicPartition(topic, partition), []).append(offset)
    found: dict[Position, bytes] = {}
    if not wanted:
        return found
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=int(seconds * 1000),
    )
    try:
        async with asyncio.timeout(seconds):
            await consumer.start()
            topics = await consumer.topics()
        for tp, offsets in sorted(wanted.items()):
            if tp.topic not in topics:
                continue
            async with asyncio.timeout(seconds):
                await _read_partition(consumer, tp, sorted(set(offsets)), found)
    except (KafkaError, TimeoutError) as err:
        raise LogUnavailable(f"cannot read the log at {bootstrap}: {err!r}") from err
    finally:
        await consumer.stop()
    return found


async def _read_partition(
    consumer: AIOKafkaConsumer, tp: TopicPartition, pending: list[int], found: dict[Position, bytes]
) -> None:
    # The end comes from the fetches' high watermark, not ListOffsets (see api/status.py end_offsets).
    consumer.assign([tp])
    wanted = set(pending)
    i = 0
    while i < len(pending):
        consumer.seek(tp, pending[i])
        sought = True
        while i < len(pending):
            batch = (await consumer.getmany(tp, timeout_ms=500, max_records=1000)).get(tp, [])
            high = consumer.highwater(tp)
            if not batch:
                if high is not None and pending[i] >= high:
                    return  # the rest is past the end of the partition
                continue
            if sought and batch[0].offset < pending[i]:
                return  # sought past the end: the consumer started over from the beginning
            sought = False
            for m in batch:
                if m.offset in wanted:
                    found[(tp.topic, tp.partition, m.offset)] = m.value or b""
            last = batch[-1].offset
            # Passed (found, compacted away, or below the log's start after retention): done with them.
            while i < len(pending) and pending[i] <= last:
                i += 1
            if i < len(pending) and pending[i] - last > _READ_ON:
                break  # seek to the next one


async def reapply_dead_letters(
    pool: asyncpg.Pool, store: Store, schema: str, bootstrap: str, *, batch: int = 500
) -> ReapplyReport:
    """Judge every record dead letter in ``schema`` again with the store's validator and apply those
    valid now (see the module docstring); one transaction per ``batch`` letters."""
    table = f"{quote_schema(schema)}.dead_letters"
    report = ReapplyReport()
    report.not_records = await pool.fetchval(f"SELECT count(*) FROM {table} WHERE collection IS NULL")
    after = 0
    while True:
        rows = await pool.fetch(
            f'SELECT id, topic, partition, "offset", did, collection, rkey, rev FROM {table}'
            " WHERE id > $1 AND collection IS NOT NULL ORDER BY id LIMIT $2",
            after,
            batch,
        )
        if not rows:
            return report
        after = rows[-1]["id"]
        report.examined += len(rows)
        values = await read_at(bootstrap, [(r["topic"], r["partition"], r["offset"]) for r in rows])
        letters: list[tuple[int, PreparedItem]] = []
        for r in rows:
            value = values.get((r["topic"], r["partition"], r["offset"]))
            item = None if value is None else store.prepare([LogMessage(r["partition"], r["offset"], value)]).items[0]
            if item is None or not _same_version(item, r):
                report.missing += 1
                continue
            letters.append((r["id"], item))
        report.add(await _reapply_batch(store, letters))
        log.info("dead_letters_reapplied", examined=report.examined, applied=report.applied)


def _same_version(item: PreparedItem, row: asyncpg.Record) -> bool:
    event = item.event
    return isinstance(event, RecordEvent) and (event.did, event.collection, event.rkey, event.rev) == (
        row["did"],
        row["collection"],
        row["rkey"],
        row["rev"],
    )


async def _reapply_batch(store: Store, letters: list[tuple[int, PreparedItem]]) -> ReapplyResult:
    for attempt in range(_LOCK_ATTEMPTS):
        try:
            return await store.reapply(letters)
        except asyncpg.LockNotAvailableError:
            # A projector's batch holds one of the records: let it commit, then look again.
            await asyncio.sleep(min(0.05 * 2**attempt, 2.0))
    return await store.reapply(letters)
