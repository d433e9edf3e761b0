"""A retried message is written once (issue 14, §5): the widget sends an `echo_id` with every
message and retries a POST whose answer it did not get; an agent console does the same. The
database holds the rule (a unique index on the sender and echo_id), so concurrent retries
make one message and one `message.created` event, on both databases."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from server.services import SERVICES
from server.store.tables import messages, outbox
from tests.conftest import Visitor, World

API = "/api/v1"


async def post_message(visitor: Visitor, content: str, echo_id: str | None) -> Any:
    body: dict[str, Any] = {"content": content}
    if echo_id is not None:
        body["echo_id"] = echo_id
    return await visitor.post("messages", {"message": body})


async def stored(client: TestClient, echo_id: str) -> tuple[int, int]:
    """(messages, message.created events) carrying `echo_id`."""

    async def op(conn: Any) -> tuple[int, int]:
        n_messages = (
            await conn.execute(
                select(func.count()).select_from(messages).where(messages.c.echo_id == echo_id)
            )
        ).scalar()
        payloads = await conn.execute(
            select(outbox.c.payload).where(outbox.c.event == "message.created")
        )
        n_events = sum(1 for (payload,) in payloads if echo_id in str(payload))
        return n_messages, n_events

    return await client.app[SERVICES].db.read(op)


async def test_retried_widget_message_is_written_once(client: TestClient, visitor: Visitor) -> None:
    first = await post_message(visitor, "hello", "echo-1")
    assert first.status == 200, await first.text()
    original = await first.json()
    again = await post_message(visitor, "hello", "echo-1")
    assert again.status == 200, await again.text()
    assert await again.json() == original
    assert await stored(client, "echo-1") == (1, 1)
    # A new echo_id is a new message; none at all is never deduplicated.
    other = await post_message(visitor, "hello", "echo-2")
    assert (await other.json())["id"] != original["id"]
    plain = [await post_message(visitor, "same", None) for _ in range(2)]
    assert len({(await r.json())["id"] for r in plain}) == 2


async def test_concurrent_retries_make_one_message(client: TestClient, visitor: Visitor) -> None:
    await visitor.send("opens the conversation")
    answers = await asyncio.gather(*(post_message(visitor, "burst", "echo-c") for _ in range(8)))
    assert [r.status for r in answers] == [200] * 8
    ids = {(await r.json())["id"] for r in answers}
    assert len(ids) == 1
    assert await stored(client, "echo-c") == (1, 1)


async def test_first_message_retried_concurrently(client: TestClient, visitor: Visitor) -> None:
    """The first message also opens the conversation: its retries must not open two."""
    answers = await asyncio.gather(*(post_message(visitor, "first", "echo-f") for _ in range(4)))
    assert [r.status for r in answers] == [200] * 4
    assert len({(await r.json())["id"] for r in answers}) == 1
    assert await stored(client, "echo-f") == (1, 1)


async def test_echo_id_is_per_contact(client: TestClient, world: World) -> None:
    one = await Visitor(client, world.inbox["website_token"]).start()
    two = await Visitor(client, world.inbox["website_token"]).start()
    a = await post_message(one, "from one", "shared")
    b = await post_message(two, "from two", "shared")
    assert a.status == b.status == 200
    assert (await a.json())["id"] != (await b.json())["id"]
    assert (await b.json())["content"] == "from two"
    assert await stored(client, "shared") == (2, 2)


async def test_retried_agent_reply_is_written_once(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    sent = await visitor.send("help")
    display_id = sent["conversation_id"]
    url = f"{API}/accounts/{world.account['id']}/conversations/{display_id}/messages"

    async def reply(user: dict[str, Any], echo_id: str) -> Any:
        return await client.post(
            url,
            json={"content": "on it", "echo_id": echo_id},
            headers={"api_access_token": user["access_token"]},
        )

    first = await reply(world.agent, "agent-echo")
    assert first.status == 200, await first.text()
    original = await first.json()
    retries = await asyncio.gather(*(reply(world.agent, "agent-echo") for _ in range(4)))
    assert [r.status for r in retries] == [200] * 4
    for r in retries:
        assert await r.json() == original
    assert await stored(client, "agent-echo") == (1, 1)
    # Another agent's echo_id is their own; the visitor's too.
    other = await reply(world.admin, "agent-echo")
    assert other.status == 200
    assert (await other.json())["id"] != original["id"]
    mine = await post_message(visitor, "mine", "agent-echo")
    assert mine.status == 200
    assert await stored(client, "agent-echo") == (3, 3)


async def test_retried_conversation_create_is_written_once(
    client: TestClient, visitor: Visitor
) -> None:
    """POST /conversations carries the first message: its retry answers the conversation the
    first try made (schemathesis found it a 500: the echo index refused the second write)."""
    body = {"message": {"content": "open please", "echo_id": "conv-echo"}}
    first = await visitor.post("conversations", body)
    assert first.status == 200, await first.text()
    again = await visitor.post("conversations", body)
    assert again.status == 200, await again.text()
    assert await again.json() == await first.json()
    assert await stored(client, "conv-echo") == (1, 1)
    # The same echo_id in a message afterwards is the same retry: the original message.
    resent = await post_message(visitor, "open please", "conv-echo")
    assert (await resent.json())["id"] == (await first.json())["messages"][0]["id"]
