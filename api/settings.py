"""``ApiSettings`` (prefix ``API_``), validated once at startup."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from runtime.settings import load

# Comma-separated in the environment (API_CORS_ORIGINS=https://a.example,https://b.example).
CommaList = Annotated[tuple[str, ...], NoDecode]


def _split(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class ApiSettings(BaseSettings):
    """Where the API listens, which schema it reads, and how it serves audio."""

    model_config = SettingsConfigDict(env_prefix="API_", extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # The read-model schema the projector writes (PROJECTOR_SCHEMA_NAME).
    schema_name: str = Field(default="plyr_read", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    # How clients reach this API; stream URLs in track views are built on it.
    public_url: str = "http://127.0.0.1:8080"
    cors_origins: CommaList = ()
    # /ready fails when the projector's newest applied event is older than this (seconds).
    ready_max_lag_seconds: float = Field(default=300.0, gt=0)
    # How long a feed page (latest and top tracks, activity, the artists list, totals) may be served
    # from memory after it was computed, the same bytes for every client (0: never). A change reaches
    # feeds up to this much (plus the page's query time) later; a single track, artist or list is
    # always read afresh.
    feed_cache_seconds: float = Field(default=1.0, ge=0)
    # How long a search page may be served from memory (0: never); shared like a feed page.
    search_cache_seconds: float = Field(default=10.0, ge=0)
    # How often the vocabulary fuzzy search corrects words against is rebuilt from the read models
    # (one replica does it per interval; a word indexed since is matched as typed, not corrected).
    search_words_refresh_seconds: float = Field(default=600.0, ge=10)
    # Requests per second per client address, with bursts up to rate_limit_burst (0: no limit). The
    # address is the connection's, or the forwarded one uvicorn was told to trust behind a proxy.
    rate_limit_per_second: float = Field(default=50.0, ge=0)
    rate_limit_burst: int = Field(default=200, ge=1)
    # A longer query string gets 414; a larger request body 413.
    max_query_bytes: int = Field(default=8192, ge=256)
    max_body_bytes: int = Field(default=65536, ge=1024)
    pool_min: int = Field(default=2, ge=1)
    pool_max: int = Field(default=10, ge=1)
    # Backpressure (api/backpressure.py): a public request not answered within this many seconds
    # (waiting for a pooled connection included) is answered 503; Postgres ends a statement running
    # longer than statement_timeout_seconds itself (503 too); past max_in_flight requests being
    # answered at once, one more is refused at once with 503.
    request_timeout_seconds: float = Field(default=5.0, gt=0)
    statement_timeout_seconds: float = Field(default=3.0, gt=0)
    max_in_flight: int = Field(default=256, ge=1)
    # A track's audioUrl is redirected to only when its origin (scheme://host[:port]) is one of these.
    trusted_cdn_origins: CommaList = ()
    # Private bucket serving (S3 / R2): presigned GETs for mirrored blobs (key blobs/<cid>).
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "auto"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    presign_seconds: int = Field(default=300, ge=10, le=7 * 24 * 3600)
    # Where did:plc documents are resolved (the PDS of an artist serves its blobs).
    plc_url: str = "https://plc.directory"
    # Supporter-gated tracks: None means no public redirect (402).
    gated_audio: str | None = Field(default=None, pattern=r"^(presign)$")
    # The admin API (api/admin.py) is served only when this is set: the bearer token operators send.
    admin_token: SecretStr | None = Field(default=None, min_length=16)

    @field_validator("cors_origins", "trusted_cdn_origins", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return _split(value)

    # Stream and media mirror (api/stream.py, api/mirror.py). Local development only: let a DID
    # document name a PDS on a loopback/private address or plain http (never in production: SSRF).
    allow_private_pds: bool = False
    # The mirror refuses a blob larger than this while streaming it (the track lexicon's maxSize).
    mirror_max_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    # Deadline for fetching one blob from a PDS, body included.
    mirror_fetch_timeout_seconds: float = Field(default=120.0, gt=0)
    # Where ``plyr-index mirror`` serves /metrics (0: a free port); the API serves its own on API_PORT.
    mirror_metrics_host: str = "127.0.0.1"
    mirror_metrics_port: int = Field(default=9466, ge=0, le=65535)


def load_api(**overrides: object) -> ApiSettings:
    """Environment plus flag overrides; SettingsError names a bad value."""
    return load(ApiSettings, **overrides)
