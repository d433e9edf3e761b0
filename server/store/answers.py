"""A visitor's answer to an interactive message, written (contract §2.5): the message's
content_attributes (submitted_values, or submitted_email), the contact's email for an email
prompt, the CSAT response for a survey, and message.updated, in one transaction.

The message is found only among the messages of the visitor's own conversations (their
contact_inbox: so only in this inbox, only of this contact) that the visitor can see; any
other id is "not found", whether it exists or not."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server import events, interactive
from server.store import contacts as contacts_store
from server.store import conversation_writes, one, outbox, payloads
from server.store.inputs import Answer, AnsweredMessage, Row
from server.store.tables import conversations, csat_survey_responses, messages


async def _message(conn: AsyncConnection, a: Answer) -> dict[str, Any] | None:
    return one(
        await conn.execute(
            select(messages)
            .join(conversations, conversations.c.id == messages.c.conversation_id)
            .where(
                messages.c.id == a.message_id,
                messages.c.inbox_id == a.visitor.inbox["id"],
                conversations.c.contact_inbox_id == a.visitor.contact_inbox["id"],
            )
        )
    )


def _email_changes(contact: Row, email: str) -> dict[str, Any]:
    """The email prompt sets the contact's email (the visitor's own contact only: contacts
    never merge, identity.py rule 1). A contact whose identifier was proven keeps an email
    it has: that profile came from the site's backend, not from a prompt anyone at the
    keyboard can answer."""
    if contact["identifier_verified"] and contact["email"]:
        return {}
    return {} if contact["email"] == email else {"email": email}


async def _record_csat(
    conn: AsyncConnection, msg: Row, conv: Row, contact: Row, response: Row, now: float
) -> None:
    """The survey's response row (an answer given again replaces the first, as Chatwoot's
    CsatSurveys::ResponseBuilder does)."""
    values = {"rating": response["rating"], "feedback_message": response["feedback_message"]}
    done = await conn.execute(
        update(csat_survey_responses)
        .where(csat_survey_responses.c.message_id == msg["id"])
        .values(updated_at=now, **values)
    )
    if done.rowcount:
        return
    await conn.execute(
        insert(csat_survey_responses).values(
            account_id=msg["account_id"],
            inbox_id=msg["inbox_id"],
            conversation_id=msg["conversation_id"],
            message_id=msg["id"],
            contact_id=contact["id"],
            assigned_agent_id=conv["assignee_id"],
            created_at=now,
            updated_at=now,
            **values,
        )
    )


async def answer_message(conn: AsyncConnection, a: Answer) -> AnsweredMessage | None:
    """None: no such message for this visitor. 422 (nothing written) for an answer the
    message does not take (server/interactive.py)."""
    found = await _message(conn, a)
    if found is None or not events.visible_to_visitor(found):
        return None
    # The conversation's row first (its events' order), then the message as it is now.
    conv = await conversation_writes.change(conn, found["conversation_id"])
    msg = await _message(conn, a)
    assert msg is not None
    changes = interactive.answered(msg, a.values, a.email)
    v = a.visitor
    contact = v.contact
    if "submitted_email" in changes:
        contact_changes = _email_changes(contact, changes["submitted_email"])
        if contact_changes:
            contact = await contacts_store.update_contact(conn, contact["id"], contact_changes)
    now = time.time()
    old_attrs, old_updated = msg["content_attributes"], events.iso(msg["updated_at"])
    attrs = {**old_attrs, **changes}
    await conn.execute(
        update(messages)
        .where(messages.c.id == msg["id"])
        .values(content_attributes=attrs, updated_at=now)
    )
    if msg["content_type"] == "input_csat":
        response = changes["submitted_values"]["csat_survey_response"]
        await _record_csat(conn, msg, conv, contact, response, now)
    row = {**msg, "content_attributes": attrs, "updated_at": now}
    [sender] = await payloads.senders(conn, [row], contact)
    ci = v.contact_inbox
    data = events.message_for_sockets(row, conv, ci["source_id"], sender)
    data["previous_changes"] = {
        "content_attributes": [old_attrs, attrs],
        "updated_at": [old_updated, events.iso(now)],
    }
    await outbox.add(
        conn,
        events.MESSAGE_UPDATED,
        data,
        events.message_channels(conv, ci["pubsub_token"], row),
        conversation_id=conv["id"],
    )
    return AnsweredMessage(row, contact)
