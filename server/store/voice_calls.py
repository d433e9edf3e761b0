"""Voice calls, read: a visitor's live call, a conversation's latest call, the calls whose
heartbeats stopped, and the voice turns of a call or a conversation. Every read of a visitor's
call is by their own contact_inbox (the index voice_calls_contact_inbox): nothing here scans
other visitors' calls. Writes are in voice_call_writes.py."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Text, bindparam, or_, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncConnection

from server.store import all_rows, one
from server.store import conversations as conversations_store
from server.store.prepared import Prepared
from server.store.rules import ELEVENLABS_KEY_PREFIX, in_display_order
from server.store.tables import (
    account_users,
    conversations,
    inbox_members,
    inboxes,
    messages,
    users,
    voice_calls,
)

# A voice turn's content_attributes as orjson writes them (compact, keys in insertion order:
# "voice_transcript" first), for a LIKE that spares decoding every message of a conversation.
VOICE_TURN_PREFIX = '{"voice_transcript":true%'

_LIVE = Prepared(
    select(voice_calls).where(
        voice_calls.c.contact_inbox_id == bindparam("ci_id"), voice_calls.c.ended_at.is_(None)
    )
)
_LATEST_OF_VISITOR = Prepared(
    select(voice_calls)
    .where(voice_calls.c.contact_inbox_id == bindparam("ci_id"))
    .order_by(voice_calls.c.id.desc())
    .limit(1)
)
_LATEST_OF_CONVERSATION = Prepared(
    select(voice_calls)
    .where(voice_calls.c.conversation_id == bindparam("conv_id"))
    .order_by(voice_calls.c.id.desc())
    .limit(1)
)


async def live(conn: AsyncConnection, contact_inbox_id: int) -> dict[str, Any] | None:
    """The visitor's live call (at most one: the index voice_calls_live)."""
    return await _LIVE.one(conn, {"ci_id": contact_inbox_id})


async def latest_of_visitor(conn: AsyncConnection, contact_inbox_id: int) -> dict[str, Any] | None:
    return await _LATEST_OF_VISITOR.one(conn, {"ci_id": contact_inbox_id})


async def latest_of_conversation(conn: AsyncConnection, conv_id: int) -> dict[str, Any] | None:
    """What a conversation's payload shows of its voice call (payloads.conversation)."""
    return await _LATEST_OF_CONVERSATION.one(conn, {"conv_id": conv_id})


async def latest_of_conversations(
    conn: AsyncConnection, conv_ids: list[int]
) -> dict[int, dict[str, Any]]:
    """`latest_of_conversation` for a page of conversations, in one query."""
    if not conv_ids:
        return {}
    rows = all_rows(
        await conn.execute(
            select(voice_calls)
            .where(voice_calls.c.conversation_id.in_(conv_ids))
            .order_by(voice_calls.c.id)
        )
    )
    return {row["conversation_id"]: row for row in rows}  # the last (newest) wins


async def by_id(conn: AsyncConnection, call_id: int) -> dict[str, Any] | None:
    return one(await conn.execute(select(voice_calls).where(voice_calls.c.id == call_id)))


async def by_elevenlabs_id(conn: AsyncConnection, el_id: str) -> dict[str, Any] | None:
    return one(
        await conn.execute(
            select(voice_calls).where(voice_calls.c.elevenlabs_conversation_id == el_id)
        )
    )


async def with_inbox(conn: AsyncConnection, call_id: int) -> dict[str, Any] | None:
    """The call and what fetching its transcript needs of its inbox (the API key, the agent,
    the webhook secret), as `call` and `inbox`."""
    call = await by_id(conn, call_id)
    if call is None:
        return None
    inbox = one(await conn.execute(select(inboxes).where(inboxes.c.id == call["inbox_id"])))
    return {"call": call, "inbox": inbox}


async def stale(conn: AsyncConnection, before: float, limit: int) -> list[dict[str, Any]]:
    """Live calls whose last heartbeat is older than `before` (the index voice_calls_heartbeat)."""
    return all_rows(
        await conn.execute(
            select(voice_calls)
            .where(voice_calls.c.ended_at.is_(None), voice_calls.c.last_heartbeat_at < before)
            .order_by(voice_calls.c.last_heartbeat_at)
            .limit(limit)
        )
    )


def _voice_turns(conv_id: int) -> Any:
    return select(messages).where(
        messages.c.conversation_id == conv_id,
        type_coerce(messages.c.content_attributes, Text).like(VOICE_TURN_PREFIX),
    )


# A browser's event_id may not start with it (server/voice/handlers.py).
KEY_PREFIX = ELEVENLABS_KEY_PREFIX
# At most this many of a call's turns are read or written at once.
MAX_TURNS = 1000
# A turn the browser posts while the visitor has no live call belongs to the call that starts
# or ended this close to it (the SDK's first turn can beat the first heartbeat; the last
# turn's POST can come after voice_call_ended).
TURN_GRACE = 60.0


async def turns_of_call(conn: AsyncConnection, call: dict[str, Any], limit: int) -> list[dict]:
    """The voice turns of `call`, by id: those tagged with it (content_attributes
    .voice_call_id), and the untagged ones posted in the TURN_GRACE before it started. Only
    the call's conversation is read, from the call's start on (and the turns taken from its
    ElevenLabs transcript, which can be dated before it)."""
    el_id = call["elevenlabs_conversation_id"]
    keyed = (
        [messages.c.external_event_id.startswith(f"{KEY_PREFIX}{el_id}:", autoescape=True)]
        if el_id
        else []
    )
    rows = all_rows(
        await conn.execute(
            _voice_turns(call["conversation_id"])
            .where(or_(messages.c.created_at >= call["started_at"] - TURN_GRACE, *keyed))
            .order_by(messages.c.id)
            .limit(limit)
        )
    )
    return [r for r in rows if _of_call(r, call)]


async def reconciled_turn(
    conn: AsyncConnection, call: dict[str, Any], source: str, content: str
) -> dict[str, Any] | None:
    """The turn of `call` written from ElevenLabs' transcript that a late POST of the
    browser repeats (same role, same words), if there is one."""
    words = " ".join(content.split())
    for row in await turns_of_call(conn, call, MAX_TURNS):
        attrs = row["content_attributes"]
        if (
            (row["external_event_id"] or "").startswith(KEY_PREFIX)
            and attrs.get("role") == source
            and " ".join((row["content"] or "").split()) == words
        ):
            return row
    return None


def _of_call(row: dict[str, Any], call: dict[str, Any]) -> bool:
    tagged = row["content_attributes"].get("voice_call_id")
    if tagged is not None:
        return bool(tagged == call["id"])
    return row["created_at"] <= call["started_at"]


async def history(conn: AsyncConnection, conv_id: int, limit: int) -> list[dict[str, Any]]:
    """The conversation's last `limit` voice turns, oldest first."""
    rows = all_rows(
        await conn.execute(_voice_turns(conv_id).order_by(messages.c.id.desc()).limit(limit))
    )
    rows.reverse()
    return in_display_order(rows)


async def history_of_visitor(
    conn: AsyncConnection, contact_inbox_id: int, limit: int
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """(the visitor's current conversation, its last `limit` voice turns); None: none."""
    conv = await conversations_store.current_for(conn, contact_inbox_id)
    if conv is None:
        return None
    return conv, await history(conn, conv["id"], limit)


async def display_id(conn: AsyncConnection, conv_id: int) -> int | None:
    return (
        await conn.execute(select(conversations.c.display_id).where(conversations.c.id == conv_id))
    ).scalar()


async def panel(
    conn: AsyncConnection, inbox: dict[str, Any], contact_inbox_id: int | None
) -> tuple[dict[str, Any] | None, int | None]:
    """What voice_signed_url adds for the call panel: the agent it shows (`panel_agent`) and
    the display_id of the visitor's current conversation (None: no visitor, or none)."""
    agent = await panel_agent(conn, inbox)
    if contact_inbox_id is None:
        return agent, None
    conv = await conversations_store.current_for(conn, contact_inbox_id)
    return agent, conv["display_id"] if conv is not None else None


async def panel_agent(conn: AsyncConnection, inbox: dict[str, Any]) -> dict[str, Any] | None:
    """Who the voice call panel shows: the inbox's first agent (by membership), else the
    account's first administrator (the fork's voice_signed_url)."""
    member = one(
        await conn.execute(
            select(users)
            .join(inbox_members, inbox_members.c.user_id == users.c.id)
            .where(inbox_members.c.inbox_id == inbox["id"])
            .order_by(users.c.id)
            .limit(1)
        )
    )
    if member is not None:
        return member
    return one(
        await conn.execute(
            select(users)
            .join(account_users, account_users.c.user_id == users.c.id)
            .where(
                account_users.c.account_id == inbox["account_id"],
                account_users.c.role == "administrator",
            )
            .order_by(users.c.id)
            .limit(1)
        )
    )
