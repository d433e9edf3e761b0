"""The default engine: files in a directory (DATA_DIR/attachments unless STORAGE_URL names
another, `file:///path`), served by this server at GET /attachments/{key} through signed,
expiring URLs: an HMAC (a key derived from SECRET_KEY_BASE) over the key, the expiry and the
type and name the file is served with. A URL that does not verify, or has expired, is a 403;
a client cannot change the type a file is served as, nor reach another file with a
signature made for this one.

Every web process must see the same directory (one machine, or a shared volume); for several
machines, use S3 (s3.py)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web

from server.errors import ApiError
from server.settings import Settings
from server.storage.base import StorageCounters, content_disposition

ROUTE = "/attachments/{key:.+}"
_KEY = re.compile(r"a[0-9]{1,19}/i[0-9]{1,19}/[A-Za-z0-9_-]{16,64}(\.thumb\.jpg)?")
_MAX_PARAM = 1024


def _forbidden() -> ApiError:
    return ApiError(403, {"error": "this link is not valid or has expired"})


class DirectoryStorage:
    name = "directory"

    def __init__(self, settings: Settings) -> None:
        url = settings.storage_url
        self.root = Path(url[len("file://") :]) if url else settings.data_dir / "attachments"
        self.ttl = settings.attachment_url_ttl
        assert settings.secret_key_base is not None
        self._secret = hmac.new(
            settings.secret_key_base.encode(), b"attachment-urls", hashlib.sha256
        ).digest()
        self.counters = StorageCounters()

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        pass

    def path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a storage key: {key!r}")
        return self.root / key

    async def put(self, key: str, source: Path, content_type: str) -> None:
        target = self.path(key)
        try:
            size = await asyncio.to_thread(_move, source, target)
        except Exception:
            self.counters.failures += 1
            raise
        self.counters.files_stored += 1
        self.counters.bytes_stored += size

    async def delete(self, key: str) -> None:
        try:
            self.path(key).unlink(missing_ok=True)
        except OSError:
            self.counters.failures += 1

    def _sign(self, key: str, expires: str, content_type: str, name: str) -> str:
        message = "\n".join((key, expires, content_type, name)).encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    async def url(self, key: str, content_type: str, file_name: str, base: str) -> str:
        expires = str(int(time.time() + self.ttl))
        query = {
            "expires": expires,
            "type": content_type,
            "name": file_name,
            "signature": self._sign(key, expires, content_type, file_name),
        }
        return f"{base}/attachments/{key}?{urlencode(query)}"

    async def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise OSError(f"{self.root} is not writable")

    async def serve(self, request: web.Request) -> web.StreamResponse:
        """GET /attachments/{key}: the file, when the URL's signature verifies and has not
        expired; 403 otherwise (404 when a valid link's file is gone)."""
        key = request.match_info["key"]
        q = request.query
        expires, ctype, name, signature = (
            q.get("expires", ""),
            q.get("type", ""),
            q.get("name", ""),
            q.get("signature", ""),
        )
        if not _KEY.fullmatch(key) or any(len(v) > _MAX_PARAM for v in (ctype, name)):
            raise _forbidden()
        wanted = self._sign(key, expires, ctype, name)
        if not hmac.compare_digest(wanted, signature):
            raise _forbidden()
        if not expires.isdigit() or int(expires) < time.time():
            raise _forbidden()
        path = self.path(key)
        if not path.is_file():
            raise ApiError(404, {"error": "the file is gone"})
        return web.FileResponse(
            path,
            headers={
                "Content-Type": ctype,
                "Content-Disposition": content_disposition(ctype, name),
                "X-Content-Type-Options": "nosniff",
                # Even if a browser rendered it, nothing in it runs with our origin.
                "Content-Security-Policy": "default-src 'none'; sandbox",
                "Cache-Control": "private, max-age=3600",
            },
        )


def _move(source: Path, target: Path) -> int:
    """Its size, moved."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)  # same filesystem: a rename
    except OSError:
        shutil.copyfile(source, target)
    return target.stat().st_size
