"""Attachments, in SQL: the rows of a message's files (written in the message's own write,
by each engine: engine/*.py) and the rows of a page of messages, read in one query."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from server import events
from server.store import all_rows
from server.store.inputs import NewAttachment, Row
from server.store.prepared import Prepared
from server.store.tables import attachments

_COLUMNS = tuple(c.name for c in attachments.c if c.name != "id")
_INSERT_RETURNING_ID = Prepared(
    insert(attachments)
    .values({n: bindparam(f"a_{n}", type_=attachments.c[n].type) for n in _COLUMNS})
    .returning(attachments.c.id)
)


def row(msg: Row, new: NewAttachment, attachment_id: int | None = None) -> dict[str, Any]:
    """The attachment's columns, as a read would return them."""
    values: dict[str, Any] = {
        "account_id": msg["account_id"],
        "message_id": msg["id"],
        "file_type": new.file_type,
        "content_type": new.content_type,
        "file_name": new.file_name,
        "byte_size": new.byte_size,
        "storage_key": new.storage_key,
        "thumb_key": new.thumb_key,
        "width": new.width,
        "height": new.height,
        "created_at": msg["created_at"],
    }
    return values if attachment_id is None else {"id": attachment_id, **values}


async def insert_each(
    conn: AsyncConnection, msg: Row, new: Sequence[NewAttachment]
) -> list[dict[str, Any]]:
    """Insert the rows one by one, ids drawn by the insert (SQLite: microseconds each)."""
    rows = []
    for item in new:
        values = row(msg, item)
        inserted = await _INSERT_RETURNING_ID.one(conn, {f"a_{k}": v for k, v in values.items()})
        assert inserted is not None
        rows.append({"id": inserted["id"], **values})
    return rows


async def insert_rows(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Insert rows whose ids were drawn before (PostgreSQL), in one statement."""
    if rows:
        await conn.execute(insert(attachments), rows)


def pushes(rows: Sequence[Row], new: Sequence[NewAttachment]) -> list[dict[str, Any]]:
    """The attachments' JSON for the message.created event, with the URLs signed before the
    write."""
    return [
        events.attachment_push(r, n.data_url, n.thumb_url) for r, n in zip(rows, new, strict=True)
    ]


async def of_messages(conn: AsyncConnection, message_ids: Iterable[int]) -> dict[int, list[Row]]:
    """message id -> its attachment rows (in upload order), for a page of messages."""
    ids = list(message_ids)
    if not ids:
        return {}
    found = all_rows(
        await conn.execute(
            select(attachments).where(attachments.c.message_id.in_(ids)).order_by(attachments.c.id)
        )
    )
    by_message: dict[int, list[Row]] = {}
    for r in found:
        by_message.setdefault(r["message_id"], []).append(r)
    return by_message
