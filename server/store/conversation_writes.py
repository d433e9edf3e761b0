"""Conversations, written: opening one, changing one under its row lock, and the events each
change emits (to the inbox's agents and the visitor; conversation.read to agents only).

A write that emits a conversation's events changes its row: that is what orders the
conversation's events (and message ids) by commit, each writer waiting for the row lock, and
what PostgreSQL's unlocked message write checks (engine/postgresql.py)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server import events
from server.store import accounts as accounts_store
from server.store import all_rows, one, outbox, payloads
from server.store import contacts as contacts_store
from server.store import conversations as conversations_store
from server.store.inputs import (
    AgentsConversation,
    AttributeChange,
    Conversation,
    MarkRead,
    Row,
    Visitor,
)
from server.store.tables import conversations, messages


class WouldOpen(Exception):
    """current_or_open(may_open=False) needed a new conversation."""


async def change(conn: AsyncConnection, conv_id: int, **values: Any) -> dict[str, Any]:
    """Set `values` (and updated_at) on the conversation; returns the row as changed. Takes
    the row lock, held to commit."""
    row = one(
        await conn.execute(
            update(conversations)
            .where(conversations.c.id == conv_id)
            .values(updated_at=time.time(), **values)
            .returning(*conversations.c)
        )
    )
    assert row is not None, f"conversation {conv_id} vanished"
    return row


async def open_new(
    conn: AsyncConnection,
    inbox: Row,
    contact: Row,
    contact_inbox: Row,
    *,
    additional: Row | None = None,
    custom: Row | None = None,
) -> dict[str, Any]:
    """A new conversation of the visitor (resolved from the start for a blocked contact),
    and its conversation.created."""
    now = time.time()
    display_id = await accounts_store.next_display_id(conn, inbox["account_id"])
    conv = one(
        await conn.execute(
            insert(conversations)
            .values(
                account_id=inbox["account_id"],
                inbox_id=inbox["id"],
                display_id=display_id,
                contact_id=contact["id"],
                contact_inbox_id=contact_inbox["id"],
                status="resolved" if contact["blocked"] else "open",
                assignee_id=None,
                additional_attributes=dict(additional or {}),
                custom_attributes=dict(custom or {}),
                contact_last_seen_at=None,
                agent_last_seen_at=None,
                unread_count=0,
                last_activity_at=now,
                created_at=now,
                updated_at=now,
            )
            .returning(*conversations.c)
        )
    )
    assert conv is not None
    push = events.conversation_push(
        conv, contact=contact, contact_inbox=contact_inbox, assignee=None, last_message=None
    )
    await outbox.add(
        conn,
        events.CONVERSATION_CREATED,
        push,
        events.conversation_channels(conv, contact_inbox["pubsub_token"]),
        conversation_id=conv["id"],
    )
    return conv


async def open_unless_current(
    conn: AsyncConnection,
    v: Visitor,
    *,
    additional: Row | None,
    reuse_resolved: bool = True,
    lock: bool = False,
) -> tuple[dict[str, Any], bool]:
    """(conversation, opened): the visitor's current conversation, or a new one when they
    have none (or, without `reuse_resolved`, when it is resolved), decided under the
    contact_inbox's row lock: two first messages at once open one conversation. With `lock`,
    a conversation found is read under its row lock (a new one is the caller's already)."""
    await contacts_store.lock_contact_inbox(conn, v.contact_inbox["id"])
    conv = await conversations_store.current_for(conn, v.contact_inbox["id"], lock=lock)
    if conv is not None and (reuse_resolved or conv["status"] != "resolved"):
        return conv, False
    return await open_new(conn, v.inbox, v.contact, v.contact_inbox, additional=additional), True


async def current_or_open(
    conn: AsyncConnection,
    v: Visitor,
    *,
    additional: Row | None,
    reuse_resolved: bool,
    may_open: bool,
    lock: bool,
) -> tuple[dict[str, Any], bool]:
    """`open_unless_current`, after a first look without locking the contact_inbox (the
    usual case: the visitor has a usable conversation; with `lock`, whichever conversation
    this returns was read under its row lock, or opened by this transaction). With
    `may_open` False it raises WouldOpen instead of opening one, so the caller can spend the
    contact's budget of new conversations (never inside a write) and try again."""
    conv = await conversations_store.current_for(conn, v.contact_inbox["id"], lock=lock)
    if conv is not None and (reuse_resolved or conv["status"] != "resolved"):
        return conv, False
    if not may_open:
        raise WouldOpen()
    return await open_unless_current(conn, v, additional=additional, reuse_resolved=reuse_resolved)


async def emit(
    conn: AsyncConnection,
    conv: Row,
    names: list[str],
    *,
    contact: Row | None = None,
    contact_inbox: Row | None = None,
) -> dict[str, Any]:
    """Queue conversation events, built once from the fresh row; conversation.read goes to
    agents only. The contact and contact_inbox are read when the caller does not have them."""
    if contact is None or contact_inbox is None:
        contact, contact_inbox = await contacts_store.identity_of(conn, conv["contact_inbox_id"])
    data = await payloads.conversation(conn, conv, contact=contact, contact_inbox=contact_inbox)
    for name in names:
        channels = (
            events.agent_channels(conv)
            if name == events.CONVERSATION_READ
            else events.conversation_channels(conv, contact_inbox["pubsub_token"])
        )
        await outbox.add(conn, name, data, channels, conversation_id=conv["id"])
    return data


async def set_status(
    conn: AsyncConnection,
    conv: Row,
    status: str,
    *,
    contact: Row | None = None,
    contact_inbox: Row | None = None,
) -> dict[str, Any] | None:
    """`status` on a conversation read under its row lock: the row as changed, with
    conversation.status_changed and conversation.updated; None (nothing written) when it
    already had that status."""
    if conv["status"] == status:
        return None
    changed = await change(conn, conv["id"], status=status)
    await emit(
        conn,
        changed,
        [events.CONVERSATION_STATUS_CHANGED, events.CONVERSATION_UPDATED],
        contact=contact,
        contact_inbox=contact_inbox,
    )
    return changed


async def find(
    conn: AsyncConnection, ref: Conversation, *, lock: bool = False
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The conversation `ref` names, and what the caller knows of its contact (for events)."""
    if isinstance(ref, AgentsConversation):
        conv = await conversations_store.visible_to_agent(
            conn, ref.account_id, ref.inbox_ids, ref.display_id, lock=lock
        )
        return conv, {}
    conv = await conversations_store.current_for(conn, ref.contact_inbox["id"], lock=lock)
    return conv, {"contact": ref.contact, "contact_inbox": ref.contact_inbox}


async def change_attributes(conn: AsyncConnection, a: AttributeChange) -> dict[str, Any] | None:
    """The conversation with its new custom attributes; None when the visitor has no
    conversation (or, to `replace` them, only a resolved one)."""
    v = a.visitor
    # Removing keys reads the map it changes: under the row lock.
    conv = await conversations_store.current_for(conn, v.contact_inbox["id"], lock=bool(a.remove))
    if conv is None or (a.replace is not None and conv["status"] == "resolved"):
        return None
    attrs = dict(a.replace if a.replace is not None else conv["custom_attributes"])
    removed = set(a.remove)
    attrs = {key: value for key, value in attrs.items() if key not in removed}
    changed = await change(conn, conv["id"], custom_attributes=attrs)
    await emit(
        conn,
        changed,
        [events.CONVERSATION_UPDATED],
        contact=v.contact,
        contact_inbox=v.contact_inbox,
    )
    return changed


async def mark_read(conn: AsyncConnection, r: MarkRead) -> bool:
    """False when there is no such conversation. The visitor: contact_last_seen_at (the
    server's clock, as Chatwoot), agent messages still sent/delivered become read (each
    with message.updated), conversation.read to the agents. An agent: agent_last_seen_at and
    unread_count 0, no event (Chatwoot's update_columns)."""
    ref = r.conversation
    conv, known = await find(conn, ref)
    if conv is None:
        return False
    now = time.time()
    if isinstance(ref, AgentsConversation):
        await change(conn, conv["id"], agent_last_seen_at=now, unread_count=0)
        return True
    changed = await change(conn, conv["id"], contact_last_seen_at=now)
    await _agent_messages_read(conn, changed, ref, now)
    await emit(conn, changed, [events.CONVERSATION_READ], **known)
    return True


# How many agent messages one visit marks read (the newest).
READ_LIMIT = 100


async def _agent_messages_read(conn: AsyncConnection, conv: Row, v: Visitor, now: float) -> int:
    """The visitor has seen the conversation: agent messages still `sent`/`delivered` become
    `read`, each with a `message.updated` carrying previous_changes. Returns how many."""
    rows = all_rows(
        await conn.execute(
            select(messages)
            .where(
                messages.c.conversation_id == conv["id"],
                # Agent replies and templates: never activity lines, which the visitor
                # does not see (a "read" of one would be an event for nothing).
                messages.c.message_type.in_((events.OUTGOING, events.TEMPLATE)),
                messages.c.private.is_(False),
                messages.c.status.in_(("sent", "delivered")),
            )
            .order_by(messages.c.id.desc())
            .limit(READ_LIMIT)
        )
    )
    if not rows:
        return 0
    await conn.execute(
        update(messages)
        .where(messages.c.id.in_([r["id"] for r in rows]))
        .values(status="read", updated_at=now)
    )
    senders = await payloads.senders(conn, rows, v.contact)
    ci = v.contact_inbox
    for row, sender in reversed(list(zip(rows, senders, strict=True))):
        old_status, old_updated = row["status"], events.iso(row["updated_at"])
        row.update(status="read", updated_at=now)
        data = events.message_for_sockets(row, conv, ci["source_id"], sender)
        data["previous_changes"] = {
            "status": [old_status, "read"],
            "updated_at": [old_updated, events.iso(now)],
        }
        await outbox.add(
            conn,
            events.MESSAGE_UPDATED,
            data,
            events.message_channels(conv, ci["pubsub_token"], row),
            conversation_id=conv["id"],
        )
    return len(rows)
