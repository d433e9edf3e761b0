"""The outbox: durable events, written in the transaction of the data they describe."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import BigInteger, any_, bindparam, delete, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from server.jsonutil import dumps
from server.store import all_rows
from server.store.db import OUTBOX_DIRTY
from server.store.prepared import Prepared
from server.store.tables import outbox

_INSERT = Prepared(
    insert(outbox).values(
        {
            c.name: bindparam(f"v_{c.name}", type_=c.type)
            for c in outbox.c
            if c.name in ("conversation_id", "channels", "event", "payload", "created_at")
        }
    )
)
_UNPUBLISHED = Prepared(
    select(outbox.c.id, outbox.c.conversation_id, outbox.c.channels, outbox.c.payload)
    .where(outbox.c.published_at.is_(None))
    .order_by(outbox.c.id)
    .limit(bindparam("limit"))
)
# PostgreSQL: the ids as one array parameter, so the statement is built (and prepared) once
# whatever the batch size. SQLite keeps an expanding IN list.
_MARK_PUBLISHED_PG = Prepared(
    update(outbox)
    .where(outbox.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger))))
    .values(published_at=bindparam("now"))
)


def encode_message(event: str, data: dict[str, Any]) -> bytes:
    """The ActionCable `message` member, serialized once for every recipient."""
    return dumps({"event": event, "data": data})


async def add(
    conn: AsyncConnection,
    event: str,
    data: dict[str, Any],
    channels: list[str],
    *,
    conversation_id: int | None,
) -> None:
    await _INSERT.run(
        conn,
        {
            "v_conversation_id": conversation_id,
            "v_channels": channels,
            "v_event": event,
            "v_payload": encode_message(event, data).decode(),
            "v_created_at": time.time(),
        },
    )
    conn.info[OUTBOX_DIRTY] = True


async def unpublished(conn: AsyncConnection, limit: int) -> list[dict[str, Any]]:
    """Rows not yet published, oldest first. Per conversation, id order is commit order:
    every writer of a conversation's events holds that conversation's row lock."""
    return await _UNPUBLISHED.all(conn, {"limit": limit})


async def mark_published(conn: AsyncConnection, ids: list[int]) -> None:
    if not ids:
        return
    if conn.dialect.name == "postgresql":
        await _MARK_PUBLISHED_PG.run(conn, {"ids": ids, "now": time.time()})
    else:
        await conn.execute(
            update(outbox).where(outbox.c.id.in_(ids)).values(published_at=time.time())
        )


async def mark_and_fetch(conn: AsyncConnection, ids: list[int], limit: int) -> list[dict[str, Any]]:
    """Mark the batch just published and read the next one, in one transaction: the relay
    then needs one transaction per batch instead of two."""
    await mark_published(conn, ids)
    return await unpublished(conn, limit)


async def since(conn: AsyncConnection, created_after: float, limit: int) -> list[dict[str, Any]]:
    """Events committed after a moment: what a process replays after a bus outage."""
    result = await conn.execute(
        select(outbox.c.id, outbox.c.conversation_id, outbox.c.channels, outbox.c.payload)
        .where(outbox.c.created_at >= created_after)
        .order_by(outbox.c.id)
        .limit(limit)
    )
    return all_rows(result)


async def prune(conn: AsyncConnection, published_before: float) -> int:
    result = await conn.execute(
        delete(outbox).where(
            outbox.c.published_at.is_not(None), outbox.c.published_at < published_before
        )
    )
    return result.rowcount or 0
