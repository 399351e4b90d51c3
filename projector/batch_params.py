"""A batch's many values as one JSON parameter per statement, read back in SQL.

asyncpg encodes an array parameter element by element, and checks each element against abstract
base classes on the way: about a microsecond per value, which came to a fifth of the projector's
Python time per event (a batch sends some 25 values per event). orjson writes the same values as one
JSON text, in C, at tens of nanoseconds per value, and Postgres reads them back with
``jsonb_array_elements`` at about the cost of reading the arrays (both measured side by side on
5,000-row batches). Values must be what orjson writes and Postgres reads alike: str, int, None, and
aware datetimes (RFC 3339; a naive one is written as UTC, as asyncpg would send it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NAIVE_UTC


def document(values: Iterable[Any]) -> str:
    """The values (scalars, or rows as tuples) as one JSON array, the statement's parameter."""
    return orjson.dumps(values if isinstance(values, list | tuple) else list(values), option=_OPTIONS).decode()


def _field(index: int, sql_type: str) -> str:
    if sql_type == "text":
        return f"e->>{index}"
    # jsonb columns arrive as JSON text inside the document (the rows hold them serialized).
    return f"(e->>{index})::{sql_type}"


def rows(param: int, types: Sequence[str], names: Sequence[str], *, ordinality: str | None = None) -> str:
    """A FROM item: the rows of the JSON array of arrays in ``$param``, typed by ``types``, as
    ``n(names)`` (with their 1-based position as ``ordinality`` when named)."""
    fields = [_field(i, t) for i, t in enumerate(types)]
    columns = list(names)
    source = f"jsonb_array_elements(${param}::jsonb)"
    if ordinality is not None:
        source += " WITH ORDINALITY AS d(e, n)"
        fields.append("d.n")
        columns.append(ordinality)
    else:
        source += " AS e"
    return f"(SELECT {', '.join(fields)} FROM {source}) AS n({', '.join(columns)})"


def texts(param: int) -> str:
    """An array expression: the strings of the JSON array in ``$param`` (for ``= ANY(...)``)."""
    return f"ARRAY(SELECT jsonb_array_elements_text(${param}::jsonb))"
