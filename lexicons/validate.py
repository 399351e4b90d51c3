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
        self._compiler = _Compiler(self)
        # id(schema) → (schema, context, check): schemas are the catalog's own long-lived dicts (or a
        # caller's); the schema is kept so its id cannot be reused while the entry lives.
        self._compiled: dict[tuple[int, str], tuple[dict[str, Any], _Check]] = {}

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

    def compiled(self, schema: dict[str, Any], context: str) -> _Check:
        """``schema`` (relative to the lexicon ``context``) as a compiled check, compiled once."""
        key = (id(schema), context)
        entry = self._compiled.get(key)
        if entry is None or entry[0] is not schema:
            entry = (schema, self._compiler.compile(schema, context))
            self._compiled[key] = entry
        return entry[1]

    def record_def(self, collection: str) -> dict[str, Any] | None:
        """The record def of a collection, or None."""
        doc = self._docs.get(collection)
        main = doc.get("defs", {}).get("main") if doc else None
        return main if isinstance(main, dict) and main.get("type") == "record" else None


# A compiled check: (value, depth) → None, or _Fail with the path below the node (".a[0].b").
_Check = Callable[[Any, int], None]


class _Compiler:
    """Turns schemas into nested closures once, so validating a record does no schema lookups.

    Refs compile lazily on first use (lexicons may be recursive, and a ref that cannot be resolved
    fails the value that reaches it, not the catalog). Depth counts as the schema is walked: every
    node checks it, a ref or a union's branch adds one, as do an object's properties and an array's
    items (a leaf, which cannot nest, does not check it). The path of a failure is built only on the
    way out of a failure.
    """

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._lazy: dict[tuple[str, str], _Check] = {}

    def compile(self, schema: dict[str, Any], ctx: str) -> _Check:
        kind = schema.get("type")
        if kind == "ref":
            return self._deeper(self._resolved(schema["ref"], ctx))
        if kind == "union":
            return self._union(schema, ctx)
        if kind in ("object", "record"):
            return self._object(schema.get("record", schema) if kind == "record" else schema, ctx)
        if kind == "array":
            return self._array(schema, ctx)
        # A leaf cannot nest, so it checks no depth: values nested too deep are refused by the object,
        # array or union that holds them.
        return self._leaf(schema, kind)

    def _resolved(self, ref: str, ctx: str) -> _Check:
        """The def ``ref`` names, compiled on first call (with the depth it is called at)."""
        key = (ref, ctx)
        found = self._lazy.get(key)
        if found is not None:
            return found
        target_ctx = ref.split("#")[0] or ctx
        compiled: list[_Check] = []

        def check(value: Any, depth: int) -> None:
            if not compiled:
                compiled.append(self.compile(self._catalog.resolve(ref, ctx), target_ctx))
            compiled[0](value, depth)

        self._lazy[key] = check
        return check

    @staticmethod
    def _deeper(inner: _Check) -> _Check:
        def check(value: Any, depth: int) -> None:
            if depth > _MAX_DEPTH:
                raise _Fail("nested too deep", "")
            inner(value, depth + 1)

        return check

    def _union(self, schema: dict[str, Any], ctx: str) -> _Check:
        branches: list[tuple[str, _Check]] = []
        for ref in schema.get("refs", []):
            full = f"{ctx}{ref}" if ref.startswith("#") else ref
            branches.append((full, self._resolved(ref, ctx)))
        closed = bool(schema.get("closed"))

        def check(value: Any, depth: int) -> None:
            if depth > _MAX_DEPTH:
                raise _Fail("nested too deep", "")
            if not isinstance(value, dict) or not isinstance(value.get("$type"), str):
                raise _Fail("union value must be an object with $type", "")
            wanted = value["$type"]
            for full, branch in branches:
                if full == wanted or full == f"{wanted}#main" or (full.endswith("#main") and full[:-5] == wanted):
                    branch(value, depth + 1)
                    return
            if closed:
                raise _Fail(f"$type {wanted!r} is not one of the union's refs", "")

        return check

    def _object(self, obj: dict[str, Any], ctx: str) -> _Check:
        required = tuple(obj.get("required", []))
        nullable = frozenset(obj.get("nullable", []))
        props = tuple((name, self.compile(prop, ctx)) for name, prop in obj.get("properties", {}).items())

        def check(value: Any, depth: int) -> None:
            if depth > _MAX_DEPTH:
                raise _Fail("nested too deep", "")
            if not isinstance(value, dict):
                raise _Fail("expected an object", "")
            for name in required:
                if name not in value or (value[name] is None and name not in nullable):
                    raise _Fail(f"required field {name!r} is missing", "")
            for name, sub in props:
                if name in value:
                    item = value[name]
                    if item is None and name in nullable:
                        continue
                    try:
                        sub(item, depth + 1)
                    except _Fail as fail:
                        fail.path = f".{name}{fail.path}"
                        raise

        return check

    def _array(self, schema: dict[str, Any], ctx: str) -> _Check:
        items = self.compile(schema["items"], ctx)
        most, least = schema.get("maxLength"), schema.get("minLength", 0)

        def check(value: Any, depth: int) -> None:
            if depth > _MAX_DEPTH:
                raise _Fail("nested too deep", "")
            if not isinstance(value, list):
                raise _Fail("expected an array", "")
            if (most is not None and len(value) > most) or len(value) < least:
                raise _Fail(f"array length {len(value)} out of bounds", "")
            for i, item in enumerate(value):
                try:
                    items(item, depth + 1)
                except _Fail as fail:
                    fail.path = f"[{i}]{fail.path}"
                    raise

        return check

    @staticmethod
    def _leaf(schema: dict[str, Any], kind: object) -> _Check:
        if kind == "string":
            return _string(schema)
        if kind == "integer":
            return lambda value, _: _integer(schema, value)
        if kind == "boolean":
            return lambda value, _: _boolean(schema, value)
        if kind == "blob":
            return lambda value, _: _blob(schema, value)
        if kind == "bytes":
            return lambda value, _: _bytes(schema, value)
        if kind == "cid-link":
            return lambda value, _: _cid_link(value)
        if kind == "unknown":
            return lambda value, _: _unknown(value)
        if kind == "token":
            return lambda value, _: _token(value)

        def unsupported(value: Any, depth: int) -> None:
            raise LexiconError(f"unsupported lexicon type {kind!r}")

        return unsupported


def _integer(schema: dict[str, Any], value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Fail("expected an integer", "")
    if value < schema.get("minimum", value) or value > schema.get("maximum", value):
        raise _Fail(f"integer {value} out of range", "")
    _enum(schema, value)


def _boolean(schema: dict[str, Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise _Fail("expected a boolean", "")
    _enum(schema, value)


def _bytes(schema: dict[str, Any], value: Any) -> None:
    if not (isinstance(value, dict) and set(value) == {"$bytes"} and isinstance(value["$bytes"], str)):
        raise _Fail("expected {$bytes}", "")
    text = value["$bytes"]
    try:
        size = len(base64.b64decode(text + "=" * (-len(text) % 4), validate=True))
    except (binascii.Error, ValueError) as err:
        raise _Fail("bad base64 in $bytes", "") from err
    if size > schema.get("maxLength", size) or size < schema.get("minLength", 0):
        raise _Fail(f"{size} bytes out of bounds", "")


def _cid_link(value: Any) -> None:
    if not (
        isinstance(value, dict)
        and set(value) == {"$link"}
        and isinstance(value["$link"], str)
        and is_cid_syntax(value["$link"])
    ):
        raise _Fail("expected {$link}", "")


def _unknown(value: Any) -> None:
    if not isinstance(value, dict):
        raise _Fail("expected an object", "")


def _token(value: Any) -> None:
    raise _Fail("a token is not a value", "")


def _enum(schema: dict[str, Any], value: Any) -> None:
    if "const" in schema and value != schema["const"]:
        raise _Fail(f"must be {schema['const']!r}", "")
    if "enum" in schema and value not in schema["enum"]:
        raise _Fail("not one of the allowed values", "")


def _string(schema: dict[str, Any]) -> _Check:
    """The check of a string schema, its bounds and format looked up once."""
    most, least = schema.get("maxLength"), schema.get("minLength", 0)
    most_g, least_g = schema.get("maxGraphemes"), schema.get("minGraphemes", 0)
    counts_graphemes = "maxGraphemes" in schema or "minGraphemes" in schema
    fmt = schema.get("format")
    fmt_check = _FORMATS.get(fmt) if fmt is not None else None
    enumerated = "const" in schema or "enum" in schema

    def check(value: Any, depth: int) -> None:
        if not isinstance(value, str):
            raise _Fail("expected a string", "")
        n = len(value)
        # A code point is 1 to 4 UTF-8 bytes and at most one grapheme: most strings are decided by
        # their length alone, without encoding or segmenting them.
        if (most is not None and n * 4 > most) or n < least:
            size = len(value.encode("utf-8", "surrogatepass"))
            if (most is not None and size > most) or size < least:
                raise _Fail(f"string of {size} bytes out of bounds", "")
        if counts_graphemes and ((most_g is not None and n > most_g) or n < least_g or least_g > 0):
            g = _graphemes(value)
            if (most_g is not None and g > most_g) or g < least_g:
                raise _Fail(f"string of {g} graphemes out of bounds", "")
        if fmt is not None:
            if fmt_check is None:
                raise LexiconError(f"unknown string format {fmt!r}")
            if not fmt_check(value):
                raise _Fail(f"not a valid {fmt}", "")
        if enumerated:
            _enum(schema, value)

    return check


def _blob(schema: dict[str, Any], value: Any) -> None:
    if not isinstance(value, dict) or value.get("$type") != "blob":
        raise _Fail("expected a blob", "")
    ref, mime, size = value.get("ref"), value.get("mimeType"), value.get("size")
    if not (isinstance(ref, dict) and isinstance(ref.get("$link"), str) and is_cid_syntax(ref["$link"])):
        raise _Fail("blob ref must be {$link}", "")
    if not isinstance(mime, str) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _Fail("blob needs mimeType and size", "")
    if size > schema.get("maxSize", size):
        raise _Fail(f"blob of {size} bytes exceeds {schema['maxSize']}", "")
    accept = schema.get("accept")
    if accept and not any(a == "*/*" or a == mime or (a.endswith("/*") and mime.startswith(a[:-1])) for a in accept):
        raise _Fail(f"blob type {mime!r} is not accepted", "")


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
        catalog.compiled(schema, context)(value, 0)
    except _Fail as fail:
        return Invalid(fail.reason, "$" + fail.path)
    except RecursionError:
        return Invalid("nested too deep", "$")
    return Valid()
