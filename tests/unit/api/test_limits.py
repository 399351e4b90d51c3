"""Per-client request limits: the token bucket, and the middleware in the real app (refusals happen
before any query, so no database is needed: allowed requests here end in a parameter error)."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import CollectorRegistry

from api.app import create_app
from api.limits import RateLimiter
from api.settings import ApiSettings

LATEST = "/xrpc/fm.plyr.index.getLatestTracks"


def test_bucket_allows_a_burst_then_the_rate() -> None:
    limiter = RateLimiter(rate=2.0, burst=3, max_clients=2)
    assert [limiter.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", 0.0) == pytest.approx(0.5)
    assert limiter.take("a", 0.5) == 0.0  # one token back after 1/rate seconds
    assert limiter.take("b", 0.5) == 0.0  # each address has its own bucket
    limiter.take("c", 0.5)  # a third address evicts the oldest; "a" starts again full
    assert [limiter.take("a", 0.5) for _ in range(3)] == [0.0, 0.0, 0.0]


def app_with(**limits: object) -> httpx.AsyncClient:
    settings = ApiSettings(**limits)  # type: ignore[arg-type]
    app = create_app("postgresql://nobody@127.0.0.1:1/none", settings, CollectorRegistry())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://index.test")


async def test_a_client_over_its_rate_gets_429_with_retry_after() -> None:
    async with app_with(rate_limit_per_second=1, rate_limit_burst=3) as client:
        statuses = [(await client.get(LATEST, params={"limit": 0})).status_code for _ in range(3)]
        assert statuses == [400, 400, 400]  # allowed through: the parameter is refused by the query
        refused = await client.get(LATEST, params={"limit": 0})
        assert refused.status_code == 429
        assert refused.json()["error"] == "RateLimitExceeded"
        assert int(refused.headers["retry-after"]) >= 1
        # Health and metrics are never limited.
        assert (await client.get("/health")).status_code == 200
        metrics = (await client.get("/metrics")).text
        assert 'plyr_api_limited_total{limit="rate"} 1.0' in metrics


async def test_oversized_queries_and_bodies_are_refused() -> None:
    async with app_with(max_query_bytes=256, max_body_bytes=1024) as client:
        long_query = await client.get(LATEST, params={"artist": "x" * 300})
        assert (long_query.status_code, long_query.json()["error"]) == (414, "InvalidRequest")
        big = await client.post(LATEST, content=b"x" * 2048)
        assert (big.status_code, big.json()["error"]) == (413, "PayloadTooLarge")


async def test_no_rate_limit_when_turned_off() -> None:
    async with app_with(rate_limit_per_second=0, rate_limit_burst=1) as client:
        statuses = {(await client.get(LATEST, params={"limit": 0})).status_code for _ in range(20)}
        assert statuses == {400}
