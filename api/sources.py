"""The collaborators the audio stream and the media mirror share, built from settings in one place:
trusted CDN origins, outbound HTTP, the DID → PDS resolver and the mirror bucket (if configured).

:func:`open_sources` is an async context manager; leaving it closes the HTTP sessions and the S3
client. A malformed ``API_TRUSTED_CDN_ORIGINS`` entry raises :class:`runtime.urls.UnsafeUrl` on entry,
so a bad value stops startup instead of silently trusting nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from api.blobs import BlobStore, open_blob_store
from api.identity import DidResolver
from api.settings import ApiSettings
from runtime.outbound import Outbound
from runtime.urls import Origin, trusted_origins


@dataclass(frozen=True)
class AudioSources:
    """Where audio can come from, for one process."""

    trusted_cdn: frozenset[Origin]
    outbound: Outbound
    resolver: DidResolver
    store: BlobStore | None


@asynccontextmanager
async def open_sources(settings: ApiSettings) -> AsyncIterator[AudioSources]:
    """Open the sessions and the bucket client for ``settings``."""
    trusted = trusted_origins(settings.trusted_cdn_origins)
    async with Outbound(allow_private=settings.allow_private_pds) as outbound, open_blob_store(settings) as store:
        resolver = DidResolver(outbound, settings.plc_url, trusted=trusted)
        yield AudioSources(trusted, outbound, resolver, store)
