"""``IngestSettings`` (prefix ``INGEST_``), validated once at startup; a bad value names itself.

Flags of ``plyr-index ingest`` override the environment. Shared infrastructure (database, broker,
topic) comes from :class:`runtime.settings.PlatformSettings`.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from runtime.settings import load
from runtime.urls import UnsafeUrl, parse_url
from schemas.ids import CollectionFilter, is_nsid

DEFAULT_UPSTREAM = "wss://bsky.network"
# The collections backfill discovery asks the relay about: listReposByCollection takes exact NSIDs.
PLYR_COLLECTIONS = ("fm.plyr.track", "fm.plyr.like", "fm.plyr.list", "fm.plyr.comment", "fm.plyr.actor.profile")


def parse_nameserver(text: str) -> tuple[str, int]:
    """``1.2.3.4``, ``1.2.3.4:5353``, ``::1`` or ``[::1]:5353`` → (address, port); ValueError otherwise."""
    host, port = text.strip(), 53
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r}: expected [address]:port")
            port = int(rest[1:])
    elif host.count(":") == 1:
        host, _, port_text = host.partition(":")
        port = int(port_text)
    ipaddress.ip_address(host)
    if not 0 < port < 65536:
        raise ValueError(f"{text!r}: port out of range")
    return host, port


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
    # Identity (#identity events): resolve the DID document and check the handle both ways. Off
    # (offline use), handles go out as the frame gave them, marked unverified.
    resolve_identity: bool = True
    plc_url: str = "https://plc.directory"
    identity_cache_size: int = Field(default=100_000, ge=1)
    identity_ttl_s: float = Field(default=3600.0, gt=0)
    # Failures (no document, a dead host) are asked again sooner than answers.
    identity_failure_ttl_s: float = Field(default=60.0, gt=0)
    # Per request (PLC, did:web, DNS, well-known); an event's whole resolution has its own deadline.
    identity_timeout_s: float = Field(default=5.0, gt=0)
    identity_deadline_s: float = Field(default=15.0, gt=0)
    identity_concurrency: int = Field(default=16, ge=1)
    # Resolutions in flight beyond this go out unverified at once (counted), so a slow directory
    # cannot hold the firehose back.
    identity_max_pending: int = Field(default=1000, ge=1)
    # Sync 1.1 verification of every commit of a repo in scope (signature, prevData chain, rev),
    # live upstreams only (needs identity resolution for the signing keys). Off for a trusted upstream:
    # commits go on the log as received, a forged or out-of-order one included, and gaps go unnoticed.
    verify_commits: bool = True
    # How far a rev (a TID: a time) may run ahead of our clock.
    max_clock_skew_s: float = Field(default=300.0, gt=0)
    # Frames of one repo held while it is backfilled or resynced; beyond, the oldest are let go and
    # the repo is resynced again afterwards (that later snapshot covers them).
    max_held_per_repo: int = Field(default=1000, ge=1)
    # Comma-separated nameservers (IP or IP:port, [IPv6]:port) instead of /etc/resolv.conf.
    dns_nameservers: Annotated[tuple[str, ...], NoDecode] = ()
    # Local development and tests only: did:web hosts, handles and PDS endpoints on private or
    # loopback addresses, over plain http.
    allow_private_hosts: bool = False
    # Backfill and resync (ingest/backfill.py). The relay asked for listReposByCollection (an origin,
    # trusted like the upstreams); default: the first upstream's host over https.
    backfill_relay: str | None = None
    # Comma-separated exact NSIDs discovery asks the relay about.
    backfill_discover: Annotated[tuple[str, ...], NoDecode] = PLYR_COLLECTIONS
    backfill_page_limit: int = Field(default=1000, ge=1, le=2000)
    # Repos exported at once in all, and per PDS (one host's rate limit is not everyone's).
    backfill_concurrency: int = Field(default=8, ge=1)
    backfill_per_pds: int = Field(default=2, ge=1)
    # One getRepo: whole-answer deadline and byte bound; in-scope records per repo.
    backfill_timeout_s: float = Field(default=300.0, gt=0)
    backfill_max_export_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    backfill_max_records: int = Field(default=100_000, ge=1)
    # A failed repo is tried again after a jittered delay doubling from base up to cap (a 429's
    # Retry-After is honoured, up to cap); the failure is kept in the repo row's reason.
    backfill_retry_base_s: float = Field(default=5.0, gt=0)
    backfill_retry_cap_s: float = Field(default=3600.0, gt=0)
    # How often the worker looks for requests from other processes (plyr-index backfill/resync).
    backfill_poll_s: float = Field(default=5.0, gt=0)

    @field_validator("upstreams", "dns_nameservers", "backfill_discover", mode="before")
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

    @field_validator("plc_url")
    @classmethod
    def _check_plc_url(cls, value: str) -> str:
        try:
            url = parse_url(value)
        except UnsafeUrl as err:
            raise ValueError(str(err)) from err
        if url.rest not in ("", "/"):
            raise ValueError("the PLC directory URL is an origin (https://host[:port])")
        return str(url.origin)

    @field_validator("backfill_relay")
    @classmethod
    def _check_relay(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            url = parse_url(value)
        except UnsafeUrl as err:
            raise ValueError(str(err)) from err
        if url.rest not in ("", "/") or url.origin.scheme not in ("http", "https"):
            raise ValueError("the relay is an http(s) origin (https://host[:port])")
        return str(url.origin)

    @field_validator("backfill_discover")
    @classmethod
    def _check_discover(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for nsid in value:
            if not is_nsid(nsid):
                raise ValueError(f"{nsid!r} is not an NSID (discovery takes exact collections)")
        return value

    @field_validator("dns_nameservers")
    @classmethod
    def _check_nameservers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            parse_nameserver(entry)
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

    @property
    def relay_url(self) -> str:
        """Where backfill discovery asks: the relay setting, or the first upstream's host over http(s)."""
        if self.backfill_relay is not None:
            return self.backfill_relay
        upstream = self.upstreams[0]
        parts = urlsplit(upstream if "://" in upstream else f"wss://{upstream}")
        scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
        return f"{scheme}://{parts.netloc}"

    @property
    def dns_servers(self) -> list[tuple[str, int]]:
        """The nameserver override as (address, port) pairs; empty for the system's."""
        return [parse_nameserver(entry) for entry in self.dns_nameservers]


def load_ingest(**overrides: object) -> IngestSettings:
    """Environment plus flag overrides (None means "not given"); SettingsError names a bad value."""
    return load(IngestSettings, **overrides)
