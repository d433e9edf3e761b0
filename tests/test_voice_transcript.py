"""POST /api/v1/widget/conversations/voice_transcript over real HTTP, on both databases,
exactly as its spec page says (voice-transcript.txt), plus the event_id duplicate guard."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient

from server.services import SERVICES
from server.store import conversations as conversations_store
from tests.conftest import Visitor, World

PATH = "/api/v1/widget/conversations/voice_transcript"


async def turn(visitor: Visitor, body: Any) -> Any:
    return await visitor.post("conversations/voice_transcript", body)


async def conversation_row(client: TestClient, world: World, display_id: int) -> dict[str, Any]:
    row = await client.app[SERVICES].db.read(
        conversations_store.by_display_id, world.account["id"], display_id
    )
    assert row is not None
    return row


async def test_spec_page_example(client: TestClient, world: World, visitor: Visitor) -> None:
    """The example request of the spec page, as the widget sends it (plus its X-Auth-Token)."""
    resp = await client.post(
        f"{PATH}?website_token={world.inbox['website_token']}",
        data=b'{"source": "user", "content": "What are your business hours?"}',
        headers={"Content-Type": "application/json", "X-Auth-Token": visitor.auth_token or ""},
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    # The example response: exactly {"id": <int>, "conversation_id": <int>}.
    assert set(body) == {"id", "conversation_id"}
    assert type(body["id"]) is int and type(body["conversation_id"]) is int
    current = await (await visitor.get("conversations")).json()
    assert body["conversation_id"] == current["id"]  # the display id, as GET reports it

    # Voice-first: the conversation was opened for the call and tagged.
    row = await conversation_row(client, world, body["conversation_id"])
    assert row["additional_attributes"]["initiated_from"] == "voice_agent"
    page = await (await visitor.get("messages")).json()
    [msg] = page["payload"]
    assert msg["id"] == body["id"]
    assert msg["content"] == "What are your business hours?"
    assert msg["message_type"] == 0
    assert msg["content_attributes"] == {"voice_transcript": True, "role": "user"}
    assert msg["sender"]["id"] == visitor.contact_id
    assert msg["sender"]["type"] == "contact"


async def test_ai_turn_is_outgoing_without_sender(visitor: Visitor) -> None:
    user = await (await turn(visitor, {"source": "user", "content": "Hi"})).json()
    resp = await turn(visitor, {"source": "ai", "content": "We open at nine."})
    assert resp.status == 200
    ai = await resp.json()
    assert ai["conversation_id"] == user["conversation_id"]
    assert ai["id"] > user["id"]
    payload = (await (await visitor.get("messages")).json())["payload"]
    assert [m["id"] for m in payload] == [user["id"], ai["id"]]
    ai_msg = payload[1]
    assert ai_msg["message_type"] == 1
    assert "sender" not in ai_msg
    assert ai_msg["content_attributes"] == {"voice_transcript": True, "role": "ai"}


async def test_transcript_joins_an_open_text_conversation(visitor: Visitor, world: World) -> None:
    sent = await visitor.send("typed first")
    body = await (await turn(visitor, {"source": "user", "content": "then spoke"})).json()
    assert body["conversation_id"] == sent["conversation_id"]
    row = await conversation_row(visitor.client, world, body["conversation_id"])
    assert "initiated_from" not in row["additional_attributes"]


async def test_invalid_source(visitor: Visitor) -> None:
    for body in (
        {"source": "agent", "content": "x"},
        {"content": "x"},
        {"source": None, "content": "x"},
        {"source": "USER", "content": "x"},
        {"source": ["user"], "content": "x"},
    ):
        resp = await turn(visitor, body)
        assert resp.status == 400, body
        assert await resp.json() == {"error": "invalid source"}
    assert await (await visitor.get("conversations")).json() == {}


async def test_empty_content(visitor: Visitor) -> None:
    for body in (
        {"source": "user"},
        {"source": "user", "content": ""},
        {"source": "user", "content": "   "},
        {"source": "ai", "content": "\n\t"},
        {"source": "ai", "content": None},
    ):
        resp = await turn(visitor, body)
        assert resp.status == 400, body
        assert await resp.json() == {"error": "empty content"}
    assert await (await visitor.get("conversations")).json() == {}


async def test_same_event_id_is_one_message(visitor: Visitor) -> None:
    body = {"source": "user", "content": "hello", "event_id": "evt-1"}
    first = await (await turn(visitor, body)).json()
    again = await (await turn(visitor, body)).json()
    assert again["id"] == first["id"]
    assert again["conversation_id"] == first["conversation_id"]
    other = await (await turn(visitor, {**body, "event_id": "evt-2"})).json()
    assert other["id"] != first["id"]
    payload = (await (await visitor.get("messages")).json())["payload"]
    assert [m["id"] for m in payload] == [first["id"], other["id"]]


async def test_same_event_id_concurrently_is_one_message(visitor: Visitor) -> None:
    """The widget may retry a turn while the first try is still in flight."""
    await visitor.send("open the conversation first")
    body = {"source": "ai", "content": "racing", "event_id": "evt-race"}
    responses = await asyncio.gather(*(turn(visitor, body) for _ in range(6)))
    statuses = [r.status for r in responses]
    assert statuses == [200] * 6, [await r.text() for r in responses]
    results = [await r.json() for r in responses]
    assert len({r["id"] for r in results}) == 1
    payload = (await (await visitor.get("messages")).json())["payload"]
    assert [m["content"] for m in payload].count("racing") == 1


async def test_voice_first_after_a_resolved_chat_opens_a_new_conversation(
    visitor: Visitor, world: World
) -> None:
    sent = await visitor.send("old chat")
    assert (await visitor.get("conversations/toggle_status")).status == 200
    body = await (await turn(visitor, {"source": "user", "content": "calling"})).json()
    assert body["conversation_id"] != sent["conversation_id"]
    row = await conversation_row(visitor.client, world, body["conversation_id"])
    assert row["additional_attributes"]["initiated_from"] == "voice_agent"
    assert row["status"] == "open"


async def test_transcript_needs_a_contact(client: TestClient, world: World) -> None:
    resp = await client.post(
        f"{PATH}?website_token={world.inbox['website_token']}",
        json={"source": "user", "content": "x"},
    )
    assert resp.status == 404
    assert await resp.json() == {"error": "Resource could not be found"}
