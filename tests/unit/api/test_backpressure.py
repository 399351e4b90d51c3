"""Backpressure on a stand-in app: the in-flight bound refuses at once, the deadline answers 503."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.types import Receive, Scope, Send

from api.backpressure import Backpressure


class Gate:
    """An ASGI app that answers 200 once ``open`` is set (or at once when it is)."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.entered = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.entered += 1
        await self.open.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def _client(app: Backpressure) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_past_the_in_flight_bound_a_request_is_refused_at_once() -> None:
    gate, registry = Gate(), CollectorRegistry()
    app = Backpressure(gate, seconds=30, max_in_flight=3, registry=registry)
    async with _client(app) as client:
        held = [asyncio.create_task(client.get("/xrpc/fm.plyr.index.getTotals")) for _ in range(3)]
        while gate.entered < 3:
            await asyncio.sleep(0.001)
        start = time.perf_counter()
        refused = await client.get("/xrpc/fm.plyr.index.getTotals")
        assert time.perf_counter() - start < 1
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"] == "Unavailable" and "in flight" in refused.json()["message"]
        assert gate.entered == 3  # the refused request never reached the app
        # Health and metrics are never refused.
        gate.open.set()
        assert all(r.status_code == 200 for r in await asyncio.gather(*held))
        assert (await client.get("/health")).status_code == 200
    assert registry.get_sample_value("plyr_api_shed_total", {"reason": "in_flight"}) == 1
    assert registry.get_sample_value("plyr_api_in_flight") == 0


async def test_a_request_past_its_deadline_is_answered_503_and_the_slot_freed() -> None:
    gate, registry = Gate(), CollectorRegistry()
    app = Backpressure(gate, seconds=0.2, max_in_flight=1, registry=registry)
    async with _client(app) as client:
        start = time.perf_counter()
        late = await client.get("/xrpc/fm.plyr.index.getTrack")
        assert 0.2 <= time.perf_counter() - start < 2
        assert late.status_code == 503 and late.json()["error"] == "Unavailable"
        assert "within 0.2 s" in late.json()["message"]
        gate.open.set()
        assert (await client.get("/xrpc/fm.plyr.index.getTrack")).status_code == 200
    assert registry.get_sample_value("plyr_api_shed_total", {"reason": "deadline"}) == 1


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics", "/xrpc/fm.plyr.index.admin.takedownRepo"])
async def test_exempt_paths_have_no_deadline(path: str) -> None:
    gate = Gate()
    app = Backpressure(gate, seconds=0.05, max_in_flight=1, registry=CollectorRegistry())
    async with _client(app) as client:
        pending = asyncio.create_task(client.get(path))
        await asyncio.sleep(0.2)
        assert not pending.done()
        gate.open.set()
        assert (await pending).status_code == 200


async def test_a_timeout_raised_by_the_app_itself_is_not_taken_for_the_deadline() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise TimeoutError("the app's own")

    shedder = Backpressure(app, seconds=30, max_in_flight=1, registry=CollectorRegistry())
    with pytest.raises(TimeoutError, match="the app's own"):
        await shedder({"type": "http", "path": "/xrpc/x"}, _never, _discard)


async def _never() -> dict[str, object]:
    await asyncio.Event().wait()
    return {}


async def _discard(message: object) -> None:
    return None
