"""A conversation's assignee, written under the conversation's row lock, with its activity
line ("Assigned to Bo by Ada") and its events: conversation.updated to the agents and the
visitor (the payload's meta.assignee), assignee.changed to the agents alone, as Chatwoot's
ActionCableListener sends them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from server import events
from server.errors import unprocessable
from server.store import activity, conversation_writes, one, outbox
from server.store import contacts as contacts_store
from server.store.inputs import Assignment
from server.store.tables import account_users, inbox_members, users

if TYPE_CHECKING:
    from server.store.engine import Engine

NOT_AN_AGENT = "assignee_id must be an agent of the conversation's inbox"


async def assignable(conn: AsyncConnection, conv: dict[str, Any], user_id: int) -> dict[str, Any]:
    """The user, when it answers the conversation's inbox: a member of the inbox, or an
    administrator of its account; otherwise a 422 (the same for a user that does not exist,
    so ids of other accounts cannot be probed)."""
    member = select(inbox_members.c.user_id).where(
        inbox_members.c.inbox_id == conv["inbox_id"], inbox_members.c.user_id == user_id
    )
    admin = select(account_users.c.user_id).where(
        account_users.c.account_id == conv["account_id"],
        account_users.c.user_id == user_id,
        account_users.c.role == "administrator",
    )
    row = one(
        await conn.execute(
            select(users).where(
                and_(users.c.id == user_id, or_(users.c.id.in_(member), users.c.id.in_(admin)))
            )
        )
    )
    if row is None:
        raise unprocessable(NOT_AN_AGENT)
    return row


async def assign(
    conn: AsyncConnection, engine: Engine, a: Assignment
) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """(the conversation as it is now, its assignee); None when the agent sees no such
    conversation. Assigning whom it has already writes nothing."""
    conv, _ = await conversation_writes.find(conn, a.conversation, lock=True)
    if conv is None:
        return None
    assignee = None if a.assignee_id is None else await assignable(conn, conv, a.assignee_id)
    if conv["assignee_id"] == a.assignee_id:
        return conv, assignee
    contact, contact_inbox = await contacts_store.identity_of(conn, conv["contact_inbox_id"])
    known = {"contact": contact, "contact_inbox": contact_inbox}
    changed = await conversation_writes.change(conn, conv["id"], assignee_id=a.assignee_id)
    changed = await activity.write_line(
        conn, engine, changed, activity.assignee_line(assignee, a.actor), known
    )
    data = await conversation_writes.emit(conn, changed, [events.CONVERSATION_UPDATED], **known)
    await outbox.add(
        conn,
        events.ASSIGNEE_CHANGED,
        data,
        events.agent_channels(changed),
        conversation_id=changed["id"],
    )
    return changed, assignee
