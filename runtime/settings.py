"""Settings every process shares (prefix ``PLYR_``), and how a bad value stops startup.

Each part has its own settings class (``IngestSettings`` with prefix ``INGEST_`` ...); what several
parts need — the database, the broker, the topic, logging — lives here once.
"""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(Exception):
    """A setting is missing or wrong; the message names it."""

    @classmethod
    def from_validation(cls, prefix: str, err: ValidationError) -> SettingsError:
        """Turn pydantic's report into one line per bad setting, named as the operator sets it."""
        lines = []
        for item in err.errors():
            name = "_".join(str(p) for p in item["loc"]).upper()
            lines.append(f"{prefix}{name}: {item['msg']} (got {item.get('input')!r})")
        return cls("invalid settings:\n  " + "\n  ".join(lines))


class PlatformSettings(BaseSettings):
    """The shared infrastructure: Postgres, the broker, the event topic, logging."""

    model_config = SettingsConfigDict(env_prefix="PLYR_", extra="ignore", frozen=True)

    database_url: str = "postgresql://postgres@127.0.0.1:5432/plyr_index"
    kafka_bootstrap: str = "127.0.0.1:9092"
    # The idempotent producer: Apache Kafka / Redpanda / MSK give one (InitProducerId), the embedded
    # tansu broker does not. "auto" asks the broker at startup (ingest/producer.py); true/false force it.
    kafka_idempotence: Literal["auto"] | bool = "auto"
    kafka_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "zstd"
    events_topic: str = Field(default="plyr.index.events.v1", pattern=r"^[A-Za-z0-9._-]{1,249}$")
    topic_partitions: int = Field(default=8, ge=1, le=1024)
    # Copies of each partition when the topic is created: 1 for a single broker (the embedded one,
    # the compose file), 3 on a production cluster so the log outlives a broker.
    topic_replication_factor: int = Field(default=1, ge=1, le=32)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"


S = TypeVar("S", bound=BaseSettings)


def load(cls: type[S], **overrides: object) -> S:
    """``cls`` from the environment plus flag overrides (None means "not given"); a bad value raises
    SettingsError naming it as the operator sets it (``<PREFIX><FIELD>``)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return cls(**given)  # type: ignore[arg-type]  # fields are validated by pydantic at runtime
    except ValidationError as err:
        raise SettingsError.from_validation(str(cls.model_config.get("env_prefix", "")), err) from err


def load_platform() -> PlatformSettings:
    """Read ``PLYR_*`` from the environment; raise SettingsError naming any bad value."""
    try:
        return PlatformSettings()
    except ValidationError as err:
        raise SettingsError.from_validation("PLYR_", err) from err
