"""schemathesis against the API's served OpenAPI document: every operation, valid and invalid inputs.

The app (``api.app.create_app``) runs under uvicorn on real Postgres, over read models the real
projector built from the same corpus as tests/integration/test_api.py, published on the real broker.
schemathesis reads ``/openapi.json`` from the running server, generates requests for each operation
from its parameter schemas (positive: values the schema allows; negative: values it forbids), sends
them over HTTP and holds every response to: no 5xx, a status the document declares for the
operation, the declared content type, and a body that matches the declared schema for that status
(200 against the lexicon's output, errors against the XRPC error body).

The server runs in its own thread with its own event loop: schemathesis' transport is synchronous,
so the test's thread blocks on each request while the server answers it. The budget is
``EXAMPLES`` per operation and mode (``PLYR_FUZZ_SCALE`` multiplies it, as for the fuzz tests).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from prometheus_client import CollectorRegistry
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from api.settings import ApiSettings
from tests.fuzz.harness import scale
from tests.integration.test_api import build_read_model, corpus
from tests.services import free_port

pytestmark = pytest.mark.integration

SCHEMA = "schemathesis_read"
EXAMPLES = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _cases() -> list[tuple[str, schemathesis.GenerationMode]]:
    """Each path of the served document (its OpenAPI needs no database) with each generation mode.

    Negative cases need a constraint to break: a route whose parameters are all free strings (the
    stream's path) or that has none (getTotals) is run with valid inputs only.
    """
    app = create_app("postgresql://unused@127.0.0.1:1/unused", ApiSettings())
    out = []
    for path, ops in sorted(app.openapi()["paths"].items()):
        out.append((path, schemathesis.GenerationMode.POSITIVE))
        if any(p["in"] == "query" for p in ops["get"].get("parameters", [])):
            out.append((path, schemathesis.GenerationMode.NEGATIVE))
    return out


@pytest.fixture(scope="module")
async def read_model(kafka_bootstrap: str, database_url: str) -> str:
    events, _ = corpus()
    topic = f"test.schemathesis.{uuid.uuid4().hex[:8]}"
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as pool:
        await build_read_model(kafka_bootstrap, database_url, pool, topic, events, SCHEMA)
    return database_url


@pytest.fixture(scope="module")
def base_url(read_model: str) -> Iterator[str]:
    port = free_port()
    api = ApiSettings(
        schema_name=SCHEMA,
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        trusted_cdn_origins=("https://cdn.example",),
        # One client sending as fast as it can: the rate limit is tested in test_limits.py.
        rate_limit_per_second=0,
        # DID documents are never fetched from the network here: a closed port answers at once.
        plc_url=f"http://127.0.0.1:{free_port()}",
    )
    app = create_app(read_model, api, CollectorRegistry())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, name="schemathesis-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def schema(base_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json")


def test_the_document_declares_response_schemas(schema: schemathesis.BaseSchema) -> None:
    """Without declared bodies the conformance check has nothing to hold responses to."""
    raw = schema.raw_schema
    for path, ops in raw["paths"].items():
        for method, op in ops.items():
            responses = op["responses"]
            for status in ("400", "503"):
                assert "application/json" in responses[status]["content"], (method, path, status)
            if path.startswith("/xrpc/"):
                assert responses["200"]["content"]["application/json"]["schema"]["properties"], path


@pytest.mark.parametrize(("path", "mode"), _cases())
def test_every_operation_conforms(
    schema: schemathesis.BaseSchema, base_url: str, path: str, mode: schemathesis.GenerationMode
) -> None:
    operation = schema[path]["GET"]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=max(1, round(EXAMPLES * scale())),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    def run(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(base_url=base_url, checks=CHECKS)

    run()
