"""On the embedded tansu broker, "auto" finds no idempotent producer and the sink still delivers;
forcing it on fails at open with a BrokerError that says so (not a hang, not a silent downgrade)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from ingest.errors import BrokerError
from ingest.producer import KafkaSink, ensure_topic, probe_idempotence
from schemas.envelope import AccountEvent
from tests.fixtures.events import T0
from tests.services import start_broker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Always the embedded broker (not PLYR_TEST_KAFKA): this test is about what it lacks."""
    broker = start_broker(Path(tmp_path_factory.mktemp("tansu-idem")) / "tansu.log")
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


async def test_the_embedded_broker_gives_no_producer_id(tansu: str) -> None:
    assert await probe_idempotence(tansu) is False


async def test_auto_delivers_without_idempotence_on_the_embedded_broker(tansu: str) -> None:
    topic = "idem.auto"
    await ensure_topic(tansu, topic, 1)
    event = AccountEvent(did="did:plc:ewvi7nxzyoun6zhxrhs64oiz", upstream="test", seq=1, time=T0, active=True)
    async with KafkaSink(tansu, topic, idempotence="auto", compression="zstd") as sink:
        assert sink.idempotent is False
        future = await sink.send(event)
        assert future is not None
        await future
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=tansu, auto_offset_reset="earliest")
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=5000)
        assert [m.key for msgs in batch.values() for m in msgs] == [event.did.encode()]
    finally:
        await consumer.stop()


async def test_forcing_idempotence_on_the_embedded_broker_fails_at_open(tansu: str) -> None:
    with pytest.raises(BrokerError, match="idempotence True"):
        async with KafkaSink(tansu, "idem.forced", idempotence=True, compression="none"):
            pass


async def test_an_unreachable_broker_is_a_broker_error() -> None:
    with pytest.raises(BrokerError):
        await probe_idempotence("127.0.0.1:1", attempts=1)
