"""Lexicon validation for the projector: a record → None when valid, else a reason. Never raises.

Wraps :mod:`lexicons.validate` with the project's own catalog (the fm.plyr.* lexicons and the
com.atproto defs they reference).
"""

from __future__ import annotations

from typing import Any

from lexicons.validate import Catalog, Invalid, validate_record


class RecordValidator:
    """Callable validator over a catalog loaded once."""

    def __init__(self, catalog: Catalog | None = None) -> None:
        self._catalog = catalog or Catalog.builtin()

    def __call__(self, collection: str, record: dict[str, Any]) -> str | None:
        result = validate_record(self._catalog, collection, record)
        if isinstance(result, Invalid):
            return f"{result.path}: {result.reason}"
        return None
