"""``IngestSettings`` (prefix ``INGEST_``), validated once at startup; a bad value names itself.

Flags of ``plyr-index ingest`` override the environment. Shared infrastructure (database, broker,
topic) comes from :class:`runtime.settings.PlatformSettings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from runtime.settings import load
from schemas.ids import CollectionFilter

DEFAULT_UPSTREAM = "wss://bsky.network"


class IngestSettings(BaseSettings):
    """What the ingester reads, what it keeps, where it writes."""

    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="forbid", frozen=True)

    # Comma-separated in the environment: INGEST_UPSTREAMS=wss://a,wss://b
    upstreams: Annotated[tuple[str, ...], NoDecode] = (DEFAULT_UPSTREAM,)
    from_file: Path | None = None
    to: Literal["kafka", "jsonl"] = "kafka"
    collections: str = "fm.plyr.*"
    stall_timeout_s: float = Field(default=60.0, gt=0)
    cursor_flush_interval_s: float = Field(default=1.0, gt=0)
    max_frame_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_inflight_frames: int = Field(default=10_000, ge=1)
    metrics_host: str = "127.0.0.1"
    # 0 turns the endpoint off.
    metrics_port: int = Field(default=9464, ge=0, le=65535)

    @field_validator("upstreams", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("upstreams")
    @classmethod
    def _check_upstreams(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one upstream is needed")
        for url in value:
            scheme = url.split("://", 1)[0] if "://" in url else "wss"
            if scheme not in {"ws", "wss", "http", "https"}:
                raise ValueError(f"{url!r}: scheme must be ws, wss, http or https")
        if len(set(value)) != len(value):
            raise ValueError("an upstream is listed twice")
        return value

    @field_validator("collections")
    @classmethod
    def _check_collections(cls, value: str) -> str:
        CollectionFilter.parse(value)
        return value

    @field_validator("from_file")
    @classmethod
    def _check_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a file")
        return value

    @property
    def collection_filter(self) -> CollectionFilter:
        """The parsed collection filter."""
        return CollectionFilter.parse(self.collections)


def load_ingest(**overrides: object) -> IngestSettings:
    """Environment plus flag overrides (None means "not given"); SettingsError names a bad value."""
    return load(IngestSettings, **overrides)
