"""JSON responses serialised with orjson (fast, and exact for the datetimes and ints views hold)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``body`` as an ``application/json`` response."""
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)
