"""The websocket subscription to one upstream: an async iterator of raw frames (I/O only).

``subscribe`` opens ``com.atproto.sync.subscribeRepos`` with an optional ``cursor`` and yields each
binary frame as it arrives; ``recv()`` is awaited only when the consumer asks for the next frame, so
backpressure reaches the socket. A stream silent for ``stall_timeout`` seconds, a dropped
connection or a refused handshake raise :class:`~ingest.errors.UpstreamError`; a frame over
``max_frame_bytes`` closes the connection unread and raises its subclass
:class:`~ingest.errors.FrameTooLargeError`. Reconnecting (with backoff, from the right cursor) is the
caller's job.

Spec: atproto.com/specs/event-stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlencode, urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import connect
from websockets.frames import CloseCode

from ingest.errors import FrameTooLargeError, UpstreamError

SUBSCRIBE_PATH = "/xrpc/com.atproto.sync.subscribeRepos"


def subscribe_url(upstream: str, cursor: int | None) -> str:
    """The subscribeRepos URL of an upstream given as a host or a full URL, with the cursor."""
    parts = urlsplit(upstream if "://" in upstream else f"wss://{upstream}")
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    if not path.endswith(SUBSCRIBE_PATH):
        path += SUBSCRIBE_PATH
    query = urlencode({"cursor": cursor}) if cursor is not None else ""
    return urlunsplit((scheme, parts.netloc, path, query, ""))


async def subscribe(
    upstream: str,
    cursor: int | None,
    *,
    stall_timeout: float,
    max_frame_bytes: int,
    open_timeout: float = 10.0,
) -> AsyncIterator[bytes]:
    """Yield raw frames from ``upstream`` starting after ``cursor`` (None: live)."""
    url = subscribe_url(upstream, cursor)
    try:
        async with connect(
            url,
            max_size=max_frame_bytes,
            open_timeout=open_timeout,
            close_timeout=2,
            ping_interval=20,
            ping_timeout=20,
            # Frames are DAG-CBOR, already dense; deflate would cost CPU for little.
            compression=None,
            user_agent_header="plyr-index",
        ) as ws:
            while True:
                try:
                    async with asyncio.timeout(stall_timeout):
                        frame = await ws.recv()
                except TimeoutError as err:
                    raise UpstreamError(f"no frame for {stall_timeout}s: stalled") from err
                if isinstance(frame, str):
                    # The protocol sends binary frames only; a text frame is a broken upstream.
                    raise UpstreamError("text frame on a binary event stream")
                yield frame
    except websockets.ConnectionClosedOK as err:
        raise UpstreamError(f"closed by upstream: {err.rcvd}") from err
    except websockets.ConnectionClosed as err:
        if err.sent is not None and err.sent.code == CloseCode.MESSAGE_TOO_BIG:
            # We closed it: the next frame is over max_frame_bytes (websockets refuses it unread).
            raise FrameTooLargeError(f"frame over {max_frame_bytes} bytes: {err}") from err
        raise UpstreamError(f"connection lost: {err}") from err
    except (OSError, websockets.InvalidHandshake, websockets.InvalidURI, TimeoutError) as err:
        raise UpstreamError(f"cannot connect to {url}: {err}") from err
