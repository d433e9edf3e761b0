"""GET/POST /api/v1/widget/messages over real HTTP, on both databases (contract §2.3, §2.4):
paging exactly as the widget relies on it, hidden private/activity messages, reopening."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server import events
from server.services import SERVICES
from server.store.inputs import AgentMessage, AgentsConversation
from server.store.tables import conversations
from tests.cable import CableClient, agent_identifier
from tests.conftest import Visitor, World


async def agent_message(
    client: TestClient,
    world: World,
    display_id: int,
    content: str,
    *,
    private: bool = False,
    message_type: int = events.OUTGOING,
) -> dict[str, Any]:
    """Write a message the way the agent side does, through the store (which, unlike the
    endpoint, takes any message type: an activity message too)."""
    svc = client.app[SERVICES]
    inbox_ids = (world.inbox["id"], world.other_inbox["id"])
    sent = await svc.store.agent_message(
        AgentMessage(
            conversation=AgentsConversation(world.account["id"], inbox_ids, display_id),
            author=world.agent,
            message_type=message_type,
            content=content,
            content_type="text",
            content_attributes={},
            private=private,
            echo_id=None,
            flood_limit=svc.settings.messages_per_minute,
        )
    )
    assert sent is not None
    return dict(sent.message)


async def listed(visitor: Visitor, query: str = "") -> list[dict[str, Any]]:
    resp = await visitor.client.get(
        f"/api/v1/widget/messages?website_token={visitor.website_token}{query}",
        headers={"X-Auth-Token": visitor.auth_token or ""},
    )
    assert resp.status == 200, await resp.text()
    return (await resp.json())["payload"]


def ids(rows: list[dict[str, Any]]) -> list[int]:
    return [r["id"] for r in rows]


async def test_no_conversation_gives_an_empty_page(visitor: Visitor) -> None:
    resp = await visitor.get("messages")
    assert resp.status == 200
    assert await resp.json() == {"payload": [], "meta": {}}


async def test_post_shape_and_first_message_opens_a_conversation(
    visitor: Visitor, world: World
) -> None:
    resp = await visitor.post(
        "messages",
        {"message": {"content": "hi", "echo_id": "tmp-1", "referer_url": "https://h/p"}},
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert set(body) == {
        "id",
        "content",
        "inbox_id",
        "conversation_id",
        "message_type",
        "created_at",
        "private",
        "source_id",
        "content_attributes",
        "echo_id",
        "sender",
    }
    assert body["content"] == "hi"
    assert body["message_type"] == 0
    assert body["private"] is False
    assert body["inbox_id"] == world.inbox["id"]
    assert body["content_attributes"] == {"in_reply_to": None}
    assert body["echo_id"] == "tmp-1"
    assert body["sender"]["id"] == visitor.contact_id
    assert isinstance(body["created_at"], int)
    conv = await (await visitor.get("conversations")).json()
    assert conv["id"] == body["conversation_id"]
    assert conv["status"] == "open"

    resp = await visitor.get("messages")
    page = await resp.json()
    [listed_msg] = page["payload"]
    assert listed_msg["id"] == body["id"]
    assert listed_msg["content_type"] == "text"
    assert listed_msg["conversation_id"] == conv["id"]
    assert listed_msg["sender"]["type"] == "contact"
    assert page["meta"] == {"contact_last_seen_at": 0}


async def test_messages_go_to_the_same_conversation_with_increasing_ids(visitor: Visitor) -> None:
    sent = [await visitor.send(f"m{i}") for i in range(5)]
    assert len({m["conversation_id"] for m in sent}) == 1
    assert ids(sent) == sorted(ids(sent))
    assert len(set(ids(sent))) == 5
    assert ids(await listed(visitor)) == ids(sent)


async def test_concurrent_first_messages_open_one_conversation(visitor: Visitor) -> None:
    sent = await asyncio.gather(*(visitor.send(f"c{i}") for i in range(8)))
    assert len({m["conversation_id"] for m in sent}) == 1
    assert sorted(ids(await listed(visitor))) == sorted(ids(list(sent)))


async def test_reply_to_is_kept(visitor: Visitor) -> None:
    first = await visitor.send("one")
    resp = await visitor.post("messages", {"message": {"content": "two", "reply_to": first["id"]}})
    assert (await resp.json())["content_attributes"] == {"in_reply_to": first["id"]}


async def test_paging_before_and_after(visitor: Visitor, world: World) -> None:
    """Newest 20 ascending; before -> the 20 older; after -> up to 100; both -> [after, before)."""
    first = await visitor.send("m0")
    display_id = first["conversation_id"]
    all_ids = [first["id"]]
    for i in range(1, 130):
        if i % 2:
            all_ids.append((await agent_message(visitor.client, world, display_id, f"m{i}"))["id"])
        else:
            all_ids.append((await visitor.send(f"m{i}"))["id"])
    assert all_ids == sorted(all_ids)

    newest = await listed(visitor)
    assert ids(newest) == all_ids[-20:]
    older = await listed(visitor, f"&before={newest[0]['id']}")
    assert ids(older) == all_ids[-40:-20]
    oldest = await listed(visitor, f"&before={all_ids[5]}")
    assert ids(oldest) == all_ids[:5]
    assert await listed(visitor, f"&before={all_ids[0]}") == []

    after = await listed(visitor, f"&after={all_ids[0]}")
    assert ids(after) == all_ids[1:101]
    after_tail = await listed(visitor, f"&after={all_ids[-3]}")
    assert ids(after_tail) == all_ids[-2:]
    assert await listed(visitor, f"&after={all_ids[-1]}") == []

    both = await listed(visitor, f"&after={all_ids[10]}&before={all_ids[50]}")
    assert ids(both) == all_ids[10:50]  # [after, before)

    # Agent messages come with their sender.
    agent_rows = [r for r in newest if r["message_type"] == events.OUTGOING]
    assert agent_rows and all(r["sender"]["type"] == "user" for r in agent_rows)


async def test_private_and_activity_messages_are_never_shown(
    visitor: Visitor, world: World
) -> None:
    first = await visitor.send("hello")
    display_id = first["conversation_id"]
    note = await agent_message(visitor.client, world, display_id, "secret note", private=True)
    activity = await agent_message(
        visitor.client, world, display_id, "Conversation assigned", message_type=events.ACTIVITY
    )
    reply = await agent_message(visitor.client, world, display_id, "How can I help?")
    visible = [first["id"], reply["id"]]
    assert ids(await listed(visitor)) == visible
    assert ids(await listed(visitor, f"&after={first['id']}")) == [reply["id"]]
    assert ids(await listed(visitor, f"&before={reply['id']}")) == [first["id"]]
    both = await listed(visitor, f"&after={first['id']}&before={reply['id'] + 1}")
    assert ids(both) == visible
    shown = {r["content"] for r in await listed(visitor)}
    assert "secret note" not in shown and "Conversation assigned" not in shown
    assert note["id"] not in ids(await listed(visitor, "&after=0"))
    assert activity["id"] not in ids(await listed(visitor, "&after=0"))
    # The visible page is still filled to 20 with visible messages only.
    for i in range(25):
        await agent_message(visitor.client, world, display_id, f"n{i}", private=True)
    assert ids(await listed(visitor)) == visible


async def test_posting_reopens_a_resolved_conversation(visitor: Visitor) -> None:
    first = await visitor.send("hi")
    assert (await visitor.get("conversations/toggle_status")).status == 200
    assert (await (await visitor.get("conversations")).json())["status"] == "resolved"
    again = await visitor.send("back again")
    assert again["conversation_id"] == first["conversation_id"]
    conv = await (await visitor.get("conversations")).json()
    assert conv == {**conv, "id": first["conversation_id"], "status": "open"}


async def test_blank_content_is_refused(visitor: Visitor) -> None:
    for message in ({}, {"content": ""}, {"content": "   "}, {"content": None}):
        resp = await visitor.post("messages", {"message": message})
        assert resp.status == 422, message
        assert "error" in await resp.json()
    assert await (await visitor.get("conversations")).json() == {}


async def test_bad_paging_parameters_are_400(visitor: Visitor) -> None:
    await visitor.send("hi")
    for query in (
        "&before=abc",
        "&after=1.5",
        "&after=--5",
        "&before=%C2%B2",
        "&after=" + "9" * 30,
    ):
        resp = await visitor.client.get(
            f"/api/v1/widget/messages?website_token={visitor.website_token}{query}",
            headers={"X-Auth-Token": visitor.auth_token or ""},
        )
        assert resp.status == 400, (query, resp.status, await resp.text())
        assert "error" in await resp.json()


BURST = 30


async def test_concurrent_messages_of_one_visitor_keep_counts_and_order(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    """Exact unread counts in every event and ids in commit order, whichever path each
    message takes (on PostgreSQL most go without a transaction: engine/postgresql.py)."""
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
