"""What the attachment tests share: files to send, multipart bodies as the widget and the
agent API send them, and what is left on disk and in the database."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from PIL import Image
from sqlalchemy import func, select

from server.services import SERVICES
from server.store.tables import attachments, messages
from tests.conftest import Visitor


def png(width: int = 400, height: int = 300) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def form(
    files: list[tuple[str, bytes, str]],
    fields: dict[str, str] | None = None,
    file_field: str = "message[attachments][]",
) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, value in (fields or {}).items():
        data.add_field(name, value)
    for name, body, ctype in files:
        data.add_field(file_field, body, filename=name, content_type=ctype)
    return data


async def visitor_upload(
    visitor: Visitor, files: list[tuple[str, bytes, str]], **fields: str
) -> aiohttp.ClientResponse:
    values = {f"message[{k}]": v for k, v in fields.items()}
    return await visitor.client.post(
        visitor._url("messages"), data=form(files, values), headers=visitor._headers()
    )


async def agent_upload(
    client: TestClient,
    agent: dict[str, Any],
    account_id: int,
    display_id: int,
    files: list[tuple[str, bytes, str]],
    **fields: str,
) -> aiohttp.ClientResponse:
    return await client.post(
        f"/api/v1/accounts/{account_id}/conversations/{display_id}/messages",
        data=form(files, fields, "attachments[]"),
        headers={"api_access_token": agent["access_token"]},
    )


def stored_files(client: TestClient) -> list[Path]:
    """Every file under the storage directory and the upload scratch directory."""
    data_dir = client.app[SERVICES].settings.data_dir
    found: list[Path] = []
    for sub in ("attachments", "uploads"):
        root = data_dir / sub
        if root.exists():
            found += [p for p in root.rglob("*") if p.is_file()]
    return found


async def count_rows(client: TestClient) -> tuple[int, int]:
    """(messages, attachments) in the database."""

    async def op(conn: Any) -> tuple[int, int]:
        m = (await conn.execute(select(func.count()).select_from(messages))).scalar_one()
        a = (await conn.execute(select(func.count()).select_from(attachments))).scalar_one()
        return m, a

    return await client.app[SERVICES].db.read(op)
