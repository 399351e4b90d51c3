"""The pure parts around backfill: relay pages read, getRepo failures translated to what the worker does,
the progress line, and the backfill settings."""

from __future__ import annotations

import io

import orjson
import pytest
from pydantic import ValidationError

from ingest.backfill import SyncLimits, SyncStats
from ingest.errors import DiscoveryError, SyncFailure
from ingest.progress import progress_bar, render
from ingest.repo_client import parse_repos_page, repo_fetch_error
from ingest.repo_export import ExportFailure
from ingest.settings import PLYR_COLLECTIONS, IngestSettings
from runtime.outbound import FetchError, FetchProblem

DID = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"


def test_a_relay_page_keeps_the_dids_and_counts_the_rest() -> None:
    body = orjson.dumps({"repos": [{"did": DID}, {"did": "nope"}, {"handle": "x"}, "str"], "cursor": "abc"})
    page = parse_repos_page(body)
    assert (page.dids, page.invalid, page.cursor) == ([DID], 3, "abc")
    assert parse_repos_page(orjson.dumps({"repos": []})).cursor is None
    assert parse_repos_page(orjson.dumps({"repos": [], "cursor": ""})).cursor is None


@pytest.mark.parametrize(
    "body",
    [
        b"<html>",
        b"[]",
        orjson.dumps({"cursor": "x"}),
        orjson.dumps({"repos": {}}),
        orjson.dumps({"repos": [], "cursor": 5}),
    ],
)
def test_what_is_not_a_relay_page_is_a_discovery_error(body: bytes) -> None:
    with pytest.raises(DiscoveryError):
        parse_repos_page(body)


def test_get_repo_failures_say_what_to_do() -> None:
    limited = repo_fetch_error(FetchError(FetchProblem.STATUS, "HTTP 429", 429, retry_after=7.0))
    assert (limited.failure, limited.retry_after) == (SyncFailure.RATE_LIMITED, 7.0)
    gone = repo_fetch_error(
        FetchError(FetchProblem.STATUS, "HTTP 400", 400, body=orjson.dumps({"error": "RepoTakendown", "message": "x"}))
    )
    assert (gone.failure, gone.detail) == (SyncFailure.REPO_UNAVAILABLE, "HTTP 400 RepoTakendown")
    assert repo_fetch_error(FetchError(FetchProblem.STATUS, "HTTP 404", 404, body=b"no")).detail == "HTTP 404"
    busy = repo_fetch_error(FetchError(FetchProblem.STATUS, "HTTP 503", 503, retry_after=3.0))
    assert (busy.failure, busy.retry_after) == (SyncFailure.PDS_UNAVAILABLE, 3.0)
    assert repo_fetch_error(FetchError(FetchProblem.TIMEOUT, "slow")).failure is SyncFailure.PDS_UNAVAILABLE
    assert repo_fetch_error(FetchError(FetchProblem.NETWORK, "refused")).failure is SyncFailure.PDS_UNAVAILABLE
    assert repo_fetch_error(FetchError(FetchProblem.TOO_LARGE, "big")).failure is ExportFailure.TOO_LARGE
    assert repo_fetch_error(FetchError(FetchProblem.PRIVATE_ADDRESS, "10.0.0.1")).failure is SyncFailure.NO_PDS


def test_the_progress_line() -> None:
    stats = SyncStats(started=0.0, done=30, records=12_345, pending=90)
    assert render(stats, 60.0, label="backfilling") == (
        "backfilling [######..................] 30/120 repos · 12,345 records · 30.0 repos/min · ETA 3:00"
    )
    stats.failing = 2
    assert "2 failing" in render(stats, 60.0)
    done = SyncStats(started=0.0, done=5, records=10, pending=0)
    assert render(done, 3725.0).endswith("5/5 repos · 10 records · 0.1 repos/min · in 1:02:05")
    assert render(SyncStats(started=0.0), 0.0).startswith("sync [########################] 0/0 repos")


async def test_the_progress_bar_draws_only_on_a_terminal() -> None:
    stats = SyncStats(started=0.0, done=1, pending=1)
    quiet = io.StringIO()
    async with progress_bar(stats, quiet, clock=lambda: 1.0):
        stats.done = 2
    assert quiet.getvalue() == ""
    shown = io.StringIO()
    async with progress_bar(stats, shown, force=True, interval=0.01, clock=lambda: 1.0):
        stats.pending = 0
    text = shown.getvalue()
    assert text.startswith("\r") and text.endswith("\n")
    assert text.rstrip("\n").rsplit("\r", 1)[1].startswith("sync [########################] 2/2 repos")


def test_backfill_settings() -> None:
    assert IngestSettings().relay_url == "https://bsky.network"
    assert IngestSettings(upstreams=("ws://127.0.0.1:2470/xrpc/x",)).relay_url == "http://127.0.0.1:2470"
    assert IngestSettings(upstreams=("relay.example.com",)).relay_url == "https://relay.example.com"
    assert IngestSettings(backfill_relay="https://Relay.Example.com/").relay_url == "https://relay.example.com"
    assert IngestSettings().backfill_discover == PLYR_COLLECTIONS
    with pytest.raises(ValidationError):
        IngestSettings(backfill_relay="https://relay.example.com/xrpc")
    with pytest.raises(ValidationError):
        IngestSettings(backfill_relay="wss://relay.example.com")
    with pytest.raises(ValidationError):
        IngestSettings(backfill_discover=("fm.plyr.*",))
    limits = SyncLimits.from_settings(IngestSettings(backfill_per_pds=3, backfill_max_records=10, max_clock_skew_s=9))
    assert (limits.per_pds, limits.export.max_records, limits.max_clock_skew_s) == (3, 10, 9)
