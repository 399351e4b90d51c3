"""The event log is kept forever: the ingester creates the topic so, and refuses to start on one
whose retention or cleanup policy would drop history (real tansu broker, the real CLI)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ingest.errors import TopicRetentionError
from ingest.producer import ensure_topic, retention_problems
from tests.integration.test_ingest_live import _cli
from tests.services import free_port

pytestmark = pytest.mark.integration


def test_what_drops_history() -> None:
    assert retention_problems({"retention.ms": "-1", "retention.bytes": "-1"}) == []
    assert retention_problems({"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}) == []
    assert retention_problems({"retention.ms": "604800000", "retention.bytes": "-1"}) == ["retention.ms=604800000"]
    assert retention_problems({"retention.ms": "-1"}) == [
        "retention.bytes is not set on the topic (the broker default would apply)"
    ]
    compacted = retention_problems({"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "compact,delete"})
    assert compacted == ["cleanup.policy=compact,delete (compaction keeps one event per repo)"]


async def create(bootstrap: str, topic: str, configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1, topic_configs=configs)])
    finally:
        await admin.close()


async def test_topics_made_here_keep_history_and_others_are_refused(kafka_bootstrap: str, database_url: str) -> None:
    ours = f"retention-ours-{uuid.uuid4().hex[:8]}"
    await ensure_topic(kafka_bootstrap, ours, 3)
    # Created here: checked again on every start, and accepted.
    await ensure_topic(kafka_bootstrap, ours, 3)

    week = f"retention-week-{uuid.uuid4().hex[:8]}"
    await create(kafka_bootstrap, week, {"retention.ms": "604800000", "retention.bytes": "-1"})
    with pytest.raises(TopicRetentionError, match=r"retention\.ms=604800000"):
        await ensure_topic(kafka_bootstrap, week, 3)
    unset = f"retention-unset-{uuid.uuid4().hex[:8]}"
    await create(kafka_bootstrap, unset, {})
    with pytest.raises(TopicRetentionError, match=r"retention\.ms is not set"):
        await ensure_topic(kafka_bootstrap, unset, 3)

    # The ingester as an operator runs it: one clear line naming the fix, exit status 2, no traceback.
    env = {
        "PLYR_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "PLYR_DATABASE_URL": database_url,
        "PLYR_EVENTS_TOPIC": week,
        "INGEST_UPSTREAMS": f"ws://127.0.0.1:{free_port()}",
        "INGEST_METRICS_PORT": "0",
    }
    result = await asyncio.to_thread(_cli, "ingest", env=env, timeout=60)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert f"topic {week!r} would drop history (retention.ms=604800000)" in err
    assert "retention.ms=-1" in err and "Traceback" not in err
