"""Conversations: which one is the visitor's current one, how they are created, locked,
reopened and resolved, and the events each change emits."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server import events
from server.store import accounts as accounts_store
from server.store import all_rows, one, outbox
from server.store import contacts as contacts_store
from server.store.prepared import Prepared
from server.store.tables import contact_inboxes, contacts, conversations, messages, users

STATUSES = ("open", "resolved", "pending", "snoozed")

_CURRENT_FOR = Prepared(
    select(conversations)
    .where(conversations.c.contact_inbox_id == bindparam("ci_id"))
    .order_by(conversations.c.id.desc())
    .limit(1)
)
# What the message path reads of the conversation it locks: no JSON attributes to decode.
MESSAGE_COLUMNS = (
    conversations.c.id,
    conversations.c.account_id,
    conversations.c.inbox_id,
    conversations.c.display_id,
    conversations.c.status,
    conversations.c.assignee_id,
    conversations.c.unread_count,
    conversations.c.last_activity_at,
)
# What a new message changes on its conversation (unread: unread_increment).
BUMP_VALUES = {
    "last_activity_at": bindparam("now"),
    "updated_at": bindparam("now"),
    "unread_count": conversations.c.unread_count + bindparam("unread"),
}
_BUMP = update(conversations).where(conversations.c.id == bindparam("conv_id")).values(BUMP_VALUES)
_BUMP_ONLY = Prepared(_BUMP.returning(*MESSAGE_COLUMNS))
# PostgreSQL: the bump also draws the message's id, so that the message and its event (whose
# payload holds that id) are written by one statement (see messages.create). Drawn under the
# row lock, the ids of a conversation's messages still increase in commit order.
_BUMP_NEXT_ID = Prepared(
    _BUMP.returning(
        *MESSAGE_COLUMNS,
        func.nextval(literal_column("'messages_id_seq'")).label("next_message_id"),
    )
)
# PostgreSQL, a visitor's message: who the visitor is (by inbox and source_id) and the bump
# of their current (latest) conversation, in one statement: one round trip less for the
# busiest write. The columns of the contact and the contact_inbox come prefixed.
# The latest conversation's id is an uncorrelated subquery (run once, ahead of the update),
# so the plan is index lookups by primary key whatever the statistics say.
_LATEST = conversations.alias("latest")
_SENDER = contact_inboxes.alias("sender")
_CONTACT_COLUMNS = [c.label(f"c_{c.name}") for c in contacts.c]
_BUMP_FOR_SENDER = Prepared(
    update(conversations)
    .where(
        conversations.c.id
        == select(func.max(_LATEST.c.id))
        .join(_SENDER, _SENDER.c.id == _LATEST.c.contact_inbox_id)
        .where(
            _SENDER.c.inbox_id == bindparam("inbox_id"),
            _SENDER.c.source_id == bindparam("source_id"),
        )
        .scalar_subquery(),
        contact_inboxes.c.id == conversations.c.contact_inbox_id,
        contacts.c.id == contact_inboxes.c.contact_id,
    )
    .values(BUMP_VALUES)
    .returning(
        *MESSAGE_COLUMNS,
        func.nextval(literal_column("'messages_id_seq'")).label("next_message_id"),
        *_CONTACT_COLUMNS,
        *contacts_store.CI_COLUMNS,
    )
)
# PostgreSQL, a visitor's message written without a transaction (messages.create_if_unchanged):
# the visitor, their latest conversation as it is now, with its row version (xmin: a new one
# with every update of the row), and an id drawn for the message. Nothing is locked.


def row_version() -> Any:
    """A conversation row's version: its xmin, new with every update of the row."""
    return literal_column("conversations.xmin::text")


_VISITOR_SNAPSHOT = Prepared(
    select(
        *MESSAGE_COLUMNS,
        row_version().label("row_version"),
        func.nextval(literal_column("'messages_id_seq'")).label("next_message_id"),
        *_CONTACT_COLUMNS,
        *contacts_store.CI_COLUMNS,
    )
    .select_from(contact_inboxes)
    .join(contacts, contacts.c.id == contact_inboxes.c.contact_id)
    .join(
        conversations,
        conversations.c.id
        == select(func.max(_LATEST.c.id))
        .where(_LATEST.c.contact_inbox_id == contact_inboxes.c.id)
        .scalar_subquery(),
    )
    .where(
        contact_inboxes.c.inbox_id == bindparam("inbox_id"),
        contact_inboxes.c.source_id == bindparam("source_id"),
    )
)
# On SQLite the bump also returns the flood check's answer: the created_at of the
# `skip`-th newest message (see lock_for_message for why only there).
_BUMP_FLOOD_AT = Prepared(
    _BUMP.returning(
        *MESSAGE_COLUMNS,
        # Not correlated on conversations.id: RETURNING drops table names, so "id" in the
        # subquery would be the message's.
        select(messages.c.created_at)
        .where(messages.c.conversation_id == bindparam("conv_id"))
        .order_by(messages.c.id.desc())
        .limit(1)
        .offset(bindparam("skip"))
        .scalar_subquery()
        .label("flood_at"),
    )
)


async def current_for(conn: AsyncConnection, contact_inbox_id: int) -> dict[str, Any] | None:
    """The visitor's current conversation: always the latest one (contract §1.4)."""
    return await _CURRENT_FOR.one(conn, {"ci_id": contact_inbox_id})


async def by_display_id(
    conn: AsyncConnection, account_id: int, display_id: int
) -> dict[str, Any] | None:
    return one(
        await conn.execute(
            select(conversations).where(
                conversations.c.account_id == account_id, conversations.c.display_id == display_id
            )
        )
    )


async def lock(conn: AsyncConnection, conv_id: int, **values: Any) -> dict[str, Any]:
    """Take the conversation's row lock (held to commit) and apply `values`.

    Every write that emits a conversation's durable events starts here, so its message ids
    and outbox ids increase in commit order."""
    values.setdefault("updated_at", time.time())
    row = one(
        await conn.execute(
            update(conversations)
            .where(conversations.c.id == conv_id)
            .values(**values)
            .returning(*conversations.c)
        )
    )
    assert row is not None, f"conversation {conv_id} vanished"
    return row


async def lock_for_message(
    conn: AsyncConnection, conv_id: int, *, now: float, unread: int, flood_skip: int | None
) -> tuple[dict[str, Any], float | None]:
    """`lock` for a new message (last activity, unread count), as prebuilt statements since
    this runs for every message. Returns the MESSAGE_COLUMNS of the conversation and, with
    `flood_skip`, the created_at of the conversation's `flood_skip`-th newest message (None
    when it has fewer), read after the lock was taken.

    On SQLite that read is part of the locking statement (one statement less per message):
    the batch holds the database's write lock, so the subquery sees every committed message.
    On PostgreSQL a subquery in RETURNING would read the snapshot taken before the row lock
    was granted, and miss the messages of the transaction that held it: there the check is
    left to the statement that inserts the message (always None here), and the row carries
    the new message's id as `next_message_id`."""
    params = {"conv_id": conv_id, "now": now, "unread": unread}
    if conn.dialect.name == "postgresql":
        row = await _BUMP_NEXT_ID.one(conn, params)
        assert row is not None, f"conversation {conv_id} vanished"
        return row, None
    if flood_skip is not None:
        row = await _BUMP_FLOOD_AT.one(conn, {**params, "skip": flood_skip})
        assert row is not None, f"conversation {conv_id} vanished"
        return row, row.pop("flood_at")
    row = await _BUMP_ONLY.one(conn, params)
    assert row is not None, f"conversation {conv_id} vanished"
    return row, None


async def lock_latest_of_sender(
    conn: AsyncConnection, inbox_id: int, source_id: str, *, now: float, unread: int
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None:
    """PostgreSQL: (contact, contact_inbox, conversation) of a visitor's message, with the
    latest conversation of the visitor locked and bumped as `lock_for_message` does (its row
    carries `next_message_id`). None when the visitor is unknown or has no conversation yet:
    the caller then takes the general path (find_sender, current_or_new)."""
    row = await _BUMP_FOR_SENDER.one(
        conn, {"inbox_id": inbox_id, "source_id": source_id, "now": now, "unread": unread}
    )
    return _split_visitor(row) if row is not None else None


def _split_visitor(
    row: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(contact, contact_inbox, conversation) of a row with the c_* and ci_* columns."""
    contact = {c.name: row.pop(f"c_{c.name}") for c in contacts.c}
    contact_inbox = contacts_store.pop_contact_inbox(row)
    return contact, contact_inbox, row


async def visitor_snapshot(
    conn: AsyncConnection, inbox_id: int, source_id: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None:
    """PostgreSQL, outside a transaction: (contact, contact_inbox, conversation) of a
    visitor's message, unlocked; the conversation (MESSAGE_COLUMNS) carries `row_version`
    and `next_message_id`. None when the visitor is unknown or has no conversation yet."""
    row = await _VISITOR_SNAPSHOT.one_autocommit(
        conn, {"inbox_id": inbox_id, "source_id": source_id}
    )
    return _split_visitor(row) if row is not None else None


async def create(
    conn: AsyncConnection,
    *,
    inbox: dict[str, Any],
    contact: dict[str, Any],
    contact_inbox: dict[str, Any],
    additional_attributes: dict[str, Any] | None = None,
    custom_attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    now = time.time()
    display_id = await accounts_store.next_display_id(conn, inbox["account_id"])
    status = "resolved" if contact["blocked"] else "open"
    conv = one(
        await conn.execute(
            insert(conversations)
            .values(
                account_id=inbox["account_id"],
                inbox_id=inbox["id"],
                display_id=display_id,
                contact_id=contact["id"],
                contact_inbox_id=contact_inbox["id"],
                status=status,
                assignee_id=None,
                additional_attributes=additional_attributes or {},
                custom_attributes=custom_attributes or {},
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


class WouldOpen(Exception):
    """current_or_new(may_open=False) needed a new conversation."""


async def current_or_new(
    conn: AsyncConnection,
    *,
    inbox: dict[str, Any],
    contact: dict[str, Any],
    contact_inbox: dict[str, Any],
    additional_attributes: dict[str, Any] | None = None,
    reuse_resolved: bool = True,
    may_open: bool = True,
) -> tuple[dict[str, Any], bool]:
    """The current conversation, or a new one when the visitor has none (or, with
    reuse_resolved=False, when the current one is resolved). (conv, created)

    With may_open=False it raises WouldOpen instead of creating one, so the caller can check
    the contact's budget of new conversations (never inside a write) and try again."""

    def usable(conv: dict[str, Any] | None) -> bool:
        return conv is not None and (reuse_resolved or conv["status"] != "resolved")

    conv = await current_for(conn, contact_inbox["id"])
    if usable(conv):
        return conv, False  # type: ignore[return-value]
    if not may_open:
        raise WouldOpen()
    # Two first messages at once must not open two conversations: serialize on the
    # contact_inbox row, then look again.
    await contacts_store.touch_contact_inbox(conn, contact_inbox["id"])
    conv = await current_for(conn, contact_inbox["id"])
    if usable(conv):
        return conv, False  # type: ignore[return-value]
    conv = await create(
        conn,
        inbox=inbox,
        contact=contact,
        contact_inbox=contact_inbox,
        additional_attributes=additional_attributes,
    )
    return conv, True


async def push_data(
    conn: AsyncConnection,
    conv: dict[str, Any],
    *,
    contact: dict[str, Any] | None = None,
    contact_inbox: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The conversation's push_event_data, loading what the caller did not have."""
    if contact is None:
        contact = await contacts_store.get_contact(conn, conv["contact_id"])
    if contact_inbox is None:
        contact_inbox = await contacts_store.get_contact_inbox(conn, conv["contact_inbox_id"])
    assert contact is not None and contact_inbox is not None
    assignee = None
    if conv["assignee_id"]:
        assignee = await accounts_store.get_user(conn, conv["assignee_id"])
    last = one(
        await conn.execute(
            select(messages)
            .where(
                messages.c.conversation_id == conv["id"],
                messages.c.private.is_(False),
                messages.c.message_type != events.ACTIVITY,
            )
            .order_by(messages.c.id.desc())
            .limit(1)
        )
    )
    last_push = None
    if last is not None:
        sender = await sender_push(conn, last, contact)
        last_push = events.message_push(last, conv, contact_inbox["source_id"], sender)
    return events.conversation_push(
        conv,
        contact=contact,
        contact_inbox=contact_inbox,
        assignee=assignee,
        last_message=last_push,
    )


async def sender_push(
    conn: AsyncConnection, msg: dict[str, Any], contact: dict[str, Any]
) -> dict[str, Any] | None:
    if msg["sender_type"] == "Contact":
        return events.contact_push(contact)
    if msg["sender_type"] == "User" and msg["sender_id"]:
        user = await accounts_store.get_user(conn, msg["sender_id"])
        return events.user_push(user) if user else None
    return None


async def emit(
    conn: AsyncConnection,
    conv: dict[str, Any],
    names: list[str],
    *,
    contact: dict[str, Any] | None = None,
    contact_inbox: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Queue conversation events (built once from the fresh row) to agents and the contact;
    conversation.read goes to agents only."""
    if contact_inbox is None:
        contact_inbox = await contacts_store.get_contact_inbox(conn, conv["contact_inbox_id"])
    assert contact_inbox is not None
    data = await push_data(conn, conv, contact=contact, contact_inbox=contact_inbox)
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
    conv: dict[str, Any],
    status: str,
    **context: Any,
) -> dict[str, Any]:
    """Change the status under the row lock; emits status_changed + updated if it changed."""
    locked = await lock(conn, conv["id"])
    if locked["status"] == status:
        return locked
    locked = await lock(conn, conv["id"], status=status)
    await emit(
        conn,
        locked,
        [events.CONVERSATION_STATUS_CHANGED, events.CONVERSATION_UPDATED],
        **context,
    )
    return locked


async def set_custom_attributes(
    conn: AsyncConnection, conv: dict[str, Any], attrs: dict[str, Any], **context: Any
) -> dict[str, Any]:
    locked = await lock(conn, conv["id"], custom_attributes=attrs)
    await emit(conn, locked, [events.CONVERSATION_UPDATED], **context)
    return locked


async def remove_custom_attributes(
    conn: AsyncConnection, conv: dict[str, Any], keys: list[str], **context: Any
) -> dict[str, Any]:
    current = await lock(conn, conv["id"])
    attrs = {k: v for k, v in current["custom_attributes"].items() if k not in set(keys)}
    locked = await lock(conn, conv["id"], custom_attributes=attrs)
    await emit(conn, locked, [events.CONVERSATION_UPDATED], **context)
    return locked


async def list_for_inboxes(
    conn: AsyncConnection,
    account_id: int,
    inbox_ids: list[int],
    *,
    status: str | None,
    page: int,
    per_page: int,
) -> tuple[list[dict[str, Any]], int]:
    """Conversations of the given inboxes, latest activity first, with the total count."""
    where = [conversations.c.account_id == account_id, conversations.c.inbox_id.in_(inbox_ids)]
    if status is not None:
        where.append(conversations.c.status == status)
    total = (
        await conn.execute(select(func.count()).select_from(conversations).where(and_(*where)))
    ).scalar_one()
    rows = all_rows(
        await conn.execute(
            select(conversations)
            .where(and_(*where))
            .order_by(conversations.c.last_activity_at.desc(), conversations.c.id.desc())
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
    )
    return rows, int(total)


async def users_by_id(conn: AsyncConnection, ids: set[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    rows = all_rows(await conn.execute(select(users).where(users.c.id.in_(ids))))
    return {row["id"]: row for row in rows}


async def assignment_counts(
    conn: AsyncConnection,
    account_id: int,
    inbox_ids: list[int],
    *,
    status: str | None,
    user_id: int,
) -> dict[str, int]:
    """The agent list's meta: mine / unassigned / all under the same filter, in one query."""
    from sqlalchemy import case

    where = [conversations.c.account_id == account_id, conversations.c.inbox_id.in_(inbox_ids)]
    if status is not None:
        where.append(conversations.c.status == status)
    row = (
        await conn.execute(
            select(
                func.count(),
                func.sum(case((conversations.c.assignee_id == user_id, 1), else_=0)),
                func.sum(case((conversations.c.assignee_id.is_(None), 1), else_=0)),
            )
            .select_from(conversations)
            .where(and_(*where))
        )
    ).one()
    return {
        "mine_count": int(row[1] or 0),
        "unassigned_count": int(row[2] or 0),
        "all_count": int(row[0] or 0),
    }


async def push_data_many(
    conn: AsyncConnection, convs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """push_data for a page of conversations in a fixed number of queries (no N+1)."""
    from server.store.tables import contact_inboxes, contacts

    if not convs:
        return []
    conv_ids = [c["id"] for c in convs]
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
        .where(
            messages.c.conversation_id.in_(conv_ids),
            messages.c.private.is_(False),
            messages.c.message_type != events.ACTIVITY,
        )
        .group_by(messages.c.conversation_id)
    )
    last_rows = all_rows(await conn.execute(select(messages).where(messages.c.id.in_(last_ids))))
    user_ids = {c["assignee_id"] for c in convs if c["assignee_id"]}
    user_ids |= {m["sender_id"] for m in last_rows if m["sender_type"] == "User" and m["sender_id"]}
    people = await users_by_id(conn, user_ids)
    contact_by_id = {c["id"]: c for c in contact_rows}
    ci_by_id = {ci["id"]: ci for ci in ci_rows}
    last_by_conv = {m["conversation_id"]: m for m in last_rows}
    out = []
    for conv in convs:
        contact = contact_by_id[conv["contact_id"]]
        ci = ci_by_id[conv["contact_inbox_id"]]
        last = last_by_conv.get(conv["id"])
        last_push = None
        if last is not None:
            sender = None
            if last["sender_type"] == "Contact":
                sender = events.contact_push(contact)
            elif last["sender_type"] == "User" and last["sender_id"] in people:
                sender = events.user_push(people[last["sender_id"]])
            last_push = events.message_push(last, conv, ci["source_id"], sender)
        out.append(
            events.conversation_push(
                conv,
                contact=contact,
                contact_inbox=ci,
                assignee=people.get(conv["assignee_id"]) if conv["assignee_id"] else None,
                last_message=last_push,
            )
        )
    return out
