"""SQLite's writes: every write is one op of the group commit (server/store/db.py), on the
loop's thread, inside a batch that holds the database's only write lock from BEGIN IMMEDIATE
to COMMIT. A statement costs microseconds there, so the paths favour fewer, simpler
statements over fewer round trips: nothing another writer does can come between two of an
op's statements, and nothing needs a row lock.

A message: the bump (which also reads the flood check's answer), the row, its event."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server import events
from server.store import attachments as attachments_store
from server.store import contacts as contacts_store
from server.store import conversation_writes, outbox
from server.store.db import Database
from server.store.inputs import SentMessage, VisitorMessage
from server.store.message_writes import (
    COLUMNS,
    Writing,
    bind,
    created_event,
    message_row,
    reopen,
    reopens,
)
from server.store.prepared import Prepared
from server.store.rules import BUMPED_COLUMNS, Flood, bump, nth_newest_created_at
from server.store.tables import conversations, messages

# The bump, returning what the message needs of its conversation and the flood check's
# answer (Flood.refuses): the batch holds the write lock, so the subquery sees every
# committed message. Not correlated on conversations.id: RETURNING drops table names, so "id"
# in the subquery would be the message's.
_BUMP = Prepared(
    bump(conversations.c.id == bindparam("conv_id")).returning(
        *BUMPED_COLUMNS, nth_newest_created_at().label("flood_at")
    )
)
# RETURNING only the id: the rest of the row is what was just written.
_INSERT = Prepared(
    insert(messages)
    .values({name: bindparam(f"v_{name}", type_=messages.c[name].type) for name in COLUMNS})
    .returning(messages.c.id)
)


class SQLite:
    name = "sqlite"
    relay_listens = False

    async def visitor_message(self, db: Database, m: VisitorMessage) -> SentMessage | None:
        """The visitor, found by the write itself (one statement with their current
        conversation's id), then the message; their first message opens a conversation."""
        return await db.write(self._visitor_message, m)

    async def _visitor_message(
        self, conn: AsyncConnection, m: VisitorMessage
    ) -> SentMessage | None:
        found = await contacts_store.find_sender(conn, m.inbox["id"], m.source_id)
        if found is None:
            return None
        contact, contact_inbox, current_id = found
        if current_id is None:
            # None means none: no other write can open one before this op commits.
            opened = await conversation_writes.open_new(
                conn, m.inbox, contact, contact_inbox, additional=m.opens_with
            )
            current_id = opened["id"]
        w = Writing(
            m.message(contact["id"]), contact, contact_inbox, Flood(m.flood_limit), time.time()
        )
        msg, conv = await self.write_message(conn, current_id, w)
        return SentMessage(msg, conv["display_id"], w.sender, tuple(w.attachment_rows))

    async def write_message(
        self, conn: AsyncConnection, conversation_id: int, w: Writing
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Bump (with the flood check), reopen if incoming, the row, its event."""
        params = {"conv_id": conversation_id, "now": w.now, "unread": w.unread}
        row = await _BUMP.one(conn, {**params, **w.flood.params(conversation_id, w.now)})
        assert row is not None, f"conversation {conversation_id} vanished"
        if w.flood.refuses(row.pop("flood_at"), w.now):
            raise w.flood.error()
        conv = await reopen(conn, row, w) if reopens(w.new, row) else row
        values = message_row(conv, w.new, w.now)
        inserted = await _INSERT.one(conn, bind(values))
        assert inserted is not None
        msg = {"id": inserted["id"], **values}
        if w.new.attachments:
            w.attachment_rows = await attachments_store.insert_each(conn, msg, w.new.attachments)
        data, channels = created_event(msg, conv, w)
        await outbox.add(conn, events.MESSAGE_CREATED, data, channels, conversation_id=conv["id"])
        return msg, conv

    def wake_relay_after_commits(self, db: Database, wake: Callable[[], None]) -> None:
        """The relay runs in this process (one writer: one process) and is woken in process
        after each commit that wrote to the outbox."""
        db.on_commit.append(wake)

    async def serialize_seeding(self, conn: AsyncConnection) -> None:
        """Nothing to do: the write holds the database's only write lock."""


ENGINE = SQLite()
