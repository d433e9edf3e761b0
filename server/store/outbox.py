"""The outbox: durable events, written in the transaction of the data they describe.

On PostgreSQL the insert also NOTIFYs the relay (see `workers.listener`): PostgreSQL delivers
a transaction's notifications when it commits, in commit order, so the relay learns of each
event without reading the table, and usually without a query at all (the notification carries
the event itself when it fits).

The relay never writes to the rows. What it has published is one `Position`, kept in
relay_state: rewriting every row as published (an UPDATE that PostgreSQL can never make HOT,
the column being in an index's condition) grew the table by ~800 MB an hour at 100 msg/s
(docs/benchmarks.md, "Outbox growth on disk")."""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import (
    Text,
    bindparam,
    cast,
    func,
    insert,
    literal_column,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from server.jsonutil import dumps, loads
from server.store import all_rows
from server.store.db import OUTBOX_DIRTY
from server.store.prepared import Prepared
from server.store.tables import outbox

log = logging.getLogger(__name__)

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


async def by_ids(conn: AsyncConnection, ids: list[int]) -> dict[int, dict[str, Any]]:
    result = await conn.execute(
        select(outbox.c.id, outbox.c.conversation_id, outbox.c.channels, outbox.c.payload).where(
            outbox.c.id.in_(ids)
        )
    )
    return {row["id"]: row for row in all_rows(result)}


# What the relay has published, and the reads that go by it (server/store/relay_position.py).
from server.store.relay_position import (  # noqa: E402, F401  (the outbox's readers)
    INITIAL,
    KEY_PAGE,
    PENDING_LIMIT,
    RELAY,
    Position,
    advance,
    backlog,
    load_position,
    lowest_uncovered,
    mark_and_fetch,
    prune,
    resume_position,
    save_position,
    uncovered,
    unpublished,
)
