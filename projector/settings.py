"""``ProjectorSettings`` (prefix ``PROJECTOR_``), validated once at startup."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.settings import load


class ProjectorSettings(BaseSettings):
    """Consumer group, target schema, batch sizes."""

    model_config = SettingsConfigDict(env_prefix="PROJECTOR_", extra="forbid", frozen=True)

    group_id: str = Field(default="plyr-index-projector", min_length=1)
    # The Postgres schema holding the read models the API serves.
    schema_name: str = Field(default="plyr_read", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    max_batch: int = Field(default=5000, ge=1, le=100_000)
    # Commits in flight at once, each on its own share of the partitions (projector/pipeline.py): two
    # keep both cores of a small machine busy, one lane's Postgres work beside the other's Python.
    commit_lanes: int = Field(default=2, ge=1, le=16)
    poll_timeout_ms: int = Field(default=500, ge=10)
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    heartbeat_interval_ms: int = Field(default=1000, ge=100)
    # How often the top-tracks rankings are recomputed (they slide with the clock, not with events).
    top_refresh_seconds: float = Field(default=60, ge=1)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9465, ge=0, le=65535)


def load_projector(**overrides: object) -> ProjectorSettings:
    """Environment plus flag overrides; SettingsError names a bad value."""
    return load(ProjectorSettings, **overrides)
