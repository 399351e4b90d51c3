"""The OpenAPI document generated from the lexicons declares what the API really sends."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from api.xrpc import catalog, openapi_operation, query_lexicons, to_json_schema

_TRACK = {
    "uri": "at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/fm.plyr.track/3t00000000017",
    "cid": "bafyreifgruanlott4nhkw7lecsz2klra7srvwwh6at2x2wpb4ncufhdo2e",
    "title": "Don't Stop",
    "artist": {"did": "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "handle": "artist.test"},
    "features": [{"did": "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb", "handle": "fan.test"}],
    "fileType": "mp3",
    "likeCount": 2,
    "commentCount": 0,
    "createdAt": "2026-10-06T00:00:00.000Z",
    "indexedAt": "2026-11-01T00:00:17.000Z",
    "streamUrl": "http://127.0.0.1/stream/did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/3t00000000017",
}


def _output(nsid: str) -> dict[str, Any]:
    op = openapi_operation(nsid, query_lexicons()[nsid])
    schema: dict[str, Any] = op["responses"]["200"]["content"]["application/json"]["schema"]
    return schema


def test_deep_views_keep_their_types() -> None:
    # A top-tracks item's track's featured artist is 8 levels down: a cut by depth used to declare its
    # did and handle objects, so every real response with a feature failed schema validation
    # (found by schemathesis on getTopTracks and getActivity).
    schema = _output("fm.plyr.index.getTopTracks")
    feature = schema["properties"]["items"]["items"]["properties"]["track"]["properties"]["features"]["items"]
    assert feature["properties"]["did"]["type"] == "string"
    jsonschema.validate({"items": [{"likers": 2, "track": _TRACK}]}, schema)


@pytest.mark.parametrize("nsid", sorted(query_lexicons()))
def test_every_output_schema_is_finite_and_valid(nsid: str) -> None:
    jsonschema.Draft202012Validator.check_schema(_output(nsid))


def test_a_cycle_of_refs_is_cut_without_constraining() -> None:
    docs = catalog().documents
    node = {"type": "ref", "ref": "#node"}
    doc = {"lexicon": 1, "id": "test.cycle", "defs": {"node": {"type": "object", "properties": {"next": node}}}}
    docs["test.cycle"] = doc
    try:
        out = to_json_schema(node, "test.cycle")
    finally:
        del docs["test.cycle"]
    assert out == {"type": "object", "properties": {"next": {}}}


@pytest.mark.parametrize("nsid", sorted(query_lexicons()))
def test_every_query_declares_its_errors_with_the_xrpc_body(nsid: str) -> None:
    responses = openapi_operation(nsid, query_lexicons()[nsid])["responses"]
    for status in ("400", "404", "414", "429", "503"):
        body = responses[status]["content"]["application/json"]["schema"]
        assert body["required"] == ["error", "message"]
