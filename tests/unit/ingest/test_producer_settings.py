"""The producer's broker settings. PLYR_KAFKA_IDEMPOTENCE: "auto" by default (ask the broker), true/false
force it; how an InitProducerId answer is read (a producer id: on; a refusal: off; a passing condition:
ask again). PLYR_TOPIC_REPLICATION_FACTOR: 1 unless set, never 0."""

from __future__ import annotations

import pytest

from ingest.producer import idempotence_answer
from runtime.settings import PlatformSettings, SettingsError, load_platform


def test_the_default_asks_the_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLYR_KAFKA_IDEMPOTENCE", raising=False)
    assert PlatformSettings().kafka_idempotence == "auto"


@pytest.mark.parametrize(
    ("given", "chosen"),
    [("auto", "auto"), ("true", True), ("false", False), ("1", True), ("0", False)],
)
def test_the_setting_forces_or_asks(monkeypatch: pytest.MonkeyPatch, given: str, chosen: object) -> None:
    monkeypatch.setenv("PLYR_KAFKA_IDEMPOTENCE", given)
    assert load_platform().kafka_idempotence == chosen


def test_a_bad_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLYR_KAFKA_IDEMPOTENCE", "sometimes")
    with pytest.raises(SettingsError, match="PLYR_KAFKA_IDEMPOTENCE"):
        load_platform()


@pytest.mark.parametrize(
    ("error_code", "answer"),
    [
        (0, True),  # a producer id: Apache Kafka, Redpanda, MSK
        (-1, False),  # UnknownError: the embedded tansu broker
        (31, False),  # ClusterAuthorizationFailed: IdempotentWrite not granted
        (35, False),  # UnsupportedVersion
        (14, None),  # a coordinator still loading: ask again
        (7, None),  # RequestTimedOut
    ],
)
def test_reading_the_brokers_answer(error_code: int, answer: bool | None) -> None:
    assert idempotence_answer(error_code) is answer


def test_replication_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLYR_TOPIC_REPLICATION_FACTOR", raising=False)
    assert load_platform().topic_replication_factor == 1
    monkeypatch.setenv("PLYR_TOPIC_REPLICATION_FACTOR", "3")
    assert load_platform().topic_replication_factor == 3
    monkeypatch.setenv("PLYR_TOPIC_REPLICATION_FACTOR", "0")
    with pytest.raises(SettingsError, match="PLYR_TOPIC_REPLICATION_FACTOR"):
        load_platform()
