"""CSAT survey responses, read: whether a resolved conversation is due its survey, and the
agents' list of answers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from server.store import all_rows
from server.store.rules import prefixed, take_prefixed
from server.store.tables import (
    contacts,
    conversations,
    csat_survey_responses,
    inboxes,
    messages,
    users,
)


async def survey_due(conn: AsyncConnection, conv: dict[str, Any]) -> bool:
    """The inbox sends surveys and this conversation has none yet."""
    enabled = (
        await conn.execute(
            select(inboxes.c.csat_survey_enabled).where(inboxes.c.id == conv["inbox_id"])
        )
    ).scalar_one_or_none()
    if not enabled:
        return False
    sent = await conn.execute(
        select(messages.c.id)
        .where(messages.c.conversation_id == conv["id"], messages.c.content_type == "input_csat")
        .limit(1)
    )
    return sent.first() is None


async def responses(
    conn: AsyncConnection, account_id: int, inbox_ids: list[int], *, page: int, per_page: int
) -> list[dict[str, Any]]:
    """A page of the answers in the agent's inboxes, newest first: each response row with
    `contact`, `conversation` (its display_id) and `agent` (the assignee when answered)."""
    query = (
        select(
            csat_survey_responses,
            conversations.c.display_id.label("conversation_display_id"),
            *prefixed(contacts, "contact__"),
            *prefixed(users, "agent__"),
        )
        .join(conversations, conversations.c.id == csat_survey_responses.c.conversation_id)
        .join(contacts, contacts.c.id == csat_survey_responses.c.contact_id)
        .outerjoin(users, users.c.id == csat_survey_responses.c.assigned_agent_id)
        .where(
            csat_survey_responses.c.account_id == account_id,
            csat_survey_responses.c.inbox_id.in_(inbox_ids),
        )
        .order_by(csat_survey_responses.c.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    out = []
    for row in all_rows(await conn.execute(query)):
        contact = take_prefixed(row, contacts, "contact__")
        agent = take_prefixed(row, users, "agent__")
        out.append({**row, "contact": contact, "agent": agent if agent["id"] else None})
    return out
