"""Where events go: the Kafka topic (acks=all, keyed by DID) or JSON lines on a stream.

``send`` returns a future that completes when the broker has acknowledged the event (Kafka), or None
when the write is already done (JSON lines). Library errors are translated to
:class:`~ingest.errors.BrokerError` here, at the adapter.

The idempotent producer is chosen from the broker, not from code: with ``PLYR_KAFKA_IDEMPOTENCE=auto``
the sink asks the broker for a producer id (InitProducerId, what an idempotent producer does first)
and turns idempotence on only when it gets one. Apache Kafka / Redpanda / MSK answer with an id; the
embedded tansu broker answers UnknownError, so the local stack runs without it (downstream dedupes
by rev either way).
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import BinaryIO, Literal, Protocol, Self

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code
from aiokafka.protocol.transaction import InitProducerIdRequest

from ingest.errors import BrokerError, TopicRetentionError
from runtime.logging import get_logger
from schemas.codec import encode, to_json_line
from schemas.envelope import Event
from schemas.topics import EVENTS_TOPIC_CONFIG, key_for

Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]
# PLYR_KAFKA_IDEMPOTENCE: ask the broker, or force it.
Idempotence = Literal["auto"] | bool

log = get_logger("ingest.producer")


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


def retention_problems(configs: dict[str, str]) -> list[str]:
    """What in a topic's configuration would drop history; empty when the log is kept whole.

    ``configs`` is what the broker describes for the topic. Apache Kafka describes every entry,
    defaults included; some brokers (tansu) only those set on the topic. Either way, a retention that
    is not stated as unbounded is taken as the broker default, which deletes (Kafka: 7 days)."""
    problems = []
    for name in ("retention.ms", "retention.bytes"):
        value = configs.get(name)
        if value is None:
            problems.append(f"{name} is not set on the topic (the broker default would apply)")
        elif value != "-1":
            problems.append(f"{name}={value}")
    policy = configs.get("cleanup.policy", "delete")
    if "compact" in policy.split(","):
        problems.append(f"cleanup.policy={policy} (compaction keeps one event per repo)")
    return problems


async def ensure_topic(bootstrap: str, topic: str, partitions: int, replication: int = 1) -> None:
    """Create the events topic with unbounded retention if it does not exist (``replication`` copies
    of each partition: 1 on a single broker, 3 on a production cluster); if it exists, check that it
    keeps history (:class:`TopicRetentionError` otherwise)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await admin.start()
        if topic in await admin.list_topics():
            await _check_retention(admin, topic)
            return
        # Created concurrently by another process: fine.
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(
                [
                    NewTopic(
                        topic,
                        num_partitions=partitions,
                        replication_factor=replication,
                        topic_configs=EVENTS_TOPIC_CONFIG,
                    )
                ]
            )
    except KafkaError as err:
        raise BrokerError(f"cannot create topic {topic!r} on {bootstrap}: {err}") from err
    finally:
        await admin.close()


async def _check_retention(admin: AIOKafkaAdminClient, topic: str) -> None:
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    configs: dict[str, str] = {}
    for response in responses:
        for error_code, error_message, _, _, entries in response.resources:
            if error_code != 0:
                raise BrokerError(f"cannot read the configuration of topic {topic!r}: {error_message}")
            configs.update({entry[0]: entry[1] for entry in entries if entry[1] is not None})
    if problems := retention_problems(configs):
        raise TopicRetentionError(
            f"topic {topic!r} would drop history ({'; '.join(problems)}): the event log is kept forever so a"
            f" replay from offset 0 rebuilds everything. Set retention.ms=-1 and retention.bytes=-1 (and"
            f" cleanup.policy=delete) on it, e.g. kafka-configs.sh --alter --entity-type topics"
            f" --entity-name {topic} --add-config retention.ms=-1,retention.bytes=-1"
        )
    log.debug("topic_retention_checked", topic=topic)


def idempotence_answer(error_code: int) -> bool | None:
    """What an InitProducerId answer says: True, the broker gave a producer id; False, it refused (not
    supported, not allowed); None, a passing condition (a coordinator still loading): ask again."""
    if error_code == 0:
        return True
    return None if for_code(error_code).retriable else False


async def probe_idempotence(bootstrap: str, *, attempts: int = 20, delay: float = 0.5) -> bool:
    """Whether the broker at ``bootstrap`` supports the idempotent producer (asks it for a producer id).

    A broker that keeps answering with a passing condition, or cannot be reached, is a BrokerError:
    the caller retries later rather than guessing.
    """
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await client.bootstrap()
        for _ in range(attempts):
            node = client.get_random_node()
            if node is None:
                raise BrokerError(f"{bootstrap}: no broker in the cluster metadata")
            # No transactional id: the request an idempotent (not transactional) producer sends.
            response = await client.send(node, InitProducerIdRequest(None, 60_000))
            answer = idempotence_answer(response.error_code)
            if answer is not None:
                log.info("producer_idempotence_probed", supported=answer, error=for_code(response.error_code).__name__)
                return answer
            await asyncio.sleep(delay)
    except KafkaError as err:
        raise BrokerError(f"cannot ask {bootstrap} for a producer id: {err}") from err
    finally:
        await client.close()
    raise BrokerError(f"{bootstrap} kept answering InitProducerId with a retriable error")


class KafkaSink:
    """The events topic, through one aiokafka producer (an async context manager).

    ``idempotence="auto"`` asks the broker when the sink opens (:func:`probe_idempotence`); the
    choice made is :attr:`idempotent`.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        idempotence: Idempotence,
        compression: Compression,
        linger_ms: int = 5,
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._idempotence = idempotence
        self._compression = compression
        self._linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None
        self.idempotent: bool | None = None

    def _build(self, idempotent: bool) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            enable_idempotence=idempotent,
            compression_type=None if self._compression == "none" else self._compression,
            linger_ms=self._linger_ms,
            max_batch_size=1 << 20,
            max_request_size=4 << 20,
            request_timeout_ms=30_000,
        )

    async def __aenter__(self) -> Self:
        if self._producer is not None:
            raise RuntimeError("KafkaSink is already open")
        if self._idempotence == "auto":
            idempotent = await probe_idempotence(self._bootstrap)
        else:
            idempotent = self._idempotence
        producer = self._build(idempotent)
        try:
            await producer.start()
        except KafkaError as err:
            await producer.stop()
            raise BrokerError(f"cannot start producer (idempotence {idempotent}): {err}") from err
        self._producer, self.idempotent = producer, idempotent
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    def _open(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("KafkaSink is not open")
        return self._producer

    async def send(self, event: Event) -> asyncio.Future[object] | None:
        """Queue the event; the future completes on the broker's acknowledgement."""
        producer = self._open()
        try:
            future: asyncio.Future[object] = await producer.send(
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
        producer = self._open()
        try:
            await producer.flush()
        except KafkaError as err:
            raise BrokerError(f"flush failed: {err}") from err
