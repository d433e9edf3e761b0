"""S3-compatible object storage (STORAGE_URL=s3://bucket/prefix): what a deploy with several
web machines uses, each seeing every file. Files are written with their content type;
browsers fetch them straight from the store through presigned GET URLs (SigV4, by
aiobotocore: never hand-written), whose response headers (type, disposition) are part of the
signature. S3_ENDPOINT_URL points at any S3-compatible service (MinIO, R2, ...)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from server.settings import Settings
from server.storage.base import StorageCounters, content_disposition

log = logging.getLogger(__name__)


def parse_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of s3://bucket/prefix; the prefix ends with "/" unless empty."""
    rest = url[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


class S3Storage:
    name = "s3"

    def __init__(self, settings: Settings) -> None:
        assert settings.storage_url is not None
        self.bucket, self.prefix = parse_url(settings.storage_url)
        self.ttl = int(settings.attachment_url_ttl)
        self.settings = settings
        self.counters = StorageCounters()
        self._client: Any = None
        self._stack = contextlib.AsyncExitStack()

    async def start(self) -> None:
        s = self.settings
        session = get_session()
        config = AioConfig(
            signature_version="s3v4",
            connect_timeout=s.s3_timeout,
            read_timeout=s.s3_timeout,
            retries={"max_attempts": 2},
            s3={"addressing_style": "path" if s.s3_path_style else "auto"},
        )
        self._client = await self._stack.enter_async_context(
            session.create_client(
                "s3",
                region_name=s.s3_region,
                endpoint_url=s.s3_endpoint_url,
                aws_access_key_id=s.s3_access_key_id,
                aws_secret_access_key=s.s3_secret_access_key,
                config=config,
            )
        )

    async def close(self) -> None:
        await self._stack.aclose()

    async def put(self, key: str, source: Path, content_type: str) -> None:
        size = await asyncio.to_thread(lambda: source.stat().st_size)
        try:
            with source.open("rb") as body:
                await self._client.put_object(
                    Bucket=self.bucket,
                    Key=self.prefix + key,
                    Body=body,
                    ContentType=content_type,
                )
        except Exception:
            self.counters.failures += 1
            log.warning("storing %s in s3://%s failed", key, self.bucket, exc_info=True)
            raise
        self.counters.files_stored += 1
        self.counters.bytes_stored += size

    async def delete(self, key: str) -> None:
        try:
            await self._client.delete_object(Bucket=self.bucket, Key=self.prefix + key)
        except Exception:
            self.counters.failures += 1
            log.warning(
                "deleting %s from s3://%s failed: remove it by hand",
                key,
                self.bucket,
                exc_info=True,
            )

    async def url(self, key: str, content_type: str, file_name: str, base: str) -> str:
        return await self._client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": self.prefix + key,
                "ResponseContentType": content_type,
                "ResponseContentDisposition": content_disposition(content_type, file_name),
            },
            ExpiresIn=self.ttl,
        )

    async def check(self) -> None:
        await self._client.head_bucket(Bucket=self.bucket)
