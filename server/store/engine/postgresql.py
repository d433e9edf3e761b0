"""PostgreSQL's writes: each write is its own transaction on one of DB_WRITERS connections,
several at once, and every statement is a network round trip, so the paths are built to
send few. The conversation's row lock orders a conversation's writes: message ids are drawn
(`nextval`) by the statement that bumps the row, so they increase in commit order, and the
flood check reads the messages in a statement that runs after the lock was granted (a
subquery in the locking statement's RETURNING would read the snapshot taken before it).

A message in a transaction: the bump (drawing the id), then the row and its event (with the
flood check) in one statement. A visitor's message, the busiest write, is first tried without
a transaction: two statements that each commit on their own (`visitor_message`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, bindparam, func, insert, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection

from server import events
from server.store import attachments as attachments_store
from server.store import contacts as contacts_store
from server.store import conversation_writes, outbox
from server.store.db import OUTBOX_DIRTY, Database
from server.store.inputs import SentMessage, Visitor, VisitorMessage
from server.store.message_writes import (
    Writing,
    bind,
    created_event,
    message_row,
    reopen,
    reopens,
)
from server.store.prepared import Prepared
from server.store.rules import (
    BUMPED_COLUMNS,
    Flood,
    bump,
    bumped,
    flooded,
    latest_conversation_id,
    prefixed,
    take_prefixed,
    unread_increment,
)
from server.store.tables import contact_inboxes, contacts, conversations, messages

# The message's id, drawn by the statement that bumps (or checks) its conversation's row.
_MESSAGE_ID = func.nextval(literal_column("'messages_id_seq'")).label("message_id")
# The visitor, beside their conversation in one row.
_VISITOR_COLUMNS = (*prefixed(contacts, "c_"), *contacts_store.CI_COLUMNS)


def _row_version() -> Any:
    """A conversation row's version: its xmin, new with every update of the row."""
    return literal_column("conversations.xmin::text")


def _visitor(row: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(contact, contact_inbox), taken out of a row with _VISITOR_COLUMNS."""
    contact = take_prefixed(row, contacts, "c_")
    return contact, take_prefixed(row, contact_inboxes, contacts_store.CI_PREFIX)


def _values_from(*where: Any) -> Any:
    """A message's v_* parameters as a SELECT (its id included), for INSERT ... SELECT."""
    return select(*(bindparam(f"v_{c.name}", type_=c.type) for c in messages.c)).where(*where)


def _insert_message_with_event(values: Any) -> Prepared:
    """The message (`values`, no row when it selects none), its outbox row and notification,
    in one statement."""
    written = (
        insert(messages)
        .from_select([c.name for c in messages.c], values)
        .returning(messages.c.id)
        .cte("written")
    )
    return Prepared(outbox.notify_inserted(outbox.insert_for_each(written).cte("event")))


# -- statements ----------------------------------------------------------------------------------

# The bump, drawing the message's id.
_BUMP = Prepared(
    bump(conversations.c.id == bindparam("conv_id")).returning(*BUMPED_COLUMNS, _MESSAGE_ID)
)
# The message and its event, unless the flood check refuses it (then nothing is written and
# the statement returns no row). Run after the bump: its snapshot counts every message
# committed before this one.
_INSERT_WITH_EVENT = _insert_message_with_event(_values_from(~flooded()))
# A visitor's message in a transaction: who the visitor is (by inbox and source_id) and the
# bump of their current conversation, in one statement. Their contact_inbox's id is an
# uncorrelated subquery (run once, ahead of the update), so the plan is index lookups
# whatever the statistics say.
_SENDER = contact_inboxes.alias("sender")
_BUMP_CURRENT_OF_VISITOR = Prepared(
    bump(
        conversations.c.id
        == latest_conversation_id(
            select(_SENDER.c.id)
            .where(
                _SENDER.c.inbox_id == bindparam("inbox_id"),
                _SENDER.c.source_id == bindparam("source_id"),
            )
            .scalar_subquery()
        ),
        contact_inboxes.c.id == conversations.c.contact_inbox_id,
        contacts.c.id == contact_inboxes.c.contact_id,
    ).returning(*BUMPED_COLUMNS, _MESSAGE_ID, *_VISITOR_COLUMNS)
)
# A visitor's message without a transaction, 1 of 2: the visitor, their current
# conversation as it is now with its row version, and an id for the message. Nothing locked.
_SNAPSHOT = Prepared(
    select(*BUMPED_COLUMNS, _row_version().label("row_version"), _MESSAGE_ID, *_VISITOR_COLUMNS)
    .select_from(contact_inboxes)
    .join(contacts, contacts.c.id == contact_inboxes.c.contact_id)
    .join(conversations, conversations.c.id == latest_conversation_id(contact_inboxes.c.id))
    .where(
        contact_inboxes.c.inbox_id == bindparam("inbox_id"),
        contact_inboxes.c.source_id == bindparam("source_id"),
    )
)
# 2 of 2: the bump if the row is still the version read and the flood check passes, then the
# message and its event, all in one statement.
_WRITE_IF_UNCHANGED = _insert_message_with_event(
    _values_from().select_from(
        bump(
            conversations.c.id == bindparam("conv_id"),
            _row_version() == bindparam("row_version"),
            ~flooded(),
        )
        .returning(conversations.c.id)
        .cte("bumped")
    )
)

# Ids for a message's attachments, drawn before the message's statement: its event (written
# by that statement) shows them, and the rows follow it (their foreign key needs the message).
_ATTACHMENT_IDS = select(
    func.nextval(literal_column("'attachments_id_seq'")).label("id")
).select_from(func.generate_series(1, bindparam("n", type_=Integer)))

_SEED_LOCK = 0x636861745F736564


@dataclass(slots=True)
class Snapshot:
    """A visitor and their current conversation as read without a transaction (nothing
    locked): the conversation (BUMPED_COLUMNS) with its row version, and an id drawn for the
    message."""

    contact: dict[str, Any]
    contact_inbox: dict[str, Any]
    conversation: dict[str, Any]
    row_version: str
    message_id: int


async def read_snapshot(conn: AsyncConnection, inbox_id: int, source_id: str) -> Snapshot | None:
    """Outside a transaction. None when the visitor is unknown or has no conversation yet."""
    row = await _SNAPSHOT.one_autocommit(conn, {"inbox_id": inbox_id, "source_id": source_id})
    if row is None:
        return None
    version, message_id = row.pop("row_version"), row.pop("message_id")
    contact, contact_inbox = _visitor(row)
    return Snapshot(contact, contact_inbox, row, version, message_id)


async def write_if_unchanged(
    conn: AsyncConnection, s: Snapshot, m: VisitorMessage
) -> SentMessage | None:
    """Outside a transaction, one statement that commits on its own: the bump of the
    conversation only if its row is still the version `s` read, and the message and its event
    only if it did. So the event built here from what was read is what the conversation is at
    commit (its unread count included), and the message's id was drawn after every earlier
    message of the conversation committed (each one changes the row): ids still increase in
    commit order. The flood check, in the same statement, sees every earlier message too.

    None, with nothing written, when the row changed since it was read, when the flood check
    refuses, or when the message would reopen the conversation (all the transaction's)."""
    w = Writing(
        m.message(s.contact["id"]), s.contact, s.contact_inbox, Flood(m.flood_limit), time.time()
    )
    if reopens(w.new, s.conversation):
        return None
    conv = bumped(s.conversation, w.new.message_type, w.now)
    msg = message_row(conv, w.new, w.now, s.message_id)
    data, channels = created_event(msg, conv, w)
    params = bind(msg)
    params.update(conv_id=conv["id"], row_version=s.row_version, now=w.now, unread=w.unread)
    params.update(w.flood.params(conv["id"], w.now))
    params.update(
        outbox.event_params(
            conn, events.MESSAGE_CREATED, data, channels, conversation_id=conv["id"]
        )
    )
    if not await _WRITE_IF_UNCHANGED.run_autocommit(conn, params):
        return None
    conn.info[OUTBOX_DIRTY] = True
    return SentMessage(msg, conv["display_id"], w.sender)


class PostgreSQL:
    name = "postgresql"
    relay_listens = True

    async def visitor_message(self, db: Database, m: VisitorMessage) -> SentMessage | None:
        """First without a transaction: two statements, each committing on its own (no BEGIN
        and COMMIT round trips), `read_snapshot` and `write_if_unchanged`; when that wrote
        nothing, in a transaction (`_in_transaction`)."""
        if m.attachments:  # rows in two tables: a transaction
            return await db.write(self._in_transaction, m, True)
        tried = await db.write_autocommit(self._unlocked, m)
        if isinstance(tried, SentMessage):
            return tried
        return await db.write(self._in_transaction, m, tried)

    async def _unlocked(self, conn: AsyncConnection, m: VisitorMessage) -> SentMessage | bool:
        """`read_snapshot`, then `write_if_unchanged`. When nothing was written: whether the
        visitor has a conversation (False: unknown, or none yet: no bump can find one)."""
        snapshot = await read_snapshot(conn, m.inbox["id"], m.source_id)
        if snapshot is None:
            return False
        return await write_if_unchanged(conn, snapshot, m) or True

    async def _in_transaction(
        self, conn: AsyncConnection, m: VisitorMessage, has_conversation: bool
    ) -> SentMessage | None:
        """Who the visitor is and the bump of their conversation in one statement, when they
        have one; otherwise (and should that miss) the visitor with their current
        conversation's id, and their first message opens one."""
        now = time.time()
        flood = Flood(m.flood_limit)
        where = {"inbox_id": m.inbox["id"], "source_id": m.source_id}
        if has_conversation:
            unread = unread_increment(events.INCOMING)
            row = await _BUMP_CURRENT_OF_VISITOR.one(conn, {**where, "now": now, "unread": unread})
            if row is not None:
                message_id = row.pop("message_id")
                contact, contact_inbox = _visitor(row)
                w = Writing(m.message(contact["id"]), contact, contact_inbox, flood, now)
                msg, conv = await self._write_bumped(conn, row, message_id, w)
                return SentMessage(msg, conv["display_id"], w.sender, tuple(w.attachment_rows))
        found = await contacts_store.find_sender(conn, m.inbox["id"], m.source_id)
        if found is None:
            return None
        contact, contact_inbox, current_id = found
        if current_id is None:
            opened, _ = await conversation_writes.open_unless_current(
                conn, Visitor(m.inbox, contact, contact_inbox), additional=m.opens_with
            )
            current_id = opened["id"]
        w = Writing(m.message(contact["id"]), contact, contact_inbox, flood, now)
        msg, conv = await self.write_message(conn, current_id, w)
        return SentMessage(msg, conv["display_id"], w.sender, tuple(w.attachment_rows))

    async def write_message(
        self, conn: AsyncConnection, conversation_id: int, w: Writing
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The bump (drawing the id), reopen if incoming, the row and its event."""
        row = await _BUMP.one(conn, {"conv_id": conversation_id, "now": w.now, "unread": w.unread})
        assert row is not None, f"conversation {conversation_id} vanished"
        message_id = row.pop("message_id")
        return await self._write_bumped(conn, row, message_id, w)

    async def _write_bumped(
        self, conn: AsyncConnection, conv: dict[str, Any], message_id: int, w: Writing
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if reopens(w.new, conv):
            conv = await reopen(conn, conv, w)
        msg = message_row(conv, w.new, w.now, message_id)
        if w.new.attachments:
            drawn = await conn.execute(_ATTACHMENT_IDS, {"n": len(w.new.attachments)})
            ids = [r[0] for r in drawn]
            w.attachment_rows = [
                attachments_store.row(msg, a, i)
                for a, i in zip(w.new.attachments, ids, strict=True)
            ]
        data, channels = created_event(msg, conv, w)
        params = bind(msg)
        params.update(w.flood.params(conv["id"], w.now))
        params.update(
            outbox.event_params(
                conn, events.MESSAGE_CREATED, data, channels, conversation_id=conv["id"]
            )
        )
        if not await _INSERT_WITH_EVENT.run(conn, params):
            raise w.flood.error()
        await attachments_store.insert_rows(conn, w.attachment_rows)
        conn.info[OUTBOX_DIRTY] = True
        return msg, conv

    def wake_relay_after_commits(self, db: Database, wake: Callable[[], None]) -> None:
        """Nothing to wire: each outbox insert NOTIFYs, and the relay LISTENs
        (workers/listener.py), in whichever process it runs."""

    async def serialize_seeding(self, conn: AsyncConnection) -> None:
        await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SEED_LOCK})")


ENGINE = PostgreSQL()
