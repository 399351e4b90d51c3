"""The group consumer (I/O): joins the group, and on every assignment seeks each partition to the
offset stored in Postgres with the rows (never Kafka's committed offset), then yields batches.

Auto-commit is off: the position of record is the ``offsets`` table, written in the same transaction
as the rows. Kafka-side commits are not needed for correctness.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from projector.prepare import LogMessage
from runtime.logging import get_logger

log = get_logger("projector.consumer")

LoadOffsets = Callable[[Sequence[int]], Awaitable[dict[int, int]]]


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: AIOKafkaConsumer, load: LoadOffsets) -> None:
        self._consumer = consumer
        self._load = load

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        log.info("partitions_revoked", partitions=sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        stored = await self._load([tp.partition for tp in assigned])
        for tp in assigned:
            if tp.partition in stored:
                self._consumer.seek(tp, stored[tp.partition])
            else:
                await self._consumer.seek_to_beginning(tp)
        log.info("partitions_assigned", positions={tp.partition: stored.get(tp.partition, 0) for tp in assigned})


class LogConsumer:
    """Batches of the events topic for this group member (an async context manager)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group_id: str,
        load_offsets: LoadOffsets,
        *,
        session_timeout_ms: int,
        heartbeat_interval_ms: int,
    ) -> None:
        self._topic = topic
        self._load = load_offsets
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms,
            max_partition_fetch_bytes=4 << 20,
        )

    async def __aenter__(self) -> Self:
        await self._consumer.start()
        self._consumer.subscribe([self._topic], listener=_SeekToStored(self._consumer, self._load))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._consumer.stop()

    def lag(self, positions: dict[int, int]) -> dict[int, int]:
        """Messages behind the high watermark per partition, for the given next offsets. A partition
        revoked while its batch committed (a rebalance) is left out: its lag is the new owner's to report."""
        out = {}
        assigned = self._consumer.assignment()
        for partition, next_offset in positions.items():
            tp = TopicPartition(self._topic, partition)
            if tp not in assigned:
                continue
            high = self._consumer.highwater(tp)
            if high is not None:
                out[partition] = max(high - next_offset, 0)
        return out

    async def batches(self, *, max_records: int, timeout_ms: int) -> AsyncIterator[list[LogMessage]]:
        """Yield each poll's messages (possibly empty), offsets ascending per partition."""
        while True:
            polled = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
            yield [
                LogMessage(tp.partition, m.offset, m.value or b"") for tp, messages in polled.items() for m in messages
            ]
