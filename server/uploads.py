"""Files sent with a message (multipart, contract §2.4 and §6): received, checked, stored,
and rendered as Chatwoot's attachment JSON.

A body is read part by part (aiohttp's MultipartReader), each file streamed in chunks to a
temporary file under DATA_DIR/uploads, never held in memory: a file over
ATTACHMENT_MAX_BYTES is refused (413) as soon as it passes the limit, the 16th file (422)
before it is read. Images get their size and a thumbnail off the event loop
(storage/thumbnails.py). Only then are the files put in storage, and the message with its
attachment rows written in one store call; when that call fails or is refused, the stored
files are deleted again (`Received.close`): a rejected upload leaves no file and no row."""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from server import events
from server.errors import ApiError, bad_request, unprocessable
from server.settings import Settings
from server.storage import Storage
from server.storage.base import new_key
from server.storage.thumbnails import RASTER_TYPES, BadImage, Thumbnailer
from server.store.inputs import NewAttachment, Row

log = logging.getLogger(__name__)

MAX_FILES = 15  # Chatwoot's limit per message
MAX_FIELDS = 32  # text parts besides the files
CHUNK = 64 * 1024
# Besides images, audio and video: the document types Chatwoot's widget accepts
# (app/models/attachment.rb, ACCEPTABLE_FILE_TYPES).
DOCUMENT_TYPES = frozenset(
    {
        "text/csv",
        "text/plain",
        "text/rtf",
        "application/json",
        "application/pdf",
        "application/zip",
        "application/x-7z-compressed",
        "application/vnd.rar",
        "application/x-tar",
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        "application/rtf",
        "application/vnd.oasis.opendocument.text",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    }
)
_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,127}")


def is_multipart(request: web.Request) -> bool:
    return request.content_type.startswith("multipart/")


def file_type(content_type: str) -> str:
    """Chatwoot's file_type of an upload (contract §5.1)."""
    major = content_type.split("/", 1)[0]
    return major if major in ("image", "audio", "video") else "file"


def allowed(content_type: str) -> bool:
    return content_type.startswith(("image/", "audio/", "video/")) or (
        content_type in DOCUMENT_TYPES
    )


def clean_name(raw: str | None) -> str:
    """A file name to show and to offer on download: its last path segment, no control
    characters, at most 255 characters."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in unicodedata.normalize("NFC", name) if c.isprintable()).strip()
    return name[:255] or "file"


def _content_type(part: BodyPartReader, name: str) -> str:
    declared = (part.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if not declared or declared == "application/octet-stream":
        declared = (mimetypes.guess_type(name)[0] or "application/octet-stream").lower()
    return declared


@dataclass(slots=True)
class Upload:
    """One file as received, in its temporary file."""

    path: Path
    file_name: str
    content_type: str
    size: int


@dataclass
class Received:
    """A multipart body as read: its text fields, its files (in `tmp`), and what was put in
    storage for them (deleted again by `close` unless written)."""

    storage: Storage
    tmp: Path
    fields: dict[str, str] = field(default_factory=dict)
    files: list[Upload] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)
    kept: set[str] = field(default_factory=set)

    def written(self, rows: Iterable[Row]) -> None:
        """The attachment rows of the message the write answered with: their files stay."""
        for r in rows:
            self.kept.add(r["storage_key"])
            if r["thumb_key"]:
                self.kept.add(r["thumb_key"])

    async def close(self) -> None:
        for key in self.stored:
            if key not in self.kept:
                await self.storage.delete(key)
        shutil.rmtree(self.tmp, ignore_errors=True)


class Attachments:
    """The web process's attachments: storage, thumbnails and limits."""

    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.settings = settings
        self.storage = storage
        self.thumbnailer = Thumbnailer(settings.thumbnail_workers, settings.attachment_max_pixels)
        self.tmp_root = settings.data_dir / "uploads"
        self.base = settings.public_url or ""
        self.refused = 0  # uploads refused (size, count, type, image)

    async def start(self) -> None:
        self.tmp_root.mkdir(parents=True, exist_ok=True)
        await self.storage.start()

    async def close(self) -> None:
        await self.storage.close()

    # -- receiving -------------------------------------------------------------------------

    async def receive(self, request: web.Request, inbox: Row, file_field: str) -> Received:
        """Read the body: files of `file_field` to temporary files, the rest as text fields.
        The caller must `close()` what it gets."""
        if not inbox.get("attachments_enabled", True):
            self.refused += 1
            raise unprocessable("attachments are turned off for this inbox")
        limit = self.settings.attachment_max_bytes
        length = request.content_length
        if length is not None and length > MAX_FILES * limit + 1024 * 1024:
            self.refused += 1
            raise _too_large(limit)
        received = Received(self.storage, Path(tempfile.mkdtemp(dir=self.tmp_root)))
        try:
            await self._read(request, received, file_field, limit)
        except BaseException:
            await received.close()
            raise
        return received

    async def _read(
        self, request: web.Request, received: Received, file_field: str, limit: int
    ) -> None:
        try:
            async with asyncio.timeout(self.settings.upload_timeout):
                reader = await request.multipart()
                parts = 0
                while (part := await reader.next()) is not None:
                    parts += 1
                    if not isinstance(part, BodyPartReader) or parts > MAX_FILES + MAX_FIELDS:
                        raise bad_request("too many or nested multipart parts")
                    if part.filename is None:
                        await self._field(part, received)
                    elif part.name != file_field:
                        raise bad_request(f"files go in {file_field}")
                    else:
                        await self._file(part, received, limit)
        except TimeoutError:
            raise ApiError(
                408,
                {"error": f"upload not received within {self.settings.upload_timeout:g} s"},
            ) from None
        except ApiError:
            self.refused += 1
            raise
        except (ValueError, HttpProcessingError) as exc:  # a malformed multipart body
            detail = getattr(exc, "message", None) or str(exc)
            raise bad_request(f"malformed multipart body: {str(detail)[:200]}") from None

    async def _field(self, part: BodyPartReader, received: Received) -> None:
        name = part.name or ""
        if len(name) > 64:
            raise bad_request("multipart field name is too long")
        cap = self.settings.max_message_length * 4 + 1024  # UTF-8 of the longest content
        data = bytearray()
        while chunk := await part.read_chunk(CHUNK):
            data += chunk
            if len(data) > cap:
                raise bad_request(f"{name} is too long")
        try:
            received.fields[name] = data.decode()
        except UnicodeDecodeError:
            raise bad_request(f"{name} is not UTF-8 text") from None

    async def _file(self, part: BodyPartReader, received: Received, limit: int) -> None:
        if len(received.files) >= MAX_FILES:
            raise unprocessable(f"too many attachments (at most {MAX_FILES} per message)")
        name = clean_name(part.filename)
        ctype = _content_type(part, name)
        if not _TYPE.fullmatch(ctype) or not allowed(ctype):
            raise unprocessable(f"{name}: files of type {ctype[:100]} are not allowed")
        path = received.tmp / str(len(received.files))
        size = 0
        with path.open("wb") as out:
            while chunk := await part.read_chunk(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                out.write(chunk)
        if size == 0:
            raise unprocessable(f"{name} is empty")
        received.files.append(Upload(path, name, ctype, size))

    # -- storing -------------------------------------------------------------------------

    async def store(self, received: Received, inbox: Row) -> tuple[NewAttachment, ...]:
        """Thumbnails, then every file (and thumbnail) into storage, with signed URLs."""
        out = []
        for upload in received.files:
            width = height = None
            thumb_path = None
            if upload.content_type in RASTER_TYPES:
                try:
                    thumb = await self.thumbnailer.make(
                        upload.path, upload.path.with_suffix(".thumb.jpg")
                    )
                except BadImage as exc:
                    self.refused += 1
                    raise unprocessable(f"{upload.file_name}: {exc}") from None
                width, height, thumb_path = thumb.width, thumb.height, thumb.path
            key = new_key(inbox["account_id"], inbox["id"])
            await self.storage.put(key, upload.path, upload.content_type)
            received.stored.append(key)
            thumb_key = None
            if thumb_path is not None:
                thumb_key = key + ".thumb.jpg"
                await self.storage.put(thumb_key, thumb_path, "image/jpeg")
                received.stored.append(thumb_key)
            row = {
                "storage_key": key,
                "thumb_key": thumb_key,
                "content_type": upload.content_type,
                "file_name": upload.file_name,
            }
            data_url, thumb_url = await self._urls(row)
            out.append(
                NewAttachment(
                    file_type=file_type(upload.content_type),
                    content_type=upload.content_type,
                    file_name=upload.file_name,
                    byte_size=upload.size,
                    storage_key=key,
                    thumb_key=thumb_key,
                    width=width,
                    height=height,
                    data_url=data_url,
                    thumb_url=thumb_url,
                )
            )
        return tuple(out)

    # -- rendering -------------------------------------------------------------------------

    async def _urls(self, row: Row) -> tuple[str, str]:
        data_url = await self.storage.url(
            row["storage_key"], row["content_type"], row["file_name"], self.base
        )
        thumb_url = ""
        if row["thumb_key"]:
            thumb_url = await self.storage.url(
                row["thumb_key"], "image/jpeg", "thumbnail.jpg", self.base
            )
        return data_url, thumb_url

    async def render(self, rows: Sequence[Row]) -> list[dict[str, Any]]:
        """Chatwoot's attachment JSON of `rows`, with URLs signed now."""
        out = []
        for r in rows:
            data_url, thumb_url = await self._urls(r)
            out.append(events.attachment_push(dict(r), data_url, thumb_url))
        return out

    async def render_pages(self, by_message: dict[int, list[Row]]) -> dict[int, list[Any]]:
        return {mid: await self.render(rows) for mid, rows in by_message.items()}


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413, {"error": f"a file is larger than the limit of {limit} bytes", "limit": limit}
    )
