"""LogConsumer.lag after a rebalance: a batch that committed after one of its partitions was revoked
reports no lag for it instead of crashing the projector (aiokafka asserts on the highwater of a partition
not assigned). Found by the crash suite (tests/chaos), where it killed a projector on every rebalance that
came while a batch committed."""

from __future__ import annotations

from projector.consumer import LogConsumer


async def _no_offsets(partitions: object) -> dict[int, int]:
    return {}


async def test_lag_leaves_out_partitions_not_assigned() -> None:
    # Never started: nothing is assigned, like a member whose every partition was just revoked.
    consumer = LogConsumer("127.0.0.1:9", "t", "g", _no_offsets, session_timeout_ms=2000, heartbeat_interval_ms=300)
    try:
        assert consumer.lag({0: 5, 3: 7}) == {}
    finally:
        await consumer.__aexit__(None, None, None)
