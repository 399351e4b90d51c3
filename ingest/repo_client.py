"""The two sync XRPC calls backfill makes (I/O): ``com.atproto.sync.listReposByCollection`` on the relay
and ``com.atproto.sync.getRepo`` on a repo's PDS.

Spec: atproto.com/specs/sync; the lexicons of both methods (``listReposByCollection``: ``collection``,
``limit`` 1-2000, ``cursor`` → ``{cursor?, repos: [{did}]}``; ``getRepo``: ``did`` → a CAR).

Both go through :class:`runtime.outbound.Outbound`: the relay is operator configuration (the trusted
session), a PDS endpoint comes from a DID document (the guarded session: no private addresses, each
redirect checked). Every answer is bounded in size and time. Failures are translated here, at the
adapter: :class:`~ingest.errors.DiscoveryError` for the relay, :class:`~ingest.errors.RepoSyncError`
with a closed reason (and the server's Retry-After) for a PDS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

import orjson

from ingest.errors import DiscoveryError, RepoSyncError, SyncFailure
from ingest.repo_export import ExportFailure
from runtime.outbound import FetchError, FetchProblem, Outbound
from schemas.ids import is_did

LIST_REPOS: Final = "/xrpc/com.atproto.sync.listReposByCollection"
GET_REPO: Final = "/xrpc/com.atproto.sync.getRepo"
# A page of 2000 DIDs is about 100 KB.
_MAX_PAGE: Final = 8 * 1024 * 1024
_MAX_CURSOR: Final = 1024


@dataclass(frozen=True, slots=True)
class ReposPage:
    """One page of ``listReposByCollection``: the DIDs (syntax-checked), how many entries were not
    DIDs, and the cursor of the next page (None: this was the last)."""

    dids: list[str]
    invalid: int
    cursor: str | None


class RelayBusyError(DiscoveryError):
    """The relay did not answer now (no connection, a timeout, a 5xx, a 429); asking again later may
    work, after ``retry_after`` seconds if it said."""

    def __init__(self, detail: str, *, status: int | None, retry_after: float | None) -> None:
        super().__init__(detail)
        self.status = status
        self.retry_after = retry_after


def parse_repos_page(body: bytes) -> ReposPage:
    """A ``listReposByCollection`` answer; DiscoveryError if it is not one."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise DiscoveryError("listReposByCollection answer is not JSON") from err
    if not isinstance(value, dict) or not isinstance(value.get("repos"), list):
        raise DiscoveryError("listReposByCollection answer has no repos list")
    cursor = value.get("cursor")
    if cursor is not None and (not isinstance(cursor, str) or len(cursor) > _MAX_CURSOR):
        raise DiscoveryError("listReposByCollection cursor is not a string")
    dids: list[str] = []
    invalid = 0
    for entry in value["repos"]:
        did = entry.get("did") if isinstance(entry, dict) else None
        if isinstance(did, str) and is_did(did):
            dids.append(did)
        else:
            invalid += 1
    return ReposPage(dids, invalid, cursor or None)


def _xrpc_error(body: bytes) -> str:
    """The ``error`` name of an XRPC error body, or "" when it has none."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    name = value.get("error") if isinstance(value, dict) else None
    return name[:64] if isinstance(name, str) else ""


def repo_fetch_error(err: FetchError) -> RepoSyncError:
    """What a failed getRepo means for the repo."""
    if err.problem is FetchProblem.STATUS and err.status == 429:
        return RepoSyncError(SyncFailure.RATE_LIMITED, str(err), retry_after=err.retry_after)
    if err.problem is FetchProblem.TOO_LARGE:
        return RepoSyncError(ExportFailure.TOO_LARGE, str(err))
    if err.problem in (FetchProblem.UNSAFE_URL, FetchProblem.PRIVATE_ADDRESS):
        return RepoSyncError(SyncFailure.NO_PDS, str(err))
    if err.problem is FetchProblem.STATUS and err.status is not None and err.status < 500:
        name = _xrpc_error(err.body)
        return RepoSyncError(SyncFailure.REPO_UNAVAILABLE, f"HTTP {err.status} {name}".rstrip())
    return RepoSyncError(SyncFailure.PDS_UNAVAILABLE, str(err), retry_after=err.retry_after)


class RepoClient:
    """listReposByCollection and getRepo on an open :class:`~runtime.outbound.Outbound`."""

    def __init__(self, outbound: Outbound, *, page_timeout: float = 30.0) -> None:
        self._outbound = outbound
        self._page_timeout = page_timeout

    async def list_repos(self, relay: str, collection: str, *, cursor: str | None, limit: int) -> ReposPage:
        """One page of the repos holding ``collection``, from the relay origin ``relay``."""
        query: dict[str, str | int] = {"collection": collection, "limit": limit}
        if cursor is not None:
            query["cursor"] = cursor
        url = f"{relay.rstrip('/')}{LIST_REPOS}?{urlencode(query)}"
        try:
            body = await self._outbound.get_bytes(
                url, guarded=False, max_bytes=_MAX_PAGE, time_limit=self._page_timeout
            )
        except FetchError as err:
            if err.retriable:
                raise RelayBusyError(f"{relay}: {err}", status=err.status, retry_after=err.retry_after) from err
            raise DiscoveryError(f"{relay} did not list {collection}: {err}") from err
        return parse_repos_page(body)

    async def get_repo(self, pds: str, did: str, *, max_bytes: int, time_limit: float) -> bytes:
        """The full export (CAR) of ``did`` from the PDS origin ``pds``; RepoSyncError if not had."""
        url = f"{pds.rstrip('/')}{GET_REPO}?{urlencode({'did': did})}"
        try:
            return await self._outbound.get_bytes(url, guarded=True, max_bytes=max_bytes, time_limit=time_limit)
        except FetchError as err:
            raise repo_fetch_error(err) from err
