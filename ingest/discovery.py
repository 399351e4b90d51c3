"""Backfill discovery (I/O): which repos hold ``fm.plyr.*`` records, from the relay.

Spec: atproto.com/specs/sync ("Backfill"), the ``com.atproto.sync.listReposByCollection`` lexicon.

:func:`discover` pages through ``listReposByCollection`` for each configured collection (exact NSIDs:
the relay takes no wildcards) and queues the repos not held yet as ``backfilling`` with reason
``discovered``; the :class:`~ingest.backfill.SyncWorker` takes them from there. Each page's repos are
queued before the next page is asked for, so an interrupted discovery keeps what it found, and running
it again only adds what is new. A busy relay (no answer, 5xx, 429) is asked again after its
Retry-After or a growing delay; a cursor handed out twice ends the paging.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ingest.errors import DiscoveryError
from ingest.metrics import IngestMetrics
from ingest.repo_client import RelayBusyError, RepoClient, ReposPage
from ingest.repo_state import RepoStateStore, SyncState
from runtime.backoff import Backoff
from runtime.logging import get_logger

log = get_logger("ingest.discovery")

_MAX_PAGES: Final = 1_000_000
_DISCOVERY_ATTEMPTS: Final = 6


@dataclass(frozen=True, slots=True)
class Discovered:
    """What discovery found: DIDs listed, newly queued, entries that were not DIDs, pages read."""

    listed: int
    queued: int
    invalid: int
    pages: int


async def discover(
    client: RepoClient,
    store: RepoStateStore,
    *,
    relay: str,
    collections: Sequence[str],
    page_limit: int,
    metrics: IngestMetrics | None = None,
) -> Discovered:
    """Page through listReposByCollection for each collection and queue the repos not held yet.

    Each page's new repos are queued before the next page is asked for, so an interrupted discovery
    keeps what it found. Raises DiscoveryError when the relay fails for good."""
    held = set(await store.load_all())
    seen: set[str] = set()
    queued = invalid = pages = 0
    for collection in collections:
        cursor: str | None = None
        cursors: set[str] = set()
        while pages < _MAX_PAGES:
            page = await _page(client, relay, collection, cursor, page_limit, metrics)
            pages += 1
            invalid += page.invalid
            seen.update(page.dids)
            new = [did for did in dict.fromkeys(page.dids) if did not in held]
            if new:
                await store.request(new, SyncState.BACKFILLING, "discovered")
                held.update(new)
                queued += len(new)
                if metrics is not None:
                    metrics.repos_discovered.inc(len(new))
            log.info("discovery_page", collection=collection, repos=len(page.dids), queued=len(new))
            # A relay that hands back a cursor it gave before would page forever.
            if not page.dids or page.cursor is None or page.cursor in cursors:
                break
            cursors.add(page.cursor)
            cursor = page.cursor
    return Discovered(len(seen), queued, invalid, pages)


async def _page(
    client: RepoClient, relay: str, collection: str, cursor: str | None, limit: int, metrics: IngestMetrics | None
) -> ReposPage:
    """One page, asked again (after the relay's Retry-After, or a growing delay) while the relay is busy."""
    backoff = Backoff(base=1.0, cap=30.0, reset_after=float("inf"))
    for attempt in range(1, _DISCOVERY_ATTEMPTS + 1):
        try:
            return await client.list_repos(relay, collection, cursor=cursor, limit=limit)
        except RelayBusyError as err:
            if attempt == _DISCOVERY_ATTEMPTS:
                raise DiscoveryError(f"{err} (after {attempt} attempts)") from err
            if metrics is not None and err.status == 429:
                metrics.repo_rate_limited.inc()
            delay = min(60.0, err.retry_after) if err.retry_after is not None else backoff.next_delay()
            log.warning("discovery_retry", collection=collection, attempt=attempt, delay_s=round(delay, 2))
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
