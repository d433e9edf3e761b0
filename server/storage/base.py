"""The storage interface every engine implements, and what they share: keys, the counters
operators read, and which stored files a browser may show inline.

A file is stored once, under a key the server makes (never a name a client chose), from a
local temporary file the upload was streamed to. A browser reaches it only through a URL
signed for a limited time: one engine signs its own (directory.py), the other asks its
object store for a presigned one (s3.py)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

# What a browser may render in place: raster images, audio and video. Everything else (HTML,
# SVG, PDF, text, ...) is served as a download, so a file a visitor uploaded can never run
# script in our origin.
INLINE_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/avif"}
)


def inline(content_type: str) -> bool:
    return content_type in INLINE_TYPES or content_type.startswith(("audio/", "video/"))


def content_disposition(content_type: str, file_name: str) -> str:
    """inline for what `inline` allows, attachment otherwise; the name in RFC 6266's
    filename* (UTF-8) with a plain ASCII fallback."""
    kind = "inline" if inline(content_type) else "attachment"
    ascii_name = (
        "".join(
            c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in file_name
        )
        or "file"
    )
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(file_name, safe='')}"


def new_key(account_id: int, inbox_id: int, suffix: str = "") -> str:
    """A fresh key: the tenant's prefix and 128 random bits (unguessable, never reused)."""
    return f"a{account_id}/i{inbox_id}/{secrets.token_urlsafe(16)}{suffix}"


class StorageCounters:
    """What /metrics shows of an engine (server/metrics.py)."""

    def __init__(self) -> None:
        self.files_stored = 0
        self.bytes_stored = 0
        self.failures = 0


class Storage(Protocol):
    name: str
    counters: StorageCounters

    async def start(self) -> None:
        """Connect (S3) or make the directory."""

    async def close(self) -> None: ...

    async def put(self, key: str, source: Path, content_type: str) -> None:
        """Store the file at `source` under `key` (the caller deletes `source`)."""

    async def delete(self, key: str) -> None:
        """Remove `key` if it exists (cleaning up after a failed write)."""

    async def url(self, key: str, content_type: str, file_name: str, base: str) -> str:
        """A URL a browser can GET the file at, for ATTACHMENT_URL_TTL seconds (`base`: this
        server's origin as the client reached it, for an engine whose URLs are ours)."""

    async def check(self) -> None:
        """Raise when the store cannot be reached (/readyz)."""
