"""Where events go: the Kafka topic (acks=all, keyed by DID) or JSON lines on a stream.

``send`` returns a future that completes when the broker has acknowledged the event (Kafka), or None
when the write is already done (JSON lines). Library errors are translated to
:class:`~ingest.errors.BrokerError` here, at the adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import BinaryIO, Literal, Protocol, Self

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from ingest.errors import BrokerError
from schemas.codec import encode, to_json_line
from schemas.envelope import Event
from schemas.topics import EVENTS_TOPIC_CONFIG, key_for

Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]


class EventSink(Protocol):
    """Takes events; ``send`` returns a delivery future, or None when already written."""

    async def send(self, event: Event) -> asyncio.Future[object] | None: ...

    async def flush(self) -> None: ...


class JsonlSink:
    """Writes each envelope as one JSON line (``--to jsonl``)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    async def send(self, event: Event) -> asyncio.Future[object] | None:
        """Write the line now."""
        self._out.write(to_json_line(event))
        return None

    async def flush(self) -> None:
        """Flush the stream."""
        self._out.flush()


async def ensure_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Create the events topic with unbounded retention if it does not exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await admin.start()
        if topic in await admin.list_topics():
            return
        # Created concurrently by another process: fine.
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(
                [
                    NewTopic(
                        topic,
                        num_partitions=partitions,
                        replication_factor=1,
                        topic_configs=EVENTS_TOPIC_CONFIG,
                    )
                ]
            )
    except KafkaError as err:
        raise BrokerError(f"cannot create topic {topic!r} on {bootstrap}: {err}") from err
    finally:
        await admin.close()


class KafkaSink:
    """The events topic, through one aiokafka producer (an async context manager)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        idempotence: bool,
        compression: Compression,
        linger_ms: int = 5,
    ) -> None:
        self._topic = topic
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=idempotence,
            compression_type=None if compression == "none" else compression,
            linger_ms=linger_ms,
            max_batch_size=1 << 20,
            max_request_size=4 << 20,
            request_timeout_ms=30_000,
        )
        self._started = False

    async def __aenter__(self) -> Self:
        try:
            await self._producer.start()
        except KafkaError as err:
            await self._producer.stop()
            raise BrokerError(f"cannot start producer: {err}") from err
        self._started = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._started:
            self._started = False
            await self._producer.stop()

    async def send(self, event: Event) -> asyncio.Future[object] | None:
        """Queue the event; the future completes on the broker's acknowledgement."""
        try:
            future: asyncio.Future[object] = await self._producer.send(
                self._topic,
                value=encode(event),
                key=key_for(event.did),
                headers=[("kind", event.kind.encode())],
            )
        except KafkaError as err:
            raise BrokerError(f"cannot queue event: {err}") from err
        return future

    async def flush(self) -> None:
        """Wait until everything queued is acknowledged."""
        try:
            await self._producer.flush()
        except KafkaError as err:
            raise BrokerError(f"flush failed: {err}") from err
