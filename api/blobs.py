"""The blob mirror bucket (S3 / R2 through aioboto3): is a blob there, a presigned GET for it, upload.

Objects are keyed ``blobs/<cid>``: content-addressed, so an object, once there, never changes, and a
positive answer to "is it there" can be cached for the life of the process (bounded). Negative
answers are not cached: the mirror may upload the blob any moment. Storage failures other than
"not there" raise :class:`StorageError` (retriable); callers decide whether to fall back.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aioboto3
from botocore.config import Config  # type: ignore[import-untyped]  # botocore ships no type information
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from api.settings import ApiSettings

_ABSENT = frozenset({"404", "NoSuchKey", "NotFound", "403", "AccessDenied"})
_MIME = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")


class StorageError(Exception):
    """The bucket could not answer; trying again later may help."""

    retriable = True


def blob_key(cid: str) -> str:
    """The object key of a blob."""
    return f"blobs/{cid}"


def content_type(mime: str | None) -> str:
    """The record's mimeType if it is a plain ``type/subtype``; otherwise ``application/octet-stream``."""
    if mime is not None and _MIME.match(mime.lower()):
        return mime.lower()
    return "application/octet-stream"


class BlobStore:
    """One bucket through one aioboto3 S3 client (opened by :func:`open_blob_store`)."""

    def __init__(self, client: Any, bucket: str, presign_seconds: int, known_max: int = 200_000) -> None:
        self._client = client
        self.bucket = bucket
        self._presign_seconds = presign_seconds
        self._known: OrderedDict[str, None] = OrderedDict()
        self._known_max = known_max

    def _remember(self, cid: str) -> None:
        self._known[cid] = None
        self._known.move_to_end(cid)
        while len(self._known) > self._known_max:
            self._known.popitem(last=False)

    async def exists(self, cid: str) -> bool:
        """Whether ``blobs/<cid>`` is in the bucket (HEAD; positive answers cached)."""
        if cid in self._known:
            self._known.move_to_end(cid)
            return True
        try:
            await self._client.head_object(Bucket=self.bucket, Key=blob_key(cid))
        except ClientError as err:
            if str(err.response.get("Error", {}).get("Code")) in _ABSENT:
                return False
            raise StorageError(f"head_object: {err}") from err
        except (BotoCoreError, OSError) as err:
            raise StorageError(f"head_object: {type(err).__name__}") from err
        self._remember(cid)
        return True

    async def presign(self, cid: str) -> str:
        """A GET URL for the blob valid for ``presign_seconds``."""
        try:
            url: str = await self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": blob_key(cid)}, ExpiresIn=self._presign_seconds
            )
        except (BotoCoreError, ClientError) as err:
            raise StorageError(f"presign: {type(err).__name__}") from err
        return url

    async def put(self, cid: str, body: bytes | bytearray, mime: str | None) -> None:
        """Upload a verified blob."""
        try:
            await self._client.put_object(
                Bucket=self.bucket, Key=blob_key(cid), Body=body, ContentType=content_type(mime)
            )
        except (BotoCoreError, ClientError, OSError) as err:
            raise StorageError(f"put_object: {type(err).__name__}") from err
        self._remember(cid)

    async def present(self) -> set[str]:
        """Every CID under ``blobs/`` (one listing: cheaper than a HEAD per candidate)."""
        found: set[str] = set()
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix="blobs/"):
                for item in page.get("Contents", ()):
                    found.add(str(item["Key"]).removeprefix("blobs/"))
        except (BotoCoreError, ClientError, OSError) as err:
            raise StorageError(f"list_objects_v2: {type(err).__name__}") from err
        for cid in found:
            self._remember(cid)
        return found


@asynccontextmanager
async def open_blob_store(settings: ApiSettings) -> AsyncIterator[BlobStore | None]:
    """The bucket of ``settings`` (None when no ``s3_bucket`` is configured)."""
    if settings.s3_bucket is None:
        yield None
        return
    session = aioboto3.Session(
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        region_name=settings.s3_region,
    )
    # Path-style addressing: R2 and local S3 APIs serve it, and the bucket stays out of the hostname.
    # Bounded waits: the stream endpoint asks the bucket inside a client's request.
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"max_attempts": 2},
        connect_timeout=3,
        read_timeout=30,
    )
    async with session.client("s3", endpoint_url=settings.s3_endpoint_url, config=config) as client:
        yield BlobStore(client, settings.s3_bucket, settings.presign_seconds)
