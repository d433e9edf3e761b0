"""A conversation's status, written, and what the change writes with it, in its transaction:
an agent's change, its activity line ("Conversation was marked resolved by Ada",
store/activity.py); a resolve with the inbox's CSAT setting on, the survey (an input_csat
message), so a resolved conversation of such an inbox always has its survey (Chatwoot's
CsatSurveyService: once per conversation)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from server import events
from server.interactive import CSAT_CONTENT
from server.store import activity, conversation_writes
from server.store import contacts as contacts_store
from server.store import csat as csat_store
from server.store.inputs import NewMessage, StatusChange
from server.store.message_writes import Writing
from server.store.rules import Flood

if TYPE_CHECKING:
    from server.store.engine import Engine

# The survey is the server's message, not a client's: the per-conversation flood limit of
# clients does not hold it back (this only bounds the check's read).
SURVEY_FLOOD = Flood(1000)


async def change_status(
    conn: AsyncConnection, engine: Engine, s: StatusChange
) -> dict[str, Any] | None:
    """The conversation with its new status (as it was, when it had it already); None when
    there is no such conversation. Decided under the row lock."""
    conv, known = await conversation_writes.find(conn, s.conversation, lock=True)
    if conv is None:
        return None
    status = s.status or ("resolved" if conv["status"] == "open" else "open")
    if s.actor is not None and conv["status"] != status and "contact" not in known:
        # Read once for the events and the activity line.
        contact, contact_inbox = await contacts_store.identity_of(conn, conv["contact_inbox_id"])
        known = {"contact": contact, "contact_inbox": contact_inbox}
    changed = await conversation_writes.set_status(conn, conv, status, **known)
    if changed is None:
        return conv
    if s.actor is not None:
        line = activity.status_line(status, s.actor)
        changed = await activity.write_line(conn, engine, changed, line, known)
    if status == "resolved" and await csat_store.survey_due(conn, changed):
        changed = await _send_survey(conn, engine, changed, known)
    return changed


async def _send_survey(
    conn: AsyncConnection, engine: Engine, conv: dict[str, Any], known: dict[str, Any]
) -> dict[str, Any]:
    """The input_csat message (a template, without sender, as Chatwoot's); the conversation
    as its bump left it."""
    contact, contact_inbox = known.get("contact"), known.get("contact_inbox")
    if contact is None or contact_inbox is None:
        contact, contact_inbox = await contacts_store.identity_of(conn, conv["contact_inbox_id"])
    new = NewMessage(
        message_type=events.TEMPLATE,
        content=CSAT_CONTENT,
        content_type="input_csat",
        content_attributes={"display_type": "emoji"},
    )
    w = Writing(new, contact, contact_inbox, SURVEY_FLOOD, time.time())
    _, bumped = await engine.write_message(conn, conv["id"], w)
    return {**conv, **bumped}
