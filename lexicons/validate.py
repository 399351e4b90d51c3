"""Record data against Lexicon schemas (atproto.com/specs/lexicon), as a value, never an exception.

``validate_record`` walks a record in atproto JSON form against the ``main`` record def of its
collection and returns :class:`Valid` or :class:`Invalid` (a short reason and a ``$.path``). Bad data
of any shape — wrong types, huge nesting, unknown unions — is an ``Invalid``; only a broken catalog
(our own lexicons) raises. Extra properties are allowed, as the spec says; open unions accept an
unknown ``$type`` without checking it; ``knownValues`` are advisory.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from schemas.ids import (
    is_at_identifier,
    is_at_uri,
    is_cid_syntax,
    is_datetime,
    is_did,
    is_handle,
    is_nsid,
    is_record_key,
    is_tid,
)

_MAX_DEPTH = 32
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:\S+$")
_LANGUAGE = re.compile(r"^(i|[a-z]{2,3})(-[a-zA-Z0-9]+)*$")
_FORMATS: dict[str, Callable[[str], bool]] = {
    "did": is_did,
    "handle": is_handle,
    "nsid": is_nsid,
    "at-uri": is_at_uri,
    "at-identifier": is_at_identifier,
    "datetime": is_datetime,
    "cid": is_cid_syntax,
    "record-key": is_record_key,
    "tid": is_tid,
    "uri": lambda s: len(s) <= 8192 and _URI.match(s) is not None,
    "language": lambda s: _LANGUAGE.match(s) is not None,
}


class LexiconError(Exception):
    """A lexicon of the catalog is broken (our bug, not bad data)."""


@dataclass(frozen=True, slots=True)
class Valid:
    """The record satisfies its lexicon."""


@dataclass(frozen=True, slots=True)
class Invalid:
    """The record does not: why, and where."""

    reason: str
    path: str


class _Fail(Exception):
    def __init__(self, reason: str, path: str) -> None:
        self.reason = reason
        self.path = path


def _graphemes(s: str) -> int:
    # Combining marks, variation selectors and zero-width joiners extend the previous cluster: a
    # close approximation of extended grapheme clusters without a dependency.
    count = 0
    join = False
    for ch in s:
        o = ord(ch)
        extends = (0x300 <= o <= 0x36F) or (0xFE00 <= o <= 0xFE0F) or (0x1F3FB <= o <= 0x1F3FF) or o == 0x200D
        if not extends and not join:
            count += 1
        join = o == 0x200D
    return count


class Catalog:
    """Lexicon documents by NSID."""

    def __init__(self, docs: dict[str, dict[str, Any]]) -> None:
        self._docs = docs

    @classmethod
    def from_dir(cls, root: Path | Traversable) -> Catalog:
        """Every ``*.json`` lexicon below ``root``."""
        docs: dict[str, dict[str, Any]] = {}

        def visit(folder: Path | Traversable) -> None:
            for entry in folder.iterdir():
                if entry.is_dir():
                    visit(entry)
                elif entry.name.endswith(".json"):
                    doc = json.loads(entry.read_text(encoding="utf-8"))
                    if isinstance(doc, dict) and isinstance(doc.get("id"), str):
                        docs[doc["id"]] = doc

        visit(root)
        return cls(docs)

    @classmethod
    def builtin(cls) -> Catalog:
        """This package's lexicons: fm.plyr.* and the com.atproto defs they reference."""
        return cls.from_dir(resources.files("lexicons"))

    @property
    def documents(self) -> dict[str, dict[str, Any]]:
        """The lexicon documents by NSID."""
        return self._docs

    def resolve(self, ref: str, context: str) -> dict[str, Any]:
        """The def a ``ref`` names, relative to the lexicon ``context``."""
        nsid, _, name = ref.partition("#")
        doc = self._docs.get(nsid or context)
        if doc is None:
            raise _Fail(f"unknown lexicon {nsid or context}", "")
        definition = doc.get("defs", {}).get(name or "main")
        if not isinstance(definition, dict):
            raise _Fail(f"unknown def {ref}", "")
        return definition

    def record_def(self, collection: str) -> dict[str, Any] | None:
        """The record def of a collection, or None."""
        doc = self._docs.get(collection)
        main = doc.get("defs", {}).get("main") if doc else None
        return main if isinstance(main, dict) and main.get("type") == "record" else None


def _check(cat: Catalog, schema: dict[str, Any], value: Any, path: str, ctx: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise _Fail("nested too deep", path)
    kind = schema.get("type")
    if kind == "ref":
        ref = schema["ref"]
        target_ctx = ref.split("#")[0] or ctx
        _check(cat, cat.resolve(ref, ctx), value, path, target_ctx, depth + 1)
    elif kind == "union":
        if not isinstance(value, dict) or not isinstance(value.get("$type"), str):
            raise _Fail("union value must be an object with $type", path)
        wanted = value["$type"]
        for ref in schema.get("refs", []):
            full = f"{ctx}{ref}" if ref.startswith("#") else ref
            if full == wanted or full == f"{wanted}#main" or (full.endswith("#main") and full[:-5] == wanted):
                _check(cat, cat.resolve(ref, ctx), value, path, full.split("#")[0], depth + 1)
                return
        if schema.get("closed"):
            raise _Fail(f"$type {wanted!r} is not one of the union's refs", path)
    elif kind in ("object", "record"):
        obj = schema.get("record", schema) if kind == "record" else schema
        if not isinstance(value, dict):
            raise _Fail("expected an object", path)
        nullable = set(obj.get("nullable", []))
        for name in obj.get("required", []):
            if name not in value or (value[name] is None and name not in nullable):
                raise _Fail(f"required field {name!r} is missing", path)
        for name, prop in obj.get("properties", {}).items():
            if name in value and not (value[name] is None and name in nullable):
                _check(cat, prop, value[name], f"{path}.{name}", ctx, depth + 1)
    elif kind == "array":
        if not isinstance(value, list):
            raise _Fail("expected an array", path)
        if len(value) > schema.get("maxLength", len(value)) or len(value) < schema.get("minLength", 0):
            raise _Fail(f"array length {len(value)} out of bounds", path)
        for i, item in enumerate(value):
            _check(cat, schema["items"], item, f"{path}[{i}]", ctx, depth + 1)
    elif kind == "string":
        _string(schema, value, path)
    elif kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Fail("expected an integer", path)
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            raise _Fail(f"integer {value} out of range", path)
        _enum(schema, value, path)
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise _Fail("expected a boolean", path)
        _enum(schema, value, path)
    elif kind == "blob":
        _blob(schema, value, path)
    elif kind == "bytes":
        if not (isinstance(value, dict) and set(value) == {"$bytes"} and isinstance(value["$bytes"], str)):
            raise _Fail("expected {$bytes}", path)
        text = value["$bytes"]
        try:
            size = len(base64.b64decode(text + "=" * (-len(text) % 4), validate=True))
        except (binascii.Error, ValueError) as err:
            raise _Fail("bad base64 in $bytes", path) from err
        if size > schema.get("maxLength", size) or size < schema.get("minLength", 0):
            raise _Fail(f"{size} bytes out of bounds", path)
    elif kind == "cid-link":
        if not (
            isinstance(value, dict)
            and set(value) == {"$link"}
            and isinstance(value["$link"], str)
            and is_cid_syntax(value["$link"])
        ):
            raise _Fail("expected {$link}", path)
    elif kind == "unknown":
        if not isinstance(value, dict):
            raise _Fail("expected an object", path)
    elif kind == "token":
        raise _Fail("a token is not a value", path)
    else:
        raise LexiconError(f"unsupported lexicon type {kind!r} at {path}")


def _enum(schema: dict[str, Any], value: Any, path: str) -> None:
    if "const" in schema and value != schema["const"]:
        raise _Fail(f"must be {schema['const']!r}", path)
    if "enum" in schema and value not in schema["enum"]:
        raise _Fail("not one of the allowed values", path)


def _string(schema: dict[str, Any], value: Any, path: str) -> None:
    if not isinstance(value, str):
        raise _Fail("expected a string", path)
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > schema.get("maxLength", size) or size < schema.get("minLength", 0):
        raise _Fail(f"string of {size} bytes out of bounds", path)
    if "maxGraphemes" in schema or "minGraphemes" in schema:
        g = _graphemes(value)
        if g > schema.get("maxGraphemes", g) or g < schema.get("minGraphemes", 0):
            raise _Fail(f"string of {g} graphemes out of bounds", path)
    fmt = schema.get("format")
    if fmt is not None:
        check = _FORMATS.get(fmt)
        if check is None:
            raise LexiconError(f"unknown string format {fmt!r}")
        if not check(value):
            raise _Fail(f"not a valid {fmt}", path)
    _enum(schema, value, path)


def _blob(schema: dict[str, Any], value: Any, path: str) -> None:
    if not isinstance(value, dict) or value.get("$type") != "blob":
        raise _Fail("expected a blob", path)
    ref, mime, size = value.get("ref"), value.get("mimeType"), value.get("size")
    if not (isinstance(ref, dict) and isinstance(ref.get("$link"), str) and is_cid_syntax(ref["$link"])):
        raise _Fail("blob ref must be {$link}", path)
    if not isinstance(mime, str) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _Fail("blob needs mimeType and size", path)
    if size > schema.get("maxSize", size):
        raise _Fail(f"blob of {size} bytes exceeds {schema['maxSize']}", path)
    accept = schema.get("accept")
    if accept and not any(a == "*/*" or a == mime or (a.endswith("/*") and mime.startswith(a[:-1])) for a in accept):
        raise _Fail(f"blob type {mime!r} is not accepted", path)


def validate_record(catalog: Catalog, collection: str, record: object) -> Valid | Invalid:
    """Check ``record`` against the lexicon of ``collection``."""
    definition = catalog.record_def(collection)
    if definition is None:
        return Invalid("unknown collection", "$")
    if not isinstance(record, dict):
        return Invalid("record must be an object", "$")
    if record.get("$type") != collection:
        return Invalid(f"$type must be {collection!r}", "$.$type")
    return validate_value(catalog, definition, record, collection)


def validate_value(catalog: Catalog, schema: dict[str, Any], value: object, context: str) -> Valid | Invalid:
    """Check ``value`` against any schema of the catalog (a query's output, a view), refs resolved
    relative to the lexicon ``context``."""
    try:
        _check(catalog, schema, value, "$", context, 0)
    except _Fail as fail:
        return Invalid(fail.reason, fail.path or "$")
    except RecursionError:
        return Invalid("nested too deep", "$")
    return Valid()
