"""Messages: the one way a message is written (lock, insert, event), its one-statement form
for a visitor's message on PostgreSQL (`create_if_unchanged`), and the one way each audience
reads them."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Float, and_, bindparam, insert, literal_column, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from server import events
from server.errors import ApiError
from server.store import all_rows, one, outbox
from server.store import conversations as conversations_store
from server.store.db import OUTBOX_DIRTY
from server.store.prepared import Prepared
from server.store.tables import conversations, messages

WIDGET_PAGE = 20
WIDGET_AFTER_PAGE = 100
RANGE_LIMIT = 1000


class FloodError(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            422,
            {
                "message": f"Too many messages: at most {limit} a minute per conversation",
                "attributes": ["base"],
            },
        )


async def by_external_event(
    conn: AsyncConnection, conversation_id: int, event_id: str
) -> dict[str, Any] | None:
    return one(
        await conn.execute(
            select(messages).where(
                messages.c.conversation_id == conversation_id,
                messages.c.external_event_id == event_id,
            )
        )
    )


# The unique index that makes a retried message (same sender, same echo_id) one message.
ECHO_INDEX = "messages_sender_echo"


def is_retry(exc: BaseException, echo_id: str | None) -> bool:
    """True when a message write failed in a way its earlier attempt explains: the echo_id
    is taken (the unique index, on either engine), or the flood check refused it (the
    earlier attempt may be what filled the minute). The caller then looks the original up
    (`by_echo_id`); only an error path pays for that read."""
    if echo_id is None:
        return False
    if isinstance(exc, FloodError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    text = str(exc.orig)
    # PostgreSQL names the index; SQLite names its columns.
    return ECHO_INDEX in text or "messages.echo_id" in text


async def by_echo_id(
    conn: AsyncConnection, sender_type: str, sender_id: int, echo_id: str
) -> tuple[dict[str, Any], int] | None:
    """(message, its conversation's display_id) of the sender's message with `echo_id`."""
    row = one(
        await conn.execute(
            select(messages, conversations.c.display_id.label("conversation_display_id"))
            .join(conversations, conversations.c.id == messages.c.conversation_id)
            .where(
                messages.c.sender_type == sender_type,
                messages.c.sender_id == sender_id,
                messages.c.echo_id == echo_id,
            )
        )
    )
    if row is None:
        return None
    display_id = row.pop("conversation_display_id")
    return row, display_id


# RETURNING only the id: the rest of the row is what was just written (see `create`).
_INSERT = Prepared(
    insert(messages)
    .values({c.name: bindparam(f"v_{c.name}", type_=c.type) for c in messages.c if c.name != "id"})
    .returning(messages.c.id)
)

# PostgreSQL: the message (its id drawn by the conversation's bump) and its event in one
# statement, one round trip, unless the flood check refuses it (then nothing is written and
# the statement returns no row). The check reads a snapshot taken after the bump's row lock
# was granted, so it counts every message committed before this one.
_nth_newest = (
    select(messages.c.created_at)
    .where(messages.c.conversation_id == bindparam("flood_conversation_id"))
    .order_by(messages.c.id.desc())
    .limit(1)
    .offset(bindparam("flood_skip"))
    .subquery("nth_newest")
)
_flooded = (
    select(literal_column("1"))
    .select_from(_nth_newest)
    .where(_nth_newest.c.created_at > bindparam("flood_since", type_=Float))
    .exists()
)
_written = (
    insert(messages)
    .from_select(
        [c.name for c in messages.c],
        select(*(bindparam(f"v_{c.name}", type_=c.type) for c in messages.c)).where(~_flooded),
    )
    .returning(messages.c.id)
    .cte("written")
)
_INSERT_WITH_EVENT = Prepared(outbox.notify_inserted(outbox.insert_for_each(_written).cte("event")))


# PostgreSQL, create_if_unchanged: bump the conversation if its row is the version read and
# the flood check passes, then the message and its event, all in one statement.
_bumped_if_unchanged = (
    update(conversations)
    .where(
        conversations.c.id == bindparam("conv_id"),
        conversations_store.row_version() == bindparam("row_version"),
        ~_flooded,
    )
    .values(conversations_store.BUMP_VALUES)
    .returning(conversations.c.id)
    .cte("bumped")
)
_written_if_unchanged = (
    insert(messages)
    .from_select(
        [c.name for c in messages.c],
        select(*(bindparam(f"v_{c.name}", type_=c.type) for c in messages.c)).select_from(
            _bumped_if_unchanged
        ),
    )
    .returning(messages.c.id)
    .cte("written")
)
_WRITE_IF_UNCHANGED = Prepared(
    outbox.notify_inserted(outbox.insert_for_each(_written_if_unchanged).cte("event"))
)


async def create(
    conn: AsyncConnection,
    conv: dict[str, Any],
    *,
    contact: dict[str, Any],
    contact_inbox: dict[str, Any],
    message_type: int,
    content: str | None,
    sender_type: str | None,
    sender_id: int | None,
    sender: dict[str, Any] | None,
    private: bool = False,
    content_type: str = "text",
    content_attributes: dict[str, Any] | None = None,
    echo_id: str | None = None,
    source_id: str | None = None,
    external_event_id: str | None = None,
    flood_limit: int | None = None,
    locked: dict[str, Any] | None = None,
    locked_at: float | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write one message and its `message.created` event. Returns (message, conversation);
    of `conv` only the id is read (the row is locked and read again here), and the returned
    conversation has conversations_store.MESSAGE_COLUMNS (all columns when it was reopened).

    An incoming message reopens a resolved or snoozed conversation (contract §2.4). More than
    `flood_limit` messages in the last minute are refused: the flood_limit-th newest message
    (at most flood_limit index entries read) must be older than 60 s.

    SQLite runs a statement each: bump (with the flood check), message, event. PostgreSQL,
    where each is a network round trip, runs two: the bump (which draws the message id),
    then the message and its event together, the flood check included.

    `locked`: a conversation the caller already locked and bumped for this message at
    `locked_at`, with its `next_message_id` (conversations_store.lock_latest_of_sender, which
    also finds the visitor: a PostgreSQL visitor message then takes one statement less)."""
    if locked is not None and locked_at is not None:
        now = locked_at
    else:
        now = time.time()
        locked, flood_at = await conversations_store.lock_for_message(
            conn,
            conv["id"],
            now=now,
            unread=unread_increment(message_type),
            flood_skip=flood_limit - 1 if flood_limit else None,
        )
        if flood_at is not None and flood_at > now - 60:
            raise FloodError(flood_limit)  # type: ignore[arg-type]
    message_id = locked.pop("next_message_id", None)  # PostgreSQL
    if message_type == events.INCOMING and locked["status"] in ("resolved", "snoozed"):
        locked = await conversations_store.set_status(
            conn, locked, "open", contact=contact, contact_inbox=contact_inbox
        )
    values = _values(
        locked,
        message_type=message_type,
        content_type=content_type,
        content=content,
        private=private,
        sender_type=sender_type,
        sender_id=sender_id,
        source_id=source_id,
        echo_id=echo_id,
        external_event_id=external_event_id,
        content_attributes=content_attributes,
        now=now,
    )
    inserted_id = None
    if message_id is None:  # SQLite: the id comes from the insert
        inserted = await _INSERT.one(conn, {f"v_{k}": v for k, v in values.items()})
        assert inserted is not None
        message_id = inserted_id = inserted["id"]
    # The row as a read would return it (every column is in `values`; JSON and floats read
    # back equal), without decoding what was just encoded.
    msg = {"id": message_id, **values}
    data = events.message_push(msg, locked, contact_inbox["source_id"], sender)
    channels = events.message_channels(locked, contact_inbox["pubsub_token"], msg)
    if message_id == inserted_id:
        await outbox.add(conn, events.MESSAGE_CREATED, data, channels, conversation_id=locked["id"])
    else:
        await _insert_with_event(conn, msg, data, channels, flood_limit=flood_limit, now=now)
    return msg, locked


def _values(
    conv: dict[str, Any],
    *,
    message_type: int,
    content_type: str,
    content: str | None,
    private: bool,
    sender_type: str | None,
    sender_id: int | None,
    source_id: str | None,
    echo_id: str | None,
    external_event_id: str | None,
    content_attributes: dict[str, Any] | None,
    now: float,
) -> dict[str, Any]:
    """A new message's columns, all but its id."""
    return {
        "account_id": conv["account_id"],
        "inbox_id": conv["inbox_id"],
        "conversation_id": conv["id"],
        "message_type": message_type,
        "content_type": content_type,
        "content": content,
        "private": private,
        "status": "sent",
        "sender_type": sender_type,
        "sender_id": sender_id,
        "source_id": source_id,
        "echo_id": echo_id,
        "external_event_id": external_event_id,
        "content_attributes": content_attributes or {},
        "additional_attributes": {},
        "created_at": now,
        "updated_at": now,
    }


async def create_if_unchanged(
    conn: AsyncConnection,
    conv: dict[str, Any],
    *,
    contact_inbox: dict[str, Any],
    message_type: int,
    content: str | None,
    sender_type: str,
    sender_id: int,
    sender: dict[str, Any] | None,
    content_attributes: dict[str, Any] | None = None,
    echo_id: str | None = None,
    flood_limit: int | None = None,
    now: float,
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """PostgreSQL, outside a transaction: `create` as one statement, which commits on its
    own (no BEGIN and COMMIT round trips). `conv` is the conversation as read, unlocked, by
    conversations.visitor_snapshot, with its `row_version` and a `next_message_id`.

    The statement bumps the conversation only if its row is still that version, and writes
    the message and its event only if it did, so the event built here from what was read
    is what the conversation is at commit (its unread count included), and the message's
    id was drawn after every earlier message of the conversation was committed (each one
    changes the row): ids still increase in commit order. The flood check, read in the same
    statement, then sees every earlier message too.

    None, with nothing written, when the row changed since it was read, when the flood
    check refuses, or when the message would reopen the conversation: the caller then takes
    `create` in a transaction, which also reports the flood error."""
    if message_type == events.INCOMING and conv["status"] in ("resolved", "snoozed"):
        return None
    unread = unread_increment(message_type)
    values = _values(
        conv,
        message_type=message_type,
        content_type="text",
        content=content,
        private=False,
        sender_type=sender_type,
        sender_id=sender_id,
        source_id=None,
        echo_id=echo_id,
        external_event_id=None,
        content_attributes=content_attributes,
        now=now,
    )
    msg = {"id": conv["next_message_id"], **values}
    bumped = {name: conv[name] for name in (c.name for c in conversations_store.MESSAGE_COLUMNS)}
    bumped["unread_count"] += unread
    bumped["last_activity_at"] = now
    data = events.message_push(msg, bumped, contact_inbox["source_id"], sender)
    channels = events.message_channels(bumped, contact_inbox["pubsub_token"], msg)
    params = {f"v_{k}": v for k, v in msg.items()}
    params.update(
        conv_id=conv["id"],
        row_version=conv["row_version"],
        now=now,
        unread=unread,
        flood_conversation_id=conv["id"],
        flood_skip=flood_limit - 1 if flood_limit else 0,
        flood_since=now - 60 if flood_limit else float("inf"),
    )
    params.update(
        outbox.event_params(
            conn, events.MESSAGE_CREATED, data, channels, conversation_id=conv["id"]
        )
    )
    if not await _WRITE_IF_UNCHANGED.run_autocommit(conn, params):
        return None
    conn.info[OUTBOX_DIRTY] = True
    return msg, bumped


def unread_increment(message_type: int) -> int:
    """What a new message adds to its conversation's unread_count."""
    return 1 if message_type == events.INCOMING else 0


async def _insert_with_event(
    conn: AsyncConnection,
    msg: dict[str, Any],
    data: dict[str, Any],
    channels: list[str],
    *,
    flood_limit: int | None,
    now: float,
) -> None:
    """PostgreSQL: the message and its message.created event, in one statement."""
    params = {f"v_{k}": v for k, v in msg.items()}
    params["flood_conversation_id"] = msg["conversation_id"]
    params["flood_skip"] = flood_limit - 1 if flood_limit else 0
    params["flood_since"] = now - 60 if flood_limit else float("inf")
    params.update(
        outbox.event_params(
            conn, events.MESSAGE_CREATED, data, channels, conversation_id=msg["conversation_id"]
        )
    )
    if not await _INSERT_WITH_EVENT.run(conn, params):
        raise FloodError(flood_limit)  # type: ignore[arg-type]
    conn.info[OUTBOX_DIRTY] = True


def _visitor_visible() -> Any:
    return and_(messages.c.private.is_(False), messages.c.message_type != events.ACTIVITY)


async def page(
    conn: AsyncConnection,
    conversation_id: int,
    *,
    before: int | None,
    after: int | None,
    visitor: bool,
) -> list[dict[str, Any]]:
    """Contract §2.3 paging, ascending: newest 20; 20 before `before`; up to 100 after
    `after`; both: the range [after, before), up to 1000."""
    query = select(messages).where(messages.c.conversation_id == conversation_id)
    if visitor:
        query = query.where(_visitor_visible())
    if before is not None and after is not None:
        query = query.where(messages.c.id >= after, messages.c.id < before)
        return all_rows(await conn.execute(query.order_by(messages.c.id).limit(RANGE_LIMIT)))
    if after is not None:
        query = query.where(messages.c.id > after)
        return all_rows(await conn.execute(query.order_by(messages.c.id).limit(WIDGET_AFTER_PAGE)))
    if before is not None:
        query = query.where(messages.c.id < before)
    rows = all_rows(await conn.execute(query.order_by(messages.c.id.desc()).limit(WIDGET_PAGE)))
    rows.reverse()
    return rows


async def senders(
    conn: AsyncConnection, rows: list[dict[str, Any]], contact: dict[str, Any]
) -> dict[tuple[str, int], dict[str, Any]]:
    """Push data of every sender of `rows`, in one query for the agents."""
    user_ids = {r["sender_id"] for r in rows if r["sender_type"] == "User" and r["sender_id"]}
    users = await conversations_store.users_by_id(conn, user_ids)
    out: dict[tuple[str, int], dict[str, Any]] = {
        ("User", uid): events.user_push(user) for uid, user in users.items()
    }
    out[("Contact", contact["id"])] = events.contact_push(contact)
    return out


def sender_of(msg: dict[str, Any], pushes: dict[tuple[str, int], dict[str, Any]]) -> Any:
    if msg["sender_type"] and msg["sender_id"]:
        return pushes.get((msg["sender_type"], msg["sender_id"]))
    return None


async def mark_read(
    conn: AsyncConnection,
    conv: dict[str, Any],
    *,
    contact: dict[str, Any],
    contact_inbox: dict[str, Any],
    limit: int = 100,
) -> int:
    """The visitor has seen the conversation: agent messages still `sent`/`delivered` become
    `read`, each with a `message.updated` carrying previous_changes. Returns how many."""
    rows = all_rows(
        await conn.execute(
            select(messages)
            .where(
                messages.c.conversation_id == conv["id"],
                messages.c.message_type != events.INCOMING,
                messages.c.private.is_(False),
                messages.c.status.in_(("sent", "delivered")),
            )
            .order_by(messages.c.id.desc())
            .limit(limit)
        )
    )
    if not rows:
        return 0
    now = time.time()
    await conn.execute(
        update(messages)
        .where(messages.c.id.in_([r["id"] for r in rows]))
        .values(status="read", updated_at=now)
    )
    pushes = await senders(conn, rows, contact)
    for row in reversed(rows):
        old_status, old_updated = row["status"], events.iso(row["updated_at"])
        row.update(status="read", updated_at=now)
        data = events.message_push(row, conv, contact_inbox["source_id"], sender_of(row, pushes))
        data["previous_changes"] = {
            "status": [old_status, "read"],
            "updated_at": [old_updated, events.iso(now)],
        }
        await outbox.add(
            conn,
            events.MESSAGE_UPDATED,
            data,
            events.message_channels(conv, contact_inbox["pubsub_token"], row),
            conversation_id=conv["id"],
        )
    return len(rows)
