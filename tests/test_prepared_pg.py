"""`Prepared` statements on both engines: they run at the driver level (no SQLAlchemy cursor
execution) inside the caller's transaction, so a write that fails after them leaves nothing
behind, and they return exactly the dicts `conn.execute` returns."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import bindparam, event, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from server.store.db import Database, is_unique_violation
from server.store.prepared import Prepared
from server.store.tables import conversations, messages, outbox
from tests.conftest import Visitor, World

_MESSAGES = Prepared(
    select(messages)
    .where(messages.c.conversation_id == bindparam("conv_id"))
    .order_by(messages.c.id)
)
_CONVERSATION = Prepared(select(conversations).where(conversations.c.id == bindparam("conv_id")))
_INSERT_MESSAGE = Prepared(
    insert(messages)
    .values({c.name: bindparam(f"v_{c.name}", type_=c.type) for c in messages.c if c.name != "id"})
    .returning(*messages.c)
)
_INSERT_OUTBOX = Prepared(
    insert(outbox).values(
        conversation_id=bindparam("conv_id"),
        channels=bindparam("channels", type_=outbox.c.channels.type),
        event=bindparam("event"),
        payload=bindparam("payload"),
        created_at=bindparam("now", type_=outbox.c.created_at.type),
    )
)
_TOUCH = Prepared(
    update(conversations)
    .where(conversations.c.id == bindparam("conv_id"))
    .values(updated_at=bindparam("now"))
)


class CursorCount:
    """Statements (other than BEGIN) SQLAlchemy itself sent through a cursor, per connection
    (the app's relay and hub run their own statements meanwhile)."""

    def __init__(self, db: Database) -> None:
        self.seen: list[tuple[Any, str]] = []
        for engine in {db.writer, db.reader}:
            event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if not statement.lstrip().upper().startswith("BEGIN"):  # SQLite's listener's BEGIN
            self.seen.append((conn, statement))

    def on(self, conn: Any) -> int:
        return sum(1 for seen, _ in self.seen if seen is conn.sync_connection)


async def _conversation_id(world: World, visitor: Visitor) -> int:
    await visitor.send("one")
    await visitor.send("two")

    async def op(conn: Any) -> int:
        return int(
            (
                await conn.execute(
                    select(func.max(messages.c.conversation_id)).where(
                        messages.c.sender_id == visitor.contact_id,
                        messages.c.sender_type == "Contact",
                    )
                )
            ).scalar_one()
        )

    return await world.db.read(op)


def _message_values(conv: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    now = time.time()
    values = {
        "account_id": conv["account_id"],
        "inbox_id": conv["inbox_id"],
        "conversation_id": conv["id"],
        "message_type": 0,
        "content_type": "text",
        "content": "prepared",
        "private": True,
        "status": "sent",
        "sender_type": None,
        "sender_id": None,
        "source_id": None,
        "echo_id": None,
        "external_event_id": None,
        "content_attributes": {"in_reply_to": None, "nested": [1, "x"]},
        "additional_attributes": {},
        "created_at": now,
        "updated_at": now,
    }
    values.update(overrides)
    return {f"v_{k}": v for k, v in values.items()}


async def _counts(db: Database) -> tuple[int, int]:
    async def op(conn: Any) -> tuple[int, int]:
        n_messages = (await conn.execute(select(func.count()).select_from(messages))).scalar_one()
        n_outbox = (await conn.execute(select(func.count()).select_from(outbox))).scalar_one()
        return int(n_messages), int(n_outbox)

    return await db.read(op)


async def test_rows_match_conn_execute_without_sqlalchemy_execution(
    world: World, visitor: Visitor
) -> None:
    conv_id = await _conversation_id(world, visitor)
    cursors = CursorCount(world.db)

    async def read(conn: Any) -> tuple[Any, ...]:
        before = cursors.on(conn)
        fast_all = await _MESSAGES.all(conn, {"conv_id": conv_id})
        fast_one = await _CONVERSATION.one(conn, {"conv_id": conv_id})
        missing = await _CONVERSATION.one(conn, {"conv_id": -1})
        fast_cursors = cursors.on(conn) - before
        slow_all = [
            dict(r._mapping) for r in await conn.execute(_MESSAGES.stmt, {"conv_id": conv_id})
        ]
        slow_one = dict(
            (await conn.execute(_CONVERSATION.stmt, {"conv_id": conv_id})).one()._mapping
        )
        return fast_all, fast_one, missing, fast_cursors, slow_all, slow_one

    fast_all, fast_one, missing, fast_cursors, slow_all, slow_one = await world.db.read(read)
    assert fast_cursors == 0  # the driver-level path ran, not conn.execute
    assert len(fast_all) >= 2
    assert fast_all == slow_all
    assert [{k: type(v) for k, v in r.items()} for r in fast_all] == [
        {k: type(v) for k, v in r.items()} for r in slow_all
    ]
    assert fast_one == slow_one and missing is None
    assert fast_all[0]["private"] is False
    assert isinstance(fast_all[0]["created_at"], float)
    assert isinstance(fast_one["additional_attributes"], dict)

    async def write(conn: Any) -> tuple[Any, ...]:
        conv = await _CONVERSATION.one(conn, {"conv_id": conv_id})
        assert conv is not None
        before = cursors.on(conn)
        inserted = await _INSERT_MESSAGE.one(conn, _message_values(conv))
        touched = await _TOUCH.run(conn, {"conv_id": conv_id, "now": time.time()})
        fast_cursors = cursors.on(conn) - before
        assert inserted is not None
        stored = dict(
            (await conn.execute(select(messages).where(messages.c.id == inserted["id"])))
            .one()
            ._mapping
        )
        return inserted, touched, fast_cursors, stored

    inserted, touched, fast_cursors, stored = await world.db.write(write)
    assert fast_cursors == 0
    assert inserted == stored
    assert inserted["private"] is True
    assert inserted["content_attributes"] == {"in_reply_to": None, "nested": [1, "x"]}
    assert touched == 1


async def test_outside_a_transaction_falls_back_to_conn_execute(
    world: World, visitor: Visitor
) -> None:
    conv_id = await _conversation_id(world, visitor)
    cursors = CursorCount(world.db)
    async with world.db.reader.connect() as conn:
        assert not conn.in_transaction()
        before = cursors.on(conn)
        row = await _CONVERSATION.one(conn, {"conv_id": conv_id})
        assert cursors.on(conn) - before == 1
        await conn.rollback()
    assert row is not None and row["id"] == conv_id


async def test_write_that_raises_after_prepared_writes_leaves_nothing(
    world: World, visitor: Visitor
) -> None:
    conv_id = await _conversation_id(world, visitor)
    before = await _counts(world.db)

    async def failing(conn: Any) -> None:
        # The very first statement of the transaction is a Prepared one: on PostgreSQL it
        # must not run before (outside) the transaction SQLAlchemy began.
        await _INSERT_OUTBOX.run(
            conn, {"conv_id": conv_id, "channels": ["x"], "event": "e", "payload": "{}", "now": 1.0}
        )
        conv = await _CONVERSATION.one(conn, {"conv_id": conv_id})
        assert conv is not None
        assert await _INSERT_MESSAGE.one(conn, _message_values(conv)) is not None
        raise RuntimeError("the op fails after its writes")

    with pytest.raises(RuntimeError, match="after its writes"):
        await world.db.write(failing)
    assert await _counts(world.db) == before


async def test_driver_error_is_sqlalchemys_and_rolls_back(world: World, visitor: Visitor) -> None:
    conv_id = await _conversation_id(world, visitor)

    async def seed(conn: Any) -> None:
        conv = await _CONVERSATION.one(conn, {"conv_id": conv_id})
        assert conv is not None
        await _INSERT_MESSAGE.one(conn, _message_values(conv, external_event_id="evt-1"))

    await world.db.write(seed)
    before = await _counts(world.db)

    async def duplicate(conn: Any) -> None:
        await _INSERT_OUTBOX.run(
            conn, {"conv_id": conv_id, "channels": [], "event": "e", "payload": "{}", "now": 1.0}
        )
        conv = await _CONVERSATION.one(conn, {"conv_id": conv_id})
        assert conv is not None
        await _INSERT_MESSAGE.one(conn, _message_values(conv, external_event_id="evt-1"))

    with pytest.raises(IntegrityError) as caught:
        await world.db.write(duplicate)
    assert is_unique_violation(caught.value)
    assert await _counts(world.db) == before

    async def fresh(conn: Any, n: int) -> None:
        conv = await _CONVERSATION.one(conn, {"conv_id": conv_id})
        assert conv is not None
        await _INSERT_MESSAGE.one(conn, _message_values(conv, external_event_id=f"new-{n}"))

    # The connection that failed is good for the next writes.
    for n in range(3):
        await world.db.write(fresh, n)
    assert await _counts(world.db) == (before[0] + 3, before[1])
