"""XRPC queries and procedures driven by their lexicons: the lexicon is the one place a method's
parameters, input and output are defined. Parameters and input are parsed and checked against it here
(a bad one is a 400 InvalidRequest naming it), and the OpenAPI operation is generated from it, so the
two cannot drift. The admin methods (``fm.plyr.index.admin.*``, api/admin.py) are kept apart from the
public queries: they are served only when an admin token is configured.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.params import Depends
from fastapi.responses import Response

from api.cache import SharedAnswers
from api.errors import COMMON_STATUSES, InvalidRequest, openapi_errors
from lexicons.validate import Catalog, Invalid, validate_value

Params = dict[str, Any]
Handler = Callable[[Request, Params], Awaitable[dict[str, Any]]]

NAMESPACE = "fm.plyr.index."
# The operators' methods (api/admin.py): served only when an admin token is configured.
ADMIN_NAMESPACE = "fm.plyr.index.admin."
_CATALOG = Catalog.builtin()
# Largest procedure input read (the admin procedures take a DID and a reason).
_MAX_INPUT_BYTES = 64 * 1024


def catalog() -> Catalog:
    """The lexicons this API serves (and the record lexicons they reference)."""
    return _CATALOG


def query_lexicons() -> dict[str, dict[str, Any]]:
    """NSID → the main def of each public query of the index's namespace (the admin ones apart)."""
    return {
        nsid: doc["defs"]["main"]
        for nsid, doc in _CATALOG.documents.items()
        if nsid.startswith(NAMESPACE)
        and not nsid.startswith(ADMIN_NAMESPACE)
        and doc["defs"].get("main", {}).get("type") == "query"
    }


def admin_lexicons() -> dict[str, dict[str, Any]]:
    """NSID → the main def of each admin query and procedure."""
    return {
        nsid: doc["defs"]["main"]
        for nsid, doc in _CATALOG.documents.items()
        if nsid.startswith(ADMIN_NAMESPACE) and doc["defs"].get("main", {}).get("type") in ("query", "procedure")
    }


def _main(nsid: str) -> dict[str, Any]:
    definition: dict[str, Any] = _CATALOG.documents[nsid]["defs"]["main"]
    return definition


def _one(name: str, schema: dict[str, Any], raw: str) -> Any:
    if "\x00" in raw:
        # Postgres text cannot hold NUL: refused here rather than failing the query with a 500.
        raise InvalidRequest(f"{name} must not contain NUL characters")
    kind = schema.get("type")
    value: Any = raw
    if kind == "integer":
        try:
            value = int(raw, 10)
        except ValueError:
            raise InvalidRequest(f"{name} must be an integer") from None
    elif kind == "boolean":
        if raw not in ("true", "false"):
            raise InvalidRequest(f"{name} must be true or false")
        value = raw == "true"
    checked = validate_value(_CATALOG, schema, value, NAMESPACE)
    if isinstance(checked, Invalid):
        raise InvalidRequest(f"{name}: {checked.reason}")
    known = schema.get("knownValues")
    if kind == "string" and known and value not in known:
        # Our own queries treat knownValues as the closed set they implement.
        raise InvalidRequest(f"{name} must be one of {', '.join(known)}")
    return value


def parse_params(definition: dict[str, Any], query: Mapping[str, list[str]]) -> Params:
    """The query string checked against the lexicon's params; defaults filled in."""
    spec = definition.get("parameters", {})
    props: dict[str, Any] = spec.get("properties", {})
    unknown = sorted(set(query) - set(props))
    if unknown:
        raise InvalidRequest(f"unknown parameter {unknown[0]!r}")
    out: Params = {}
    for name, schema in props.items():
        given = query.get(name, [])
        if schema.get("type") != "array" and len(given) > 1:
            raise InvalidRequest(f"{name} given more than once")
        if not given:
            if name in spec.get("required", []):
                raise InvalidRequest(f"{name} is required")
            out[name] = schema.get("default")
            continue
        out[name] = _one(name, schema, given[0])
    return out


def to_json_schema(schema: dict[str, Any], context: str, within: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A lexicon schema as OpenAPI's JSON Schema, refs inlined.

    Only a real cycle is cut (a ref already expanded on the path down becomes ``{}``, which constrains
    nothing): a cut by depth turned the strings of deep views into ``{"type": "object"}``, declaring
    every conforming response invalid. A union is ``anyOf``: its variants may overlap.
    """
    kind = schema.get("type")
    doc = {"description": schema["description"]} if "description" in schema else {}
    if kind == "ref":
        ref = schema["ref"]
        target = ref.split("#")[0] or context
        qualified = f"{target}#{ref.split('#', 1)[1] if '#' in ref else 'main'}"
        if qualified in within:
            return doc
        return to_json_schema(_CATALOG.resolve(ref, context), target, within | {qualified})
    if kind == "union":
        refs = [to_json_schema({"type": "ref", "ref": r}, context, within) for r in schema.get("refs", [])]
        return {"anyOf": refs, **doc}
    if kind == "object":
        props = {k: to_json_schema(v, context, within) for k, v in schema.get("properties", {}).items()}
        out: dict[str, Any] = {"type": "object", "properties": props, **doc}
        if schema.get("required"):
            out["required"] = list(schema["required"])
        return out
    if kind == "array":
        return {"type": "array", "items": to_json_schema(schema["items"], context, within), **doc}
    if kind == "integer":
        out = {"type": "integer", **doc}
        for lex, js in (("minimum", "minimum"), ("maximum", "maximum"), ("default", "default")):
            if lex in schema:
                out[js] = schema[lex]
        return out
    if kind == "string":
        out = {"type": "string", **doc}
        if "format" in schema:
            out["format"] = schema["format"]
        if "knownValues" in schema:
            out["enum"] = list(schema["knownValues"])
        for key in ("minLength", "maxLength", "default"):
            if key in schema:
                out[key] = schema[key]
        return out
    if kind == "boolean":
        return {"type": "boolean", **doc}
    return {"type": "object", **doc}


def openapi_operation(nsid: str, definition: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI ``parameters`` and 200 response of a query, from its lexicon."""
    spec = definition.get("parameters", {})
    required = set(spec.get("required", []))
    params = [
        {"name": name, "in": "query", "required": name in required, "schema": to_json_schema(schema, nsid)}
        for name, schema in spec.get("properties", {}).items()
    ]
    output = to_json_schema(definition["output"]["schema"], nsid)
    return {
        "parameters": params,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": output}}},
            **openapi_errors(*COMMON_STATUSES, 404),
        },
    }


def _frozen(params: Params) -> tuple[object, ...]:
    """The checked parameters as a key (defaults filled in, so an omitted one and its default agree)."""
    return tuple((name, tuple(v) if isinstance(v, list) else v) for name, v in sorted(params.items()))


# The app.state attributes holding answers shared between requests (api/app.py): the feed pages, kept
# for API_FEED_CACHE_SECONDS, and the search pages, kept for API_SEARCH_CACHE_SECONDS. Answers are
# kept as the response's bytes: nothing the collector has to walk, nothing to serialise again.
FEED_ANSWERS = "feed_answers"
SEARCH_ANSWERS = "search_answers"


def add_query(
    router: APIRouter,
    nsid: str,
    handler: Handler,
    cache: str | None = None,
    *,
    shared: str | None = None,
    same: Callable[[Params], Params] | None = None,
    dependencies: Sequence[Depends] = (),
    responses: dict[str, Any] | None = None,
) -> None:
    """Serve ``GET /xrpc/<nsid>`` with ``handler``; ``cache`` is the Cache-Control of a success;
    ``shared`` names the ``SharedAnswers`` of ``app.state`` (``FEED_ANSWERS``, ``SEARCH_ANSWERS``) for a
    query every client asks in the same few forms (a feed's first pages, the totals, common searches),
    ``same`` maps its parameters to those of the answer they share (spellings of one search);
    ``dependencies`` run first (the admin token), ``responses`` add to the OpenAPI answers."""
    definition = _main(nsid)

    async def endpoint(request: Request) -> Response:
        raw: dict[str, list[str]] = {}
        for key, value in request.query_params.multi_items():
            raw.setdefault(key, []).append(value)
        params = parse_params(definition, raw)

        async def answer() -> tuple[bytes, str]:
            body = orjson.dumps(await handler(request, params))
            # A strong validator of the exact bytes: a client (or CDN) revalidating gets a 304 when
            # nothing it would see has changed.
            return body, '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'

        if shared is not None:
            answers: SharedAnswers[tuple[object, ...], tuple[bytes, str]] = getattr(request.app.state, shared)
            body, etag = await answers.get((nsid, *_frozen(params if same is None else same(params))), answer)
        else:
            body, etag = await answer()
        headers = {"ETag": etag, "Cache-Control": cache or "no-cache"}
        if etag in (request.headers.get("if-none-match") or "").replace(" ", "").split(","):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    operation = openapi_operation(nsid, definition)
    operation["responses"].update(responses or {})
    router.add_api_route(
        f"/xrpc/{nsid}",
        endpoint,
        methods=["GET"],
        name=nsid,
        summary=definition.get("description"),
        openapi_extra=operation,
        dependencies=list(dependencies),
    )


def add_procedure(
    router: APIRouter,
    nsid: str,
    handler: Handler,
    *,
    dependencies: Sequence[Depends] = (),
    responses: dict[str, Any] | None = None,
) -> None:
    """Serve ``POST /xrpc/<nsid>`` with ``handler``, its JSON input checked against the lexicon's
    ``input`` schema first (unknown properties refused, as unknown query parameters are)."""
    definition = _main(nsid)
    schema = definition["input"]["schema"]
    known = set(schema.get("properties", {}))

    async def endpoint(request: Request) -> Response:
        raw = await request.body()
        if len(raw) > _MAX_INPUT_BYTES:
            raise InvalidRequest("input too large")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidRequest("input must be a JSON object") from None
        if not isinstance(body, dict):
            raise InvalidRequest("input must be a JSON object")
        unknown = sorted(set(body) - known)
        if unknown:
            raise InvalidRequest(f"unknown property {unknown[0]!r}")
        checked = validate_value(_CATALOG, schema, body, nsid)
        if isinstance(checked, Invalid):
            raise InvalidRequest(f"{checked.path}: {checked.reason}")
        out = orjson.dumps(await handler(request, body))
        return Response(out, media_type="application/json", headers={"Cache-Control": "no-store"})

    operation = openapi_operation(nsid, {**definition, "parameters": {}})
    operation["responses"].update(openapi_errors(413))
    operation["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": to_json_schema(schema, nsid)}},
    }
    operation["responses"].update(responses or {})
    router.add_api_route(
        f"/xrpc/{nsid}",
        endpoint,
        methods=["POST"],
        name=nsid,
        summary=definition.get("description"),
        openapi_extra=operation,
        dependencies=list(dependencies),
    )
