"""Messages, read: each audience's pages of a conversation (the visitor never sees private
notes or activity), and the message a retried write already made (`is_retry`, the
originals). Writes are in message_writes.py and engine/*.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from server.store import accounts as accounts_store
from server.store import all_rows, one, payloads
from server.store import attachments as attachments_store
from server.store import contacts as contacts_store
from server.store import conversations as conversations_store
from server.store.inputs import AgentsConversation, OpenedConversation, Row, SentMessage, Visitor
from server.store.rules import FloodError, in_display_order, visible_to_visitor
from server.store.tables import conversations, messages

WIDGET_PAGE = 20
WIDGET_AFTER_PAGE = 100
RANGE_LIMIT = 1000


async def page(
    conn: AsyncConnection,
    conversation_id: int,
    *,
    before: int | None,
    after: int | None,
    visitor: bool,
) -> list[dict[str, Any]]:
    """Contract §2.3 paging, cut by id: newest 20; 20 before `before`; up to 100 after
    `after`; both: the range [after, before), up to 1000; each page `in_display_order`. `visitor`:
    only what the visitor may see (rules.visible_to_visitor)."""
    query = select(messages).where(messages.c.conversation_id == conversation_id)
    if visitor:
        query = query.where(visible_to_visitor())
    if before is not None and after is not None:
        query = query.where(messages.c.id >= after, messages.c.id < before)
        rows = all_rows(await conn.execute(query.order_by(messages.c.id).limit(RANGE_LIMIT)))
    elif after is not None:
        query = query.where(messages.c.id > after)
        rows = all_rows(await conn.execute(query.order_by(messages.c.id).limit(WIDGET_AFTER_PAGE)))
    else:
        if before is not None:
            query = query.where(messages.c.id < before)
        rows = all_rows(await conn.execute(query.order_by(messages.c.id.desc()).limit(WIDGET_PAGE)))
        rows.reverse()
    return in_display_order(rows)


@dataclass(frozen=True, slots=True)
class History:
    """A page of a conversation's messages, each with its sender's payload, and the
    attachment rows of those that have files (by message id)."""

    conversation: Row
    messages: list[tuple[Row, Row | None]]
    attachments: dict[int, list[Row]]


async def visitor_history(
    conn: AsyncConnection, v: Visitor, *, before: int | None, after: int | None
) -> History | None:
    """GET /widget/messages: the visitor's current conversation, as they see it; None when
    they have none."""
    conv = await conversations_store.current_for(conn, v.contact_inbox["id"])
    if conv is None:
        return None
    rows = await page(conn, conv["id"], before=before, after=after, visitor=True)
    senders = await payloads.senders(conn, rows, v.contact)
    files = await attachments_store.of_messages(conn, (r["id"] for r in rows))
    return History(conv, list(zip(rows, senders, strict=True)), files)


@dataclass(frozen=True, slots=True)
class AgentHistory(History):
    contact: Row
    assignee: Row | None


async def agent_history(
    conn: AsyncConnection, ref: AgentsConversation, *, before: int | None, after: int | None
) -> AgentHistory | None:
    """An agent's page of the conversation (every message), with its contact and assignee;
    None when the agent sees no such conversation."""
    conv = await conversations_store.visible_to_agent(
        conn, ref.account_id, ref.inbox_ids, ref.display_id
    )
    if conv is None:
        return None
    contact = await contacts_store.get_contact(conn, conv["contact_id"])
    assert contact is not None
    assignee = None
    if conv["assignee_id"]:
        assignee = await accounts_store.get_user(conn, conv["assignee_id"])
    rows = await page(conn, conv["id"], before=before, after=after, visitor=False)
    senders = await payloads.senders(conn, rows, contact)
    files = await attachments_store.of_messages(conn, (r["id"] for r in rows))
    return AgentHistory(conv, list(zip(rows, senders, strict=True)), files, contact, assignee)


async def last_of_type(
    conn: AsyncConnection, conversation_id: int, message_type: int
) -> dict[str, Any] | None:
    """The conversation's newest message of `message_type` (the index messages_conversation,
    read backwards)."""
    return one(
        await conn.execute(
            select(messages)
            .where(
                messages.c.conversation_id == conversation_id,
                messages.c.message_type == message_type,
            )
            .order_by(messages.c.id.desc())
            .limit(1)
        )
    )


async def by_external_event(
    conn: AsyncConnection, conversation_id: int, event_id: str
) -> dict[str, Any] | None:
    return one(
        await conn.execute(
            select(messages).where(
                messages.c.conversation_id == conversation_id,
                messages.c.external_event_id == event_id,
            )
        )
    )


# -- retried writes ------------------------------------------------------------------------------

# The unique index that makes a retried message (same sender, same echo_id) one message.
ECHO_INDEX = "messages_sender_echo"


def is_retry(exc: BaseException, echo_id: str | None) -> bool:
    """True when a message write failed in a way its earlier attempt explains: the echo_id
    is taken (the unique index, on either engine), or the flood check refused it (the
    earlier attempt may be what filled the minute). The caller then looks the original up;
    only an error path pays for that read."""
    if echo_id is None:
        return False
    if isinstance(exc, FloodError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    text = str(exc.orig)
    # PostgreSQL names the index; SQLite names its columns.
    return ECHO_INDEX in text or "messages.echo_id" in text


async def by_echo_id(
    conn: AsyncConnection, sender_type: str, sender_id: int, echo_id: str
) -> tuple[dict[str, Any], int] | None:
    """(message, its conversation's display_id) of the sender's message with `echo_id`."""
    row = one(
        await conn.execute(
            select(messages, conversations.c.display_id.label("conversation_display_id"))
            .join(conversations, conversations.c.id == messages.c.conversation_id)
            .where(
                messages.c.sender_type == sender_type,
                messages.c.sender_id == sender_id,
                messages.c.echo_id == echo_id,
            )
        )
    )
    if row is None:
        return None
    display_id = row.pop("conversation_display_id")
    return row, display_id


async def visitor_original(
    conn: AsyncConnection, inbox_id: int, source_id: str, echo_id: str
) -> SentMessage | None:
    """The visitor's message with `echo_id`."""
    found = await contacts_store.find_identity(conn, inbox_id, source_id)
    if found is None:
        return None
    contact = found[0]
    original = await by_echo_id(conn, "Contact", contact["id"], echo_id)
    if original is None:
        return None
    msg, display_id = original
    files = await attachments_store.of_messages(conn, [msg["id"]])
    return SentMessage(
        msg, display_id, payloads.sender(msg, contact, {}), tuple(files.get(msg["id"], ()))
    )


async def agent_original(conn: AsyncConnection, author: Row, echo_id: str) -> SentMessage | None:
    """The agent's message with `echo_id`."""
    original = await by_echo_id(conn, "User", author["id"], echo_id)
    if original is None:
        return None
    msg, display_id = original
    files = await attachments_store.of_messages(conn, [msg["id"]])
    sender = payloads.sender(msg, {}, {author["id"]: author})
    return SentMessage(msg, display_id, sender, tuple(files.get(msg["id"], ())))


async def opened_by(conn: AsyncConnection, v: Visitor, echo_id: str) -> OpenedConversation | None:
    """The conversation the visitor's message with `echo_id` opened, as it is now."""
    original = await by_echo_id(conn, "Contact", v.contact["id"], echo_id)
    if original is None:
        return None
    conv = await conversations_store.by_display_id(conn, v.inbox["account_id"], original[1])
    if conv is None:
        return None
    rows = await page(conn, conv["id"], before=None, after=None, visitor=True)
    senders = await payloads.senders(conn, rows, v.contact)
    return OpenedConversation(conv, list(zip(rows, senders, strict=True)), v.contact)
