"""/api/v1/widget/conversations and its member actions, over real HTTP, on both databases
(contract §2.1, §2.2, §2.6 and the widget conversation API page)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp.test_utils import TestClient

from server.services import SERVICES
from server.store import conversations as conversations_store
from tests.conftest import Visitor, World

NOT_FOUND = {"error": "Resource could not be found"}


async def status_json(resp: Any) -> tuple[int, Any]:
    text = await resp.text()
    return resp.status, (await resp.json() if text else None)


async def conversation_row(client: TestClient, world: World, display_id: int) -> dict[str, Any]:
    row = await client.app[SERVICES].db.read(
        conversations_store.by_display_id, world.account["id"], display_id
    )
    assert row is not None
    return row


# -- GET / POST conversations --------------------------------------------------------------


async def test_index_is_empty_object_without_a_conversation(visitor: Visitor) -> None:
    assert await status_json(await visitor.get("conversations")) == (200, {})


async def test_create_returns_the_contract_shape(visitor: Visitor, world: World) -> None:
    resp = await visitor.post(
        "conversations",
        {
            "contact": {"name": "Jane", "email": "Jane.Doe@X.IO", "phone_number": "+15550001"},
            "message": {
                "content": "Hello",
                "timestamp": "Mon Jan 19 2026 10:00:00 GMT+0000",
                "referer_url": "https://host/page",
                "echo_id": "e-1",
            },
            "custom_attributes": {"order": "123"},
        },
    )
    status, body = await status_json(resp)
    assert status == 200, body
    assert set(body) == {
        "id",
        "inbox_id",
        "contact_last_seen_at",
        "status",
        "messages",
        "custom_attributes",
        "contact",
    }
    assert isinstance(body["id"], int)
    assert body["inbox_id"] == world.inbox["id"]
    assert body["contact_last_seen_at"] == 0
    assert body["status"] == "open"
    assert body["custom_attributes"] == {"order": "123"}
    [msg] = body["messages"]
    assert msg["content"] == "Hello"
    assert msg["message_type"] == 0
    assert msg["conversation_id"] == body["id"]
    assert msg["content_attributes"] == {"in_reply_to": None}
    assert msg["sender"]["id"] == visitor.contact_id
    assert msg["sender"]["type"] == "contact"
    contact = body["contact"]
    assert contact["id"] == visitor.contact_id
    assert contact["email"] == "jane.doe@x.io"  # lower-cased
    assert contact["name"] == "Jane"
    assert contact["phone_number"] == "+15550001"
    assert contact["account_id"] == world.account["id"]
    for key in ("identifier", "additional_attributes", "custom_attributes", "created_at"):
        assert key in contact

    # GET reports the same conversation, by display id.
    status, current = await status_json(await visitor.get("conversations"))
    assert status == 200
    assert current == {
        "id": body["id"],
        "inbox_id": world.inbox["id"],
        "contact_last_seen_at": 0,
        "status": "open",
    }
    row = await conversation_row(visitor.client, world, body["id"])
    attrs = row["additional_attributes"]
    assert attrs["referer"] == "https://host/page"
    assert attrs["initiated_at"] == {"timestamp": "Mon Jan 19 2026 10:00:00 GMT+0000"}


async def test_create_always_opens_a_new_conversation(visitor: Visitor) -> None:
    first = await (await visitor.post("conversations", {"message": {"content": "one"}})).json()
    second = await (await visitor.post("conversations", {"message": {"content": "two"}})).json()
    assert second["id"] > first["id"]
    assert [m["content"] for m in second["messages"]] == ["two"]
    current = await (await visitor.get("conversations")).json()
    assert current["id"] == second["id"]
    messages = await (await visitor.get("messages")).json()
    assert [m["content"] for m in messages["payload"]] == ["two"]


async def test_a_message_goes_to_the_newest_conversation_and_bumps_only_it(
    visitor: Visitor, world: World
) -> None:
    """On PostgreSQL the visitor lookup and the bump are one statement that picks the latest
    conversation itself: the older one must stay as it was."""
    first = await (await visitor.post("conversations", {"message": {"content": "one"}})).json()
    second = await (await visitor.post("conversations", {"message": {"content": "two"}})).json()
    older = await conversation_row(visitor.client, world, first["id"])
    before = await conversation_row(visitor.client, world, second["id"])
    await asyncio.sleep(0.01)  # last_activity_at is a float of seconds: let it move
    sent = await visitor.send("three")
    assert sent["conversation_id"] == second["id"]
    newer = await conversation_row(visitor.client, world, second["id"])
    assert newer["unread_count"] == before["unread_count"] + 1
    assert newer["last_activity_at"] > before["last_activity_at"]
    assert await conversation_row(visitor.client, world, first["id"]) == older
    messages = await (await visitor.get("messages")).json()
    assert [m["content"] for m in messages["payload"]] == ["two", "three"]


async def test_create_keeps_an_existing_name(visitor: Visitor) -> None:
    resp = await visitor.post(
        "conversations",
        {"contact": {"name": "First"}, "message": {"content": "a"}},
    )
    assert (await resp.json())["contact"]["name"] == "First"
    resp = await visitor.post(
        "conversations",
        {"contact": {"name": "Second", "email": "NEW@x.io"}, "message": {"content": "b"}},
    )
    contact = (await resp.json())["contact"]
    assert contact["name"] == "First"
    assert contact["email"] == "new@x.io"


async def test_create_names_a_nameless_contact_after_the_email(visitor: Visitor) -> None:
    resp = await visitor.post(
        "conversations", {"contact": {"email": "Sam@x.io"}, "message": {"content": "hi"}}
    )
    assert (await resp.json())["contact"]["name"] == "sam"


async def test_create_refuses_blank_content_and_bad_email(visitor: Visitor) -> None:
    status, body = await status_json(
        await visitor.post("conversations", {"message": {"content": "  "}})
    )
    assert status == 422 and "error" in body
    status, body = await status_json(
        await visitor.post(
            "conversations", {"contact": {"email": "nope"}, "message": {"content": "x"}}
        )
    )
    assert status == 422 and "error" in body
    assert await (await visitor.get("conversations")).json() == {}


async def test_conversations_need_a_contact_token(client: TestClient, world: World) -> None:
    token = world.inbox["website_token"]
    for method in ("GET", "POST"):
        resp = await client.request(
            method,
            f"/api/v1/widget/conversations?website_token={token}",
            json={"message": {"content": "x"}},
        )
        assert await status_json(resp) == (404, NOT_FOUND)


# -- set_custom_attributes / destroy_custom_attributes --------------------------------------


async def test_set_custom_attributes_replaces_them(visitor: Visitor, world: World) -> None:
    conv = await (
        await visitor.post(
            "conversations", {"message": {"content": "x"}, "custom_attributes": {"a": 1, "b": 2}}
        )
    ).json()
    resp = await visitor.post(
        "conversations/set_custom_attributes", {"custom_attributes": {"c": 3}}
    )
    assert resp.status == 204
    assert await resp.read() == b""
    row = await conversation_row(visitor.client, world, conv["id"])
    assert row["custom_attributes"] == {"c": 3}


async def test_set_custom_attributes_404s(visitor: Visitor) -> None:
    payload = {"custom_attributes": {"c": 3}}
    status, body = await status_json(
        await visitor.post("conversations/set_custom_attributes", payload)
    )
    assert (status, body) == (404, NOT_FOUND)
    await visitor.send("hi")
    assert (await visitor.get("conversations/toggle_status")).status == 200
    status, body = await status_json(
        await visitor.post("conversations/set_custom_attributes", payload)
    )
    assert (status, body) == (404, NOT_FOUND)


async def test_destroy_custom_attributes(visitor: Visitor, world: World) -> None:
    status, body = await status_json(
        await visitor.post("conversations/destroy_custom_attributes", {"custom_attribute": ["a"]})
    )
    assert (status, body) == (404, NOT_FOUND)
    conv = await (
        await visitor.post(
            "conversations", {"message": {"content": "x"}, "custom_attributes": {"a": 1, "b": 2}}
        )
    ).json()
    status, body = await status_json(
        await visitor.post("conversations/destroy_custom_attributes", {"custom_attribute": ["a"]})
    )
    assert status == 200, body
    assert body["id"] == conv["id"]
    assert body["custom_attributes"] == {"b": 2}
    assert body["inbox_id"] == world.inbox["id"]
    assert body["status"] == "open"
    assert body["contact_id"] == visitor.contact_id
    row = await conversation_row(visitor.client, world, conv["id"])
    assert row["custom_attributes"] == {"b": 2}


# -- toggle_typing --------------------------------------------------------------------------


async def test_toggle_typing(visitor: Visitor) -> None:
    status, body = await status_json(
        await visitor.post("conversations/toggle_typing", {"typing_status": "on"})
    )
    assert (status, body) == (404, NOT_FOUND)
    await visitor.send("hi")
    for state in ("on", "off"):
        resp = await visitor.post("conversations/toggle_typing", {"typing_status": state})
        assert resp.status == 200, await resp.text()
    for bad in ("maybe", "", None, 1, ["on"]):
        status, body = await status_json(
            await visitor.post("conversations/toggle_typing", {"typing_status": bad})
        )
        assert status == 400 and "error" in body, (bad, status, body)


# -- update_last_seen -----------------------------------------------------------------------


async def test_update_last_seen(visitor: Visitor) -> None:
    resp = await visitor.post("conversations/update_last_seen", {"contact_last_seen_at": 1})
    assert resp.status == 200  # silently ignored without a conversation
    assert await (await visitor.get("conversations")).json() == {}
    await visitor.send("hi")
    meta = (await (await visitor.get("messages")).json())["meta"]
    assert meta == {"contact_last_seen_at": 0}
    before = int(time.time())
    resp = await visitor.post("conversations/update_last_seen", {"contact_last_seen_at": 1})
    assert resp.status == 200
    after = int(time.time()) + 1
    seen = (await (await visitor.get("conversations")).json())["contact_last_seen_at"]
    assert before <= seen <= after  # the server's clock, not the client's value
    meta = (await (await visitor.get("messages")).json())["meta"]
    assert meta == {"contact_last_seen_at": seen}


# -- toggle_status --------------------------------------------------------------------------


async def test_toggle_status_resolves(visitor: Visitor) -> None:
    status, body = await status_json(await visitor.get("conversations/toggle_status"))
    assert (status, body) == (404, NOT_FOUND)
    await visitor.send("hi")
    assert (await visitor.get("conversations/toggle_status")).status == 200
    assert (await (await visitor.get("conversations")).json())["status"] == "resolved"
    # Resolving again stays resolved.
    assert (await visitor.get("conversations/toggle_status")).status == 200
    assert (await (await visitor.get("conversations")).json())["status"] == "resolved"


async def test_toggle_status_is_forbidden_when_the_inbox_disallows_it(
    client: TestClient, world: World
) -> None:
    other = await Visitor(client, world.other_inbox["website_token"]).start()
    await other.send("hi")
    status, body = await status_json(await other.get("conversations/toggle_status"))
    assert status == 403 and "error" in body
    assert (await (await other.get("conversations")).json())["status"] == "open"
