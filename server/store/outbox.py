"""The outbox: durable events, written in the transaction of the data they describe.

On PostgreSQL the insert also NOTIFYs the relay (see `workers.listener`): PostgreSQL delivers
a transaction's notifications when it commits, in commit order, so the relay learns of each
event without reading the table, and usually without a query at all (the notification carries
the event itself when it fits)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import (
    BigInteger,
    Text,
    any_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from server.jsonutil import dumps, loads
from server.store import all_rows
from server.store.db import OUTBOX_DIRTY
from server.store.prepared import Prepared
from server.store.tables import outbox

NOTIFY_CHANNEL = "outbox"
# PostgreSQL refuses a notification payload of 8000 bytes or more: an event bigger than this
# is notified by its id alone, and the relay reads it from the table.
NOTIFY_MAX_BYTES = 7900

_EVENT_COLUMNS = ("conversation_id", "channels", "event", "payload", "created_at")
_insert = insert(outbox).values(
    {name: bindparam(f"o_{name}", type_=outbox.c[name].type) for name in _EVENT_COLUMNS}
)
_INSERT = Prepared(_insert)


def notify_inserted(inserted: Any) -> Any:
    """SELECT pg_notify for each row of `inserted` (a CTE returning outbox ids): the
    notification is "<id> <notice>" (see `notice`)."""
    return select(
        func.pg_notify(
            literal_column(f"'{NOTIFY_CHANNEL}'"),
            cast(inserted.c.id, Text) + literal_column("' '") + bindparam("o_notice", type_=Text),
        ).label("notified")
    ).select_from(inserted)


def insert_for_each(source: Any) -> Any:
    """INSERT the event (the o_* parameters) once per row of `source`, returning its id: an
    event written only if the statement's other part was (see messages.create)."""
    values = select(
        *(bindparam(f"o_{name}", type_=outbox.c[name].type) for name in _EVENT_COLUMNS)
    ).select_from(source)
    return insert(outbox).from_select(_EVENT_COLUMNS, values).returning(outbox.c.id)


# One statement, one round trip: the insert, and its notification.
_INSERT_AND_NOTIFY = Prepared(notify_inserted(_insert.returning(outbox.c.id).cte("inserted")))
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
    params = event_params(conn, event, data, channels, conversation_id=conversation_id)
    if "o_notice" in params:
        await _INSERT_AND_NOTIFY.run(conn, params)
    else:
        await _INSERT.run(conn, params)
    conn.info[OUTBOX_DIRTY] = True


def event_params(
    conn: AsyncConnection,
    event: str,
    data: dict[str, Any],
    channels: list[str],
    *,
    conversation_id: int | None,
) -> dict[str, Any]:
    """The o_* parameters of an event's insert (and, on PostgreSQL, of its notification)."""
    payload = encode_message(event, data)
    params = {
        "o_conversation_id": conversation_id,
        "o_channels": channels,
        "o_event": event,
        "o_payload": payload.decode(),
        "o_created_at": time.time(),
    }
    if conn.dialect.name == "postgresql":
        params["o_notice"] = notice(conversation_id, channels, payload)
    return params


def notice(conversation_id: int | None, channels: list[str], payload: bytes) -> str:
    """What a notification carries after the event's id: `[conversation_id, channels]`, a
    newline, the payload; empty when that would not fit in a notification."""
    text = dumps([conversation_id, channels]) + b"\n" + payload
    return text.decode() if len(text) <= NOTIFY_MAX_BYTES else ""


def parse_notification(text: str) -> tuple[int, dict[str, Any] | None]:
    """(outbox id, row) from a notification; the row is None when only the id was sent.
    The row has the keys `unpublished` returns."""
    head, _, rest = text.partition(" ")
    outbox_id = int(head)
    if not rest:
        return outbox_id, None
    meta, _, payload = rest.partition("\n")
    conversation_id, channels = loads(meta)
    row = {
        "id": outbox_id,
        "conversation_id": conversation_id,
        "channels": channels,
        "payload": payload,
    }
    return outbox_id, row


async def unpublished(conn: AsyncConnection, limit: int) -> list[dict[str, Any]]:
    """Rows not yet published, oldest first. Per conversation, id order is commit order:
    every writer of a conversation's events holds that conversation's row lock."""
    return await _UNPUBLISHED.all(conn, {"limit": limit})


_AFTER = Prepared(
    select(
        outbox.c.id,
        outbox.c.conversation_id,
        outbox.c.channels,
        outbox.c.payload,
        outbox.c.created_at,
    )
    .where(outbox.c.published_at.is_(None), outbox.c.id > bindparam("after"))
    .order_by(outbox.c.id)
    .limit(bindparam("limit"))
)


async def unpublished_after(conn: AsyncConnection, after: int, limit: int) -> list[dict[str, Any]]:
    """Like `unpublished`, from the first id above `after`: a reader that skips rows it has
    published but not yet marked pages on with this."""
    return await _AFTER.all(conn, {"after": after, "limit": limit})


async def by_ids(conn: AsyncConnection, ids: list[int]) -> dict[int, dict[str, Any]]:
    result = await conn.execute(
        select(outbox.c.id, outbox.c.conversation_id, outbox.c.channels, outbox.c.payload).where(
            outbox.c.id.in_(ids)
        )
    )
    return {row["id"]: row for row in all_rows(result)}


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


async def prune(conn: AsyncConnection, created_before: float, limit: int) -> int:
    """Delete at most `limit` published events created before `created_before`, oldest
    first; returns how many. The rows are found through the created_at index, so a call reads
    about `limit` rows however big the table is, and holds the writer only that long.
    Unpublished rows stay whatever their age: the relay still owes them."""
    oldest = (
        select(outbox.c.id)
        .where(outbox.c.created_at < created_before, outbox.c.published_at.is_not(None))
        .order_by(outbox.c.created_at)
        .limit(limit)
    )
    result = await conn.execute(delete(outbox).where(outbox.c.id.in_(oldest.scalar_subquery())))
    return result.rowcount or 0
