"""Live events: ``/xrpc/fm.plyr.index.subscribeChanges`` over WebSocket.

Each message is one row of the projector's change log as JSON (``fm.plyr.index.defs#change``), in seq
order. A client resumes with ``?cursor=<last seq it saw>`` and misses nothing: the log is appended in
commit order (see schemas/sql/read/0003_api_reads.sql), so rows below a seq already served never
appear later. Changes of hidden repos are not sent. A cursor ahead of the log gets a ``FutureCursor``
error frame, as atproto's event streams do.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from api import views
from api.sql import visible
from runtime.logging import get_logger

log = get_logger("api.live")
router = APIRouter()
_BATCH = 500
_POLL_SECONDS = 0.25


def change_message(row: asyncpg.Record) -> dict[str, Any]:
    """One change log row as the message clients receive."""
    out: dict[str, Any] = {"seq": row["seq"], "kind": row["kind"], "did": row["did"], "at": views.when(row["at"])}
    for key, column in (("uri", "uri"), ("subjectUri", "subject_uri"), ("detail", "detail")):
        if row[column] is not None:
            out[key] = row[column]
    return out


async def _error(ws: WebSocket, name: str, message: str) -> None:
    await ws.send_json({"error": name, "message": message})
    await ws.close(code=1008)


@router.websocket("/xrpc/fm.plyr.index.subscribeChanges")
async def subscribe_changes(ws: WebSocket) -> None:
    await ws.accept()
    pool: asyncpg.Pool = ws.app.state.pool
    raw = ws.query_params.get("cursor")
    if raw is not None and not raw.isdigit():
        await _error(ws, "InvalidRequest", "cursor must be a non-negative integer")
        return
    newest = await pool.fetchval("SELECT coalesce(max(seq), 0) FROM changes")
    after = int(raw) if raw is not None else newest
    if after > newest:
        await _error(ws, "FutureCursor", f"cursor {after} is ahead of the newest change {newest}")
        return
    # The client only listens; a task waiting on receive() is how its going away is noticed.
    closed = asyncio.create_task(_until_closed(ws))
    try:
        while not closed.done():
            rows = await pool.fetch(
                "SELECT ch.seq, ch.kind, ch.did, ch.uri, ch.subject_uri, ch.detail, ch.at"
                f" FROM changes ch {visible('a', 'ch.did')} WHERE ch.seq > $1 ORDER BY ch.seq LIMIT $2",
                after,
                _BATCH,
            )
            for row in rows:
                await ws.send_json(change_message(row))
            if rows:
                after = rows[-1]["seq"]
                continue
            # Only hidden repos' rows (or none) after the cursor: step past what was scanned.
            scanned = await pool.fetchval(
                "SELECT max(seq) FROM (SELECT seq FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2) s", after, _BATCH
            )
            if scanned is not None:
                after = scanned
            else:
                await asyncio.wait({closed}, timeout=_POLL_SECONDS)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client went away mid-send
    finally:
        closed.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
            await closed


async def _until_closed(ws: WebSocket) -> None:
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass
