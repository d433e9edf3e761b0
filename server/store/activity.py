"""Activity messages (message_type 2): the lines a conversation shows when an agent changes
it ("Conversation was marked resolved by Ada", "Assigned to Bo by Ada"), worded as Chatwoot's
`activity` strings (config/locales/en.yml), so consoles that read them find what they know.

Written by the write that makes the change, in its transaction: a status or assignee change
never commits without its line, nor the line without the change. They reach the inbox's
agents only (events.visible_to_visitor), as Chatwoot sends them."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from server import events
from server.store import contacts as contacts_store
from server.store.inputs import NewMessage, Row
from server.store.message_writes import Writing
from server.store.rules import Flood

if TYPE_CHECKING:
    from server.store.engine import Engine

# The server's own lines are not held back by the per-conversation flood limit of clients
# (this only bounds the check's read).
ACTIVITY_FLOOD = Flood(1000)

_STATUS = {
    "resolved": "Conversation was marked resolved by {user}",
    "open": "Conversation was reopened by {user}",
    "pending": "Conversation was marked as pending by {user}",
    "snoozed": "Conversation was snoozed by {user}",
}


def status_line(status: str, actor: Row) -> str:
    return _STATUS[status].format(user=actor["name"])


def assignee_line(assignee: Row | None, actor: Row) -> str:
    if assignee is None:
        return f"Conversation unassigned by {actor['name']}"
    if assignee["id"] == actor["id"]:
        return f"{actor['name']} self-assigned this conversation"
    return f"Assigned to {assignee['name']} by {actor['name']}"


async def write_line(
    conn: AsyncConnection,
    engine: Engine,
    conv: Row,
    content: str,
    known: dict[str, Any],
) -> dict[str, Any]:
    """The activity message (no sender, as Chatwoot's) on `conv`, read under its row lock;
    returns the conversation as the message's bump left it."""
    contact, contact_inbox = known.get("contact"), known.get("contact_inbox")
    if contact is None or contact_inbox is None:
        contact, contact_inbox = await contacts_store.identity_of(conn, conv["contact_inbox_id"])
    new = NewMessage(message_type=events.ACTIVITY, content=content)
    w = Writing(new, contact, contact_inbox, ACTIVITY_FLOOD, time.time())
    _, bumped = await engine.write_message(conn, conv["id"], w)
    return {**conv, **bumped}
