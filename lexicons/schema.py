"""Is a Lexicon document itself well formed (atproto.com/specs/lexicon)? Returns the problems found.

Checks what the spec makes structural: ``lexicon`` is 1, ``id`` is an NSID, primary types (record,
query, procedure, subscription, permission-set) appear only as ``main``, named defs are concrete
types (not a bare ``ref``/``unknown``), records have a key and an ``object`` body, objects list their
required fields among their properties, params hold only primitives, and every ref resolves in the
catalog given.
"""

from __future__ import annotations

from typing import Any

from schemas.ids import is_nsid

_PRIMARY = frozenset({"record", "query", "procedure", "subscription", "permission-set"})
_FIELD = frozenset(
    {"null", "boolean", "integer", "string", "bytes", "cid-link", "blob", "array", "object", "ref", "union", "unknown"}
)
_PARAM = frozenset({"boolean", "integer", "string", "unknown", "array"})
_NAMED_FORBIDDEN = frozenset({"ref", "union", "unknown"})


def _field(schema: Any, path: str, known: set[str], ctx: str, out: list[str]) -> None:
    if not isinstance(schema, dict):
        out.append(f"{path}: a schema must be an object")
        return
    kind = schema.get("type")
    if kind not in _FIELD:
        out.append(f"{path}: unknown type {kind!r}")
        return
    if kind == "object":
        props = schema.get("properties", {})
        if not isinstance(props, dict):
            out.append(f"{path}: properties must be an object")
            return
        for name in schema.get("required", []):
            if name not in props:
                out.append(f"{path}: required {name!r} is not a property")
        for name, prop in props.items():
            _field(prop, f"{path}.{name}", known, ctx, out)
    elif kind == "array":
        _field(schema.get("items"), f"{path}[]", known, ctx, out)
    elif kind in ("ref", "union"):
        refs = [schema.get("ref")] if kind == "ref" else schema.get("refs", [])
        for ref in refs:
            if not isinstance(ref, str):
                out.append(f"{path}: a ref must be a string")
                continue
            full = f"{ctx}{ref}" if ref.startswith("#") else ref
            if full not in known and f"{full}#main" not in known:
                out.append(f"{path}: ref {ref!r} does not resolve")


def check_lexicon(doc: Any, known: set[str] | None = None) -> list[str]:
    """Problems of one lexicon document; ``known`` are the resolvable def names (``nsid#name``), and
    refs are not checked when it is None."""
    out: list[str] = []
    if not isinstance(doc, dict):
        return ["a lexicon must be an object"]
    if doc.get("lexicon") != 1 or isinstance(doc.get("lexicon"), bool):
        out.append("lexicon must be the integer 1")
    nsid = doc.get("id")
    if not isinstance(nsid, str) or not is_nsid(nsid):
        out.append(f"id {nsid!r} is not an NSID")
        nsid = ""
    defs = doc.get("defs")
    if not isinstance(defs, dict):
        return [*out, "defs must be an object"]
    names = known if known is not None else None
    for name, definition in defs.items():
        path = f"{nsid}#{name}"
        if not isinstance(definition, dict):
            out.append(f"{path}: a def must be an object")
            continue
        kind = definition.get("type")
        if kind in _PRIMARY:
            if name != "main":
                out.append(f"{path}: a {kind} must be the main def")
            _primary(definition, path, names, nsid, out)
        elif kind in _NAMED_FORBIDDEN:
            out.append(f"{path}: a named def cannot be a bare {kind}")
        elif kind == "token":
            continue
        elif names is not None:
            _field(definition, path, names, nsid, out)
        elif kind not in _FIELD:
            out.append(f"{path}: unknown type {kind!r}")
    return out


def _primary(definition: dict[str, Any], path: str, known: set[str] | None, ctx: str, out: list[str]) -> None:
    kind = definition["type"]
    if kind == "record":
        body = definition.get("record")
        if not isinstance(definition.get("key"), str):
            out.append(f"{path}: a record needs a key")
        if not isinstance(body, dict) or body.get("type") != "object":
            out.append(f"{path}: a record's body must be an object schema")
        elif known is not None:
            _field(body, f"{path}.record", known, ctx, out)
        return
    if kind in ("query", "procedure", "subscription"):
        params = definition.get("parameters")
        if params is not None:
            if not isinstance(params, dict) or params.get("type") != "params":
                out.append(f"{path}: parameters must be of type params")
            else:
                for pname, prop in params.get("properties", {}).items():
                    ptype = prop.get("type") if isinstance(prop, dict) else None
                    if ptype not in _PARAM:
                        out.append(f"{path}.parameters.{pname}: {ptype!r} is not a parameter type")
                for req in params.get("required", []):
                    if req not in params.get("properties", {}):
                        out.append(f"{path}.parameters: required {req!r} is not a property")
        for part in ("input", "output"):
            body = definition.get(part)
            if body is None:
                continue
            if not isinstance(body, dict) or not isinstance(body.get("encoding"), str):
                out.append(f"{path}.{part}: needs an encoding")
            elif known is not None and "schema" in body:
                _field(body["schema"], f"{path}.{part}", known, ctx, out)
        message = definition.get("message")
        if known is not None and isinstance(message, dict) and "schema" in message:
            _field(message["schema"], f"{path}.message", known, ctx, out)


def def_names(docs: dict[str, dict[str, Any]]) -> set[str]:
    """Every ``nsid#name`` a catalog of documents defines."""
    return {f"{nsid}#{name}" for nsid, doc in docs.items() for name in doc.get("defs", {})}
