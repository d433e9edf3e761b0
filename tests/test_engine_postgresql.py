"""PostgreSQL's own paths (server/store/engine/postgresql.py). A visitor's message is first
written without a transaction: the visitor and their conversation are read unlocked
(`read_snapshot`), and one statement writes the message only if the conversation row is still
what was read (`write_if_unchanged`). These tests hold that to what the transactional path
promises: nothing written from a stale read, no reopening outside a transaction. (Exact
unread counts and commit order under concurrency, on both engines: test_widget_messages.)"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server.services import SERVICES
from server.store.engine import postgresql
from server.store.inputs import SentMessage, VisitorMessage
from server.store.tables import contact_inboxes, conversations, messages, outbox
from tests.conftest import Visitor, World


async def _conversation_of(conn: Any, display_id: int, account_id: int) -> dict[str, Any]:
    result = await conn.execute(
        select(conversations).where(
            conversations.c.display_id == display_id, conversations.c.account_id == account_id
        )
    )
    return dict(result.one()._mapping)


pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


async def test_a_message_read_before_its_conversation_changed_is_not_written(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    first = await visitor.send("first")
    db = client.app[SERVICES].db
    source_id = await db.read(_source_id_of, visitor.contact_id)

    stale = await db.write_autocommit(_snapshot, world.inbox["id"], source_id)
    assert stale is not None and stale.conversation["unread_count"] == 1
    # An agent's reply changes the conversation row after it was read.
    await _agent_post(client, world, first["conversation_id"], "messages", {"content": "hello"})

    assert await db.write_autocommit(_write, stale, "from a stale read") is None
    assert await db.read(_count, "from a stale read") == (0, 0)
    conv = await db.read(_conversation_of, first["conversation_id"], world.account["id"])
    assert conv["unread_count"] == 1

    fresh = await db.write_autocommit(_snapshot, world.inbox["id"], source_id)
    written = await db.write_autocommit(_write, fresh, "from a fresh read")
    assert written is not None
    msg = written.message
    assert msg["id"] == fresh.message_id > stale.message_id
    assert await db.read(_count, "from a fresh read") == (1, 1)
    conv = await db.read(_conversation_of, first["conversation_id"], world.account["id"])
    assert conv["unread_count"] == 2 and conv["last_activity_at"] == msg["created_at"]


async def test_a_resolved_conversation_is_left_to_the_transactional_path(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    first = await visitor.send("first")
    status = {"status": "resolved"}
    await _agent_post(client, world, first["conversation_id"], "toggle_status", status)
    db = client.app[SERVICES].db
    source_id = await db.read(_source_id_of, visitor.contact_id)

    found = await db.write_autocommit(_snapshot, world.inbox["id"], source_id)
    assert found is not None and found.conversation["status"] == "resolved"
    assert await db.write_autocommit(_write, found, "reopen?") is None
    assert await db.read(_count, "reopen?") == (0, 0)
    # Through HTTP the message reopens the conversation (the transactional path).
    await visitor.send("reopen!")
    conv = await db.read(_conversation_of, first["conversation_id"], world.account["id"])
    assert conv["status"] == "open"


async def _snapshot(conn: Any, inbox_id: int, source_id: str) -> postgresql.Snapshot | None:
    return await postgresql.read_snapshot(conn, inbox_id, source_id)


async def _write(conn: Any, found: postgresql.Snapshot, content: str) -> SentMessage | None:
    """write_if_unchanged, for a visitor as `_snapshot` read them."""
    inbox = {"id": found.contact_inbox["inbox_id"], "account_id": found.contact["account_id"]}
    m = VisitorMessage(inbox, found.contact_inbox["source_id"], content, None, None, {}, 200)
    return await postgresql.write_if_unchanged(conn, found, m)


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
