"""What an emailed transcript shows (server/mail/): one conversation as its visitor sees it
(no private notes, no activity), in order, each message with its sender. Read by the mail
worker, off the request path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from server.store import all_rows, one, payloads
from server.store import contacts as contacts_store
from server.store.inputs import Row
from server.store.rules import visible_to_visitor
from server.store.tables import conversations, inboxes, messages


@dataclass(frozen=True, slots=True)
class Transcript:
    conversation: Row
    inbox_name: str
    contact: Row
    messages: list[tuple[Row, Row | None]]  # oldest first, each with its sender's payload
    omitted: bool  # older messages were left out (past `limit`)


async def of_conversation(
    conn: AsyncConnection, conversation_id: int, contact_inbox_id: int, limit: int
) -> Transcript | None:
    """The conversation's newest `limit` messages the visitor sees, oldest first; None when
    the conversation is not (or no longer) that contact_inbox's."""
    conv = one(
        await conn.execute(
            select(conversations, inboxes.c.name.label("inbox_name"))
            .join(inboxes, inboxes.c.id == conversations.c.inbox_id)
            .where(
                conversations.c.id == conversation_id,
                conversations.c.contact_inbox_id == contact_inbox_id,
            )
        )
    )
    if conv is None:
        return None
    inbox_name = conv.pop("inbox_name")
    contact = await contacts_store.get_contact(conn, conv["contact_id"])
    assert contact is not None
    rows = all_rows(
        await conn.execute(
            select(messages)
            .where(messages.c.conversation_id == conversation_id, visible_to_visitor())
            .order_by(messages.c.id.desc())
            .limit(limit + 1)
        )
    )
    omitted = len(rows) > limit
    rows = rows[:limit]
    rows.reverse()
    senders: list[Any] = await payloads.senders(conn, rows, contact)
    return Transcript(conv, inbox_name, contact, list(zip(rows, senders, strict=True)), omitted)
