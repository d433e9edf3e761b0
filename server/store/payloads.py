"""Payloads that need the database: a conversation's push data (its contact, assignee and last
visible message) and the senders of messages. The shapes themselves are in server/events.py;
this module reads what they are built from, in a fixed number of queries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from server import events
from server.store import accounts as accounts_store
from server.store import all_rows
from server.store import contacts as contacts_store
from server.store import conversations as conversations_store
from server.store import voice_calls as calls_store
from server.store.inputs import Visitor
from server.store.prepared import Prepared
from server.store.rules import visible_to_visitor
from server.store.tables import contact_inboxes, contacts, messages

Row = Mapping[str, Any]

# What a conversation's payload shows as its last message: the newest the visitor may see.
_LAST_VISIBLE = Prepared(
    select(messages)
    .where(messages.c.conversation_id == bindparam("conv_id"), visible_to_visitor())
    .order_by(messages.c.id.desc())
    .limit(1)
)


def sender(msg: Row, contact: Row, users: Mapping[int, Row]) -> dict[str, Any] | None:
    """The `sender` of a message's payloads: the conversation's contact for the visitor's
    messages, the agent for an agent's (from `users`, by id); None for a message nobody
    sent (the voice agent's turns, activity)."""
    return sender_by(msg["sender_type"], msg["sender_id"], contact, users)


def sender_by(
    sender_type: str | None, sender_id: int | None, contact: Row, users: Mapping[int, Row]
) -> dict[str, Any] | None:
    """`sender`, by the message's sender columns."""
    if sender_type == "Contact":
        return events.contact_push(contact)
    if sender_type == "User" and sender_id in users:
        return events.user_push(users[sender_id])
    return None


def user_ids(rows: Iterable[Row]) -> set[int]:
    """The agents who sent `rows`."""
    return {r["sender_id"] for r in rows if r["sender_type"] == "User" and r["sender_id"]}


async def senders(
    conn: AsyncConnection, rows: list[dict[str, Any]], contact: Row
) -> list[dict[str, Any] | None]:
    """The `sender` of each of `rows` (one conversation's messages), in one query."""
    users = await accounts_store.users_by_id(conn, user_ids(rows))
    return [sender(row, contact, users) for row in rows]


async def conversation(
    conn: AsyncConnection,
    conv: Row,
    *,
    contact: Row | None = None,
    contact_inbox: Row | None = None,
) -> dict[str, Any]:
    """The conversation's push data (events.conversation_push); its contact and contact_inbox
    are read when the caller does not have them."""
    if contact is None or contact_inbox is None:
        contact, contact_inbox = await contacts_store.identity_of(conn, conv["contact_inbox_id"])
    wanted = {conv["assignee_id"]} if conv["assignee_id"] else set()
    last = await _LAST_VISIBLE.one(conn, {"conv_id": conv["id"]})
    if last is not None:
        wanted |= user_ids([last])
    users = await accounts_store.users_by_id(conn, wanted) if wanted else {}
    call = await calls_store.latest_of_conversation(conn, conv["id"])
    return _conversation(conv, contact, contact_inbox, users, last, call)


async def conversations(conn: AsyncConnection, convs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`conversation` for a page of conversations in a fixed number of queries (no N+1)."""
    if not convs:
        return []
    contact_rows = all_rows(
        await conn.execute(
            select(contacts).where(contacts.c.id.in_({c["contact_id"] for c in convs}))
        )
    )
    ci_rows = all_rows(
        await conn.execute(
            select(contact_inboxes).where(
                contact_inboxes.c.id.in_({c["contact_inbox_id"] for c in convs})
            )
        )
    )
    last_ids = (
        select(func.max(messages.c.id))
        .where(messages.c.conversation_id.in_([c["id"] for c in convs]), visible_to_visitor())
        .group_by(messages.c.conversation_id)
    )
    last_rows = all_rows(await conn.execute(select(messages).where(messages.c.id.in_(last_ids))))
    wanted = {c["assignee_id"] for c in convs if c["assignee_id"]} | user_ids(last_rows)
    users = await accounts_store.users_by_id(conn, wanted)
    calls = await calls_store.latest_of_conversations(conn, [c["id"] for c in convs])
    contact_by_id = {c["id"]: c for c in contact_rows}
    ci_by_id = {ci["id"]: ci for ci in ci_rows}
    last_by_conv = {m["conversation_id"]: m for m in last_rows}
    return [
        _conversation(
            conv,
            contact_by_id[conv["contact_id"]],
            ci_by_id[conv["contact_inbox_id"]],
            users,
            last_by_conv.get(conv["id"]),
            calls.get(conv["id"]),
        )
        for conv in convs
    ]


def _conversation(
    conv: Row,
    contact: Row,
    contact_inbox: Row,
    users: Mapping[int, Row],
    last: Row | None,
    call: Row | None,
) -> dict[str, Any]:
    last_push = None
    if last is not None:
        last_push = events.message_for_sockets(
            last, conv, contact_inbox["source_id"], sender(last, contact, users)
        )
    return events.conversation_push(
        conv,
        contact=contact,
        contact_inbox=contact_inbox,
        assignee=users.get(conv["assignee_id"]) if conv["assignee_id"] else None,
        last_message=last_push,
        voice_call=dict(call) if call is not None else None,
    )


async def current_conversation(
    conn: AsyncConnection, v: Visitor
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The visitor's current conversation and its push data (a typing event's); None when
    they have none."""
    conv = await conversations_store.current_for(conn, v.contact_inbox["id"])
    if conv is None:
        return None
    return conv, await conversation(conn, conv, contact=v.contact, contact_inbox=v.contact_inbox)


async def agent_list(
    conn: AsyncConnection,
    account_id: int,
    inbox_ids: list[int],
    f: conversations_store.ListFilter,
    *,
    page: int,
    per_page: int,
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """An agent's page of conversations: (meta, each one's push data). The meta counts mine,
    unassigned and all under the same status and search (not the assignee filter: the
    counts are what each filter would show)."""
    rows = await conversations_store.list_for_inboxes(
        conn, account_id, inbox_ids, f, page=page, per_page=per_page
    )
    meta = await conversations_store.assignment_counts(
        conn, account_id, inbox_ids, status=f.status, user_id=f.user_id, search=f.search
    )
    return meta, await conversations(conn, rows)
