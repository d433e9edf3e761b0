"""A visitor's message on PostgreSQL is first written without a transaction: the visitor and
their conversation are read unlocked, and one statement writes the message only if the
conversation row is still what was read (messages.create_if_unchanged). These tests hold that
to what the transactional path promises: exact unread counts in every event, message ids in
commit order, nothing written from a stale read."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server import events
from server.services import SERVICES
from server.store import conversations as conversations_store
from server.store import messages as messages_store
from server.store.tables import contact_inboxes, conversations, messages, outbox
from tests.cable import CableClient, agent_identifier
from tests.conftest import Visitor, World

BURST = 30


async def test_concurrent_messages_of_one_visitor_keep_counts_and_order(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    first = await visitor.send("first")
    cable = await CableClient.connect(client)
    agent = world.agent
    await cable.subscribe(agent_identifier(agent["pubsub_token"], world.account["id"], agent["id"]))

    sent = await asyncio.gather(*(visitor.send(f"burst {i}") for i in range(BURST)))

    ids = [m["id"] for m in sent]
    assert len(set(ids)) == BURST and min(ids) > first["id"]
    created = await _created(cable, set(ids))
    assert sorted(d["id"] for d in created) == sorted(ids)
    # Published in commit order: ids increase, and each event's unread count is the one its
    # own commit left (the first message left 1).
    assert [d["id"] for d in created] == sorted(ids)
    assert [d["conversation"]["unread_count"] for d in created] == list(range(2, BURST + 2))

    db = client.app[SERVICES].db
    conv = await db.read(_conversation_of, first["conversation_id"], world.account["id"])
    assert conv["unread_count"] == BURST + 1
    listed = await visitor.client.get(
        visitor._url("messages", f"&after={first['id']}"), headers=visitor._headers()
    )
    assert [m["id"] for m in (await listed.json())["payload"]] == sorted(ids)
    await cable.close()


async def _created(cable: CableClient, ids: set[int]) -> list[dict[str, Any]]:
    """The message.created data of `ids`, in the order they arrived, once all have."""
    for _ in range(1000):
        created = [
            e["data"] for e in cable.events(events.MESSAGE_CREATED) if e["data"]["id"] in ids
        ]
        if len(created) >= len(ids):
            return created
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(created)} of {len(ids)} message.created events in 10 s")


async def _conversation_of(conn: Any, display_id: int, account_id: int) -> dict[str, Any]:
    result = await conn.execute(
        select(conversations).where(
            conversations.c.display_id == display_id, conversations.c.account_id == account_id
        )
    )
    return dict(result.one()._mapping)


# The path without a transaction is PostgreSQL's: SQLite writes every message in one.
on_postgresql = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@on_postgresql
async def test_a_message_read_before_its_conversation_changed_is_not_written(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    first = await visitor.send("first")
    db = client.app[SERVICES].db
    source_id = await db.read(_source_id_of, visitor.contact_id)

    stale = await db.write_autocommit(_snapshot, world.inbox["id"], source_id)
    assert stale is not None and stale[2]["unread_count"] == 1
    # An agent's reply changes the conversation row after it was read.
    await _agent_post(client, world, first["conversation_id"], "messages", {"content": "hello"})

    assert await db.write_autocommit(_write, stale, "from a stale read") is None
    assert await db.read(_count, "from a stale read") == (0, 0)
    conv = await db.read(_conversation_of, first["conversation_id"], world.account["id"])
    assert conv["unread_count"] == 1

    fresh = await db.write_autocommit(_snapshot, world.inbox["id"], source_id)
    written = await db.write_autocommit(_write, fresh, "from a fresh read")
    assert written is not None
    msg, bumped = written
    assert msg["id"] == fresh[2]["next_message_id"] > stale[2]["next_message_id"]
    assert bumped["unread_count"] == 2
    assert await db.read(_count, "from a fresh read") == (1, 1)
    conv = await db.read(_conversation_of, first["conversation_id"], world.account["id"])
    assert conv["unread_count"] == 2 and conv["last_activity_at"] == msg["created_at"]


@on_postgresql
async def test_a_resolved_conversation_is_left_to_the_transactional_path(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    first = await visitor.send("first")
    status = {"status": "resolved"}
    await _agent_post(client, world, first["conversation_id"], "toggle_status", status)
    db = client.app[SERVICES].db
    source_id = await db.read(_source_id_of, visitor.contact_id)

    found = await db.write_autocommit(_snapshot, world.inbox["id"], source_id)
    assert found is not None and found[2]["status"] == "resolved"
    assert await db.write_autocommit(_write, found, "reopen?") is None
    assert await db.read(_count, "reopen?") == (0, 0)
    # Through HTTP the message reopens the conversation (the transactional path).
    await visitor.send("reopen!")
    conv = await db.read(_conversation_of, first["conversation_id"], world.account["id"])
    assert conv["status"] == "open"


async def _snapshot(conn: Any, inbox_id: int, source_id: str) -> Any:
    return await conversations_store.visitor_snapshot(conn, inbox_id, source_id)


async def _write(conn: Any, found: Any, content: str) -> Any:
    """create_if_unchanged, for a visitor as `_snapshot` read them."""
    contact, contact_inbox, conv = found
    return await messages_store.create_if_unchanged(
        conn,
        conv,
        contact_inbox=contact_inbox,
        message_type=events.INCOMING,
        content=content,
        sender_type="Contact",
        sender_id=contact["id"],
        sender=events.contact_push(contact),
        flood_limit=200,
        now=time.time(),
    )


async def _agent_post(
    client: TestClient, world: World, display_id: int, action: str, body: Any
) -> None:
    url = f"/api/v1/accounts/{world.account['id']}/conversations/{display_id}/{action}"
    resp = await client.post(
        url, json=body, headers={"api_access_token": world.agent["access_token"]}
    )
    assert resp.status == 200, await resp.text()


async def _source_id_of(conn: Any, contact_id: int) -> str:
    result = await conn.execute(
        select(contact_inboxes.c.source_id).where(contact_inboxes.c.contact_id == contact_id)
    )
    return str(result.scalar_one())


async def _count(conn: Any, content: str) -> tuple[int, int]:
    """(messages, outbox events) holding `content`."""
    found = await conn.execute(select(messages.c.id).where(messages.c.content == content))
    rows = await conn.execute(select(outbox.c.payload))
    return len(found.all()), sum(1 for (payload,) in rows if content in payload)
