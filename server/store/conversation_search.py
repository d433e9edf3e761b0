"""Finding conversations by what an agent remembers of them: the contact (name, email, phone
number, identifier) or words of a message. A plain case-insensitive substring match (LIKE
with the query's wildcards escaped), the same on SQLite and PostgreSQL; always inside the
agent's account and visible inboxes (the list's own filter), so it scans no more than the
agent may see. Activity lines are not searched: they say the same of every conversation."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select

from server import events
from server.store.tables import contacts, conversations, messages

ESCAPE = "\\"


def pattern(query: str) -> str:
    """`query` as a LIKE pattern matching it anywhere, its own % and _ taken literally."""
    escaped = (
        query.replace(ESCAPE, ESCAPE * 2).replace("%", ESCAPE + "%").replace("_", ESCAPE + "_")
    )
    return f"%{escaped}%"


def matching(account_id: int, inbox_ids: list[int], query: str) -> Any:
    """The clause: the conversation's contact, or one of its messages, contains `query`."""
    like = pattern(query)
    contact_hits = select(contacts.c.id).where(
        contacts.c.account_id == account_id,
        or_(
            contacts.c.name.ilike(like, escape=ESCAPE),
            contacts.c.email.ilike(like, escape=ESCAPE),
            contacts.c.phone_number.ilike(like, escape=ESCAPE),
            contacts.c.identifier.ilike(like, escape=ESCAPE),
        ),
    )
    message_hits = select(messages.c.conversation_id).where(
        messages.c.account_id == account_id,
        messages.c.inbox_id.in_(inbox_ids),
        messages.c.message_type != events.ACTIVITY,
        messages.c.content.ilike(like, escape=ESCAPE),
    )
    return or_(conversations.c.contact_id.in_(contact_hits), conversations.c.id.in_(message_hits))
