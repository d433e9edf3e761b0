"""The agent API over real HTTP, on both databases (contract §6): access-token auth, account
and inbox scoping, the conversation list, messages, replies and private notes as the visitor
sees them, status, typing, last-seen, and a battery of bad input that must change nothing."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import orjson
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select, update

from server import events
from server.bus.envelope import unpack
from server.services import SERVICES
from server.store import accounts as accounts_store
from server.store import conversation_writes
from server.store import conversations as conversations_store
from server.store.inputs import AgentMessage, AgentsConversation
from server.store.tables import accounts, conversations, messages, outbox
from tests.conftest import Visitor, World

API = "/api/v1"


def hdr(user: dict[str, Any]) -> dict[str, str]:
    return {"api_access_token": user["access_token"]}


def conv_url(world: World, display_id: int | str = "", suffix: str = "") -> str:
    base = f"{API}/accounts/{world.account['id']}/conversations"
    if display_id != "":
        base += f"/{display_id}"
    return base + suffix


async def call(
    client: TestClient, method: str, url: str, user: dict[str, Any], json: Any = None
) -> tuple[int, Any]:
    resp = await client.request(method, url, headers=hdr(user), json=json)
    text = await resp.text()
    return resp.status, (orjson.loads(text) if text else None)


async def get_ok(client: TestClient, url: str, user: dict[str, Any]) -> Any:
    status, body = await call(client, "GET", url, user)
    assert status == 200, body
    return body


async def post_ok(client: TestClient, url: str, user: dict[str, Any], json: Any = None) -> Any:
    status, body = await call(client, "POST", url, user, json)
    assert status == 200, body
    return body


async def started(client: TestClient, website_token: str, first: str = "hello") -> Visitor:
    """A visitor with an open conversation (their first message)."""
    visitor = await Visitor(client, website_token).start()
    sent = await visitor.send(first)
    visitor.display_id = sent["conversation_id"]  # type: ignore[attr-defined]
    return visitor


def display_id(visitor: Visitor) -> int:
    return visitor.display_id  # type: ignore[attr-defined,no-any-return]


async def agent_messages(
    client: TestClient, world: World, did: int, items: list[tuple[str, bool]]
) -> None:
    """Many agent messages (content, private), one after the other, through the store: the
    reply endpoint itself is tested one message at a time."""
    svc = client.app[SERVICES]
    for content, private in items:
        await svc.store.agent_message(
            AgentMessage(
                conversation=AgentsConversation(world.account["id"], (world.inbox["id"],), did),
                author=world.agent,
                message_type=events.OUTGOING,
                content=content,
                content_type="text",
                content_attributes={},
                private=private,
                echo_id=None,
                flood_limit=svc.settings.messages_per_minute,
            )
        )


async def outbox_rows(client: TestClient) -> list[dict[str, Any]]:
    async def op(conn: Any) -> list[dict[str, Any]]:
        rows = await conn.execute(
            select(outbox.c.event, outbox.c.channels, outbox.c.payload).order_by(outbox.c.id)
        )
        return [dict(r._mapping) for r in rows]

    return await client.app[SERVICES].db.read(op)


async def conversation_row(client: TestClient, world: World, did: int) -> dict[str, Any]:
    row = await client.app[SERVICES].db.read(
        conversations_store.by_display_id, world.account["id"], did
    )
    assert row is not None
    return row


async def snapshot(client: TestClient) -> tuple[Any, ...]:
    """Everything a write could touch: messages, outbox, every conversation's mutable state."""

    async def op(conn: Any) -> tuple[Any, ...]:
        n_messages = (await conn.execute(select(func.count()).select_from(messages))).scalar()
        n_outbox = (await conn.execute(select(func.count()).select_from(outbox))).scalar()
        convs = (
            await conn.execute(
                select(
                    conversations.c.id,
                    conversations.c.status,
                    conversations.c.unread_count,
                    conversations.c.agent_last_seen_at,
                    conversations.c.updated_at,
                ).order_by(conversations.c.id)
            )
        ).all()
        return n_messages, n_outbox, [tuple(r) for r in convs]

    return await client.app[SERVICES].db.read(op)


async def visitor_messages(visitor: Visitor) -> list[dict[str, Any]]:
    resp = await visitor.get("messages")
    assert resp.status == 200, await resp.text()
    return (await resp.json())["payload"]


# -- auth and scoping ---------------------------------------------------------------------


async def test_missing_or_unknown_token_is_401(client: TestClient, world: World) -> None:
    urls = [
        f"{API}/profile",
        conv_url(world),
        conv_url(world, 1),
        conv_url(world, 1, "/messages"),
        f"{API}/accounts/abc/conversations",
    ]
    for url in urls:
        resp = await client.get(url)
        assert resp.status == 401, url
        assert await resp.json() == {"error": "Invalid Access Token"}
        resp = await client.get(url, headers={"api_access_token": "nope"})
        assert resp.status == 401, url
        assert await resp.json() == {"error": "Invalid Access Token"}
        resp = await client.get(url, headers={"api_access_token": "x" * 5000})
        assert resp.status == 401, url
    resp = await client.post(conv_url(world, 1, "/messages"), json={"content": "hi"})
    assert resp.status == 401


async def test_token_in_query_parameter(client: TestClient, world: World) -> None:
    resp = await client.get(f"{API}/profile?api_access_token={world.agent['access_token']}")
    assert resp.status == 200
    assert (await resp.json())["id"] == world.agent["id"]


async def test_profile(client: TestClient, world: World) -> None:
    body = await get_ok(client, f"{API}/profile", world.agent)
    assert body["id"] == world.agent["id"]
    assert body["name"] == "Agent A"
    assert body["available_name"] == "Agent A"
    assert body["email"] == world.agent["email"]
    assert body["pubsub_token"] == world.agent["pubsub_token"]
    assert body["access_token"] == world.agent["access_token"]
    assert body["account_id"] == world.account["id"]
    assert body["role"] == "agent"
    assert body["availability_status"] == "online"
    assert body["accounts"] == [
        {
            "id": world.account["id"],
            "name": "Acme",
            "role": "agent",
            "availability": "online",
            "availability_status": "online",
        }
    ]
    admin = await get_ok(client, f"{API}/profile", world.admin)
    assert admin["role"] == "administrator"
    assert admin["pubsub_token"] == world.admin["pubsub_token"]


async def second_account(client: TestClient) -> tuple[dict[str, Any], dict[str, Any]]:
    """Another tenant: (account, its administrator)."""

    async def op(conn: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        account = await accounts_store.create_account(conn, "Globex")
        inbox = await accounts_store.create_inbox(conn, account_id=account["id"], name="G")
        admin = await accounts_store.create_agent(
            conn,
            account_id=account["id"],
            name="G admin",
            email=f"g-{secrets.token_hex(4)}@x.io",
            inbox_ids=[inbox["id"]],
            administrator=True,
        )
        return account, admin

    return await client.app[SERVICES].db.write(op)


async def test_other_tenants_are_out_of_reach(client: TestClient, world: World) -> None:
    visitor = await started(client, world.inbox["website_token"])
    account, outsider = await second_account(client)
    # This account's conversations, asked for by an administrator of another account.
    for url in (conv_url(world), conv_url(world, display_id(visitor), "/messages")):
        status, body = await call(client, "GET", url, outsider)
        assert status == 401, url
        assert body == {"error": "You are not authorized to access this account"}
    status, _ = await call(
        client,
        "POST",
        conv_url(world, display_id(visitor), "/messages"),
        outsider,
        {"content": "x"},
    )
    assert status == 401
    # Its own account has a conversation with the same display id: not this one.
    other_url = f"{API}/accounts/{account['id']}/conversations"
    listed = await get_ok(client, f"{other_url}?status=all", outsider)
    assert listed["data"]["payload"] == []
    status, body = await call(client, "GET", f"{other_url}/{display_id(visitor)}", outsider)
    assert status == 404
    assert body == {"error": "Resource could not be found"}
    # And our agent is no member of that account, nor of one that does not exist.
    for acc in (account["id"], 999_999):
        status, body = await call(client, "GET", f"{API}/accounts/{acc}/conversations", world.agent)
        assert status == 401
        assert body == {"error": "You are not authorized to access this account"}
    profile = await get_ok(client, f"{API}/profile", outsider)
    assert [a["id"] for a in profile["accounts"]] == [account["id"]]


async def test_agents_see_their_inboxes_and_admins_all(client: TestClient, world: World) -> None:
    mine = await started(client, world.inbox["website_token"], "in my inbox")
    theirs = await started(client, world.other_inbox["website_token"], "in the other inbox")

    listed = await get_ok(client, conv_url(world), world.agent)
    assert [c["id"] for c in listed["data"]["payload"]] == [display_id(mine)]
    assert listed["data"]["meta"] == {"mine_count": 0, "unassigned_count": 1, "all_count": 1}

    listed = await get_ok(client, conv_url(world), world.admin)
    assert sorted(c["id"] for c in listed["data"]["payload"]) == sorted(
        [display_id(mine), display_id(theirs)]
    )
    assert listed["data"]["meta"]["all_count"] == 2

    # Every member endpoint: the other inbox's conversation does not exist for the agent.
    did = display_id(theirs)
    before = await snapshot(client)
    for method, suffix, body in [
        ("GET", "", None),
        ("GET", "/messages", None),
        ("POST", "/messages", {"content": "sneaky"}),
        ("POST", "/toggle_status", {"status": "resolved"}),
        ("POST", "/toggle_typing_status", {"typing_status": "on"}),
        ("POST", "/update_last_seen", None),
    ]:
        status, got = await call(client, method, conv_url(world, did, suffix), world.agent, body)
        assert status == 404, (method, suffix, got)
        assert got == {"error": "Resource could not be found"}
    assert await snapshot(client) == before

    shown = await get_ok(client, conv_url(world, did), world.admin)
    assert shown["id"] == did
    assert shown["inbox_id"] == world.other_inbox["id"]
    await post_ok(client, conv_url(world, did, "/messages"), world.admin, {"content": "admin here"})
    assert [m["content"] for m in await visitor_messages(theirs)] == [
        "in the other inbox",
        "admin here",
    ]


async def test_conversation_push_shape(client: TestClient, world: World) -> None:
    visitor = await started(client, world.inbox["website_token"], "shape")
    conv = await get_ok(client, conv_url(world, display_id(visitor)), world.agent)
    assert conv["id"] == display_id(visitor)
    assert conv["account_id"] == world.account["id"]
    assert conv["inbox_id"] == world.inbox["id"]
    assert conv["status"] == "open"
    assert conv["channel"] == "Channel::WebWidget"
    assert conv["contact_inbox"]["pubsub_token"] == visitor.pubsub_token
    assert conv["meta"]["sender"]["id"] == visitor.contact_id
    assert conv["meta"]["sender"]["type"] == "contact"
    assert conv["meta"]["assignee"] is None
    assert conv["unread_count"] == 1
    [last] = conv["messages"]
    assert last["content"] == "shape"
    assert last["conversation_id"] == display_id(visitor)
    assert last["sender"]["type"] == "contact"
    assert isinstance(conv["timestamp"], int)
    # The list builds the same push data for each row as the single view.
    listed = await get_ok(client, conv_url(world), world.agent)
    assert listed["data"]["payload"] == [conv]


# -- the conversation list -------------------------------------------------------------------


async def test_status_filter_and_paging(client: TestClient, world: World) -> None:
    visitors = [await started(client, world.inbox["website_token"], f"v{i}") for i in range(28)]
    dids = [display_id(v) for v in visitors]
    for did in dids[:3]:
        await post_ok(
            client, conv_url(world, did, "/toggle_status"), world.agent, {"status": "resolved"}
        )
    await post_ok(
        client, conv_url(world, dids[3], "/toggle_status"), world.agent, {"status": "pending"}
    )

    page1 = await get_ok(client, conv_url(world), world.agent)
    assert page1["data"]["meta"]["all_count"] == 24
    assert len(page1["data"]["payload"]) == 24
    assert all(c["status"] == "open" for c in page1["data"]["payload"])

    resolved = await get_ok(client, conv_url(world) + "?status=resolved", world.agent)
    assert sorted(c["id"] for c in resolved["data"]["payload"]) == sorted(dids[:3])
    assert resolved["data"]["meta"]["all_count"] == 3
    pending = await get_ok(client, conv_url(world) + "?status=pending", world.agent)
    assert [c["id"] for c in pending["data"]["payload"]] == [dids[3]]
    snoozed = await get_ok(client, conv_url(world) + "?status=snoozed", world.agent)
    assert snoozed["data"]["payload"] == []

    every = await get_ok(client, conv_url(world) + "?status=all", world.agent)
    assert every["data"]["meta"]["all_count"] == 28
    first = every["data"]["payload"]
    assert len(first) == 25
    second = (await get_ok(client, conv_url(world) + "?status=all&page=2", world.agent))["data"]
    assert len(second["payload"]) == 3
    seen = [c["id"] for c in first] + [c["id"] for c in second["payload"]]
    assert sorted(seen) == sorted(dids)  # no row twice, none missing
    third = await get_ok(client, conv_url(world) + "?status=all&page=3", world.agent)
    assert third["data"]["payload"] == []
    # Latest activity first: the conversations touched last (by status changes) lead.
    stamps = [c["last_activity_at"] for c in first]
    assert stamps == sorted(stamps, reverse=True)


async def test_mine_count_counts_assigned_conversations(client: TestClient, world: World) -> None:
    visitors = [await started(client, world.inbox["website_token"]) for _ in range(3)]
    row = await conversation_row(client, world, display_id(visitors[0]))

    async def assign(conn: Any) -> None:
        await conversation_writes.change(conn, row["id"], assignee_id=world.agent["id"])

    await client.app[SERVICES].db.write(assign)
    meta = (await get_ok(client, conv_url(world), world.agent))["data"]["meta"]
    assert meta == {"mine_count": 1, "unassigned_count": 2, "all_count": 3}
    conv = await get_ok(client, conv_url(world, display_id(visitors[0])), world.agent)
    assert conv["meta"]["assignee"]["id"] == world.agent["id"]
    assert conv["meta"]["assignee_type"] == "User"
    admin_meta = (await get_ok(client, conv_url(world), world.admin))["data"]["meta"]
    assert admin_meta == {"mine_count": 0, "unassigned_count": 2, "all_count": 3}


# -- messages ----------------------------------------------------------------------------------


async def test_reply_reaches_the_visitor(client: TestClient, world: World) -> None:
    visitor = await started(client, world.inbox["website_token"], "help?")
    url = conv_url(world, display_id(visitor), "/messages")
    reply = await post_ok(client, url, world.agent, {"content": "On it", "echo_id": "e-1"})
    assert reply["content"] == "On it"
    assert reply["message_type"] == events.OUTGOING
    assert reply["conversation_id"] == display_id(visitor)
    assert reply["inbox_id"] == world.inbox["id"]
    assert reply["private"] is False
    assert reply["status"] == "sent"
    assert reply["content_type"] == "text"
    assert reply["echo_id"] == "e-1"
    assert isinstance(reply["created_at"], int)
    assert reply["sender"] == events.user_push(world.agent)

    seen = await visitor_messages(visitor)
    assert [(m["content"], m["message_type"]) for m in seen] == [
        ("help?", events.INCOMING),
        ("On it", events.OUTGOING),
    ]
    assert seen[-1]["id"] == reply["id"]
    assert seen[-1]["sender"]["type"] == "user"

    created = [r for r in await outbox_rows(client) if r["event"] == events.MESSAGE_CREATED]
    data = orjson.loads(created[-1]["payload"])["data"]
    assert data["id"] == reply["id"]
    assert data["sender_type"] == "User"
    assert data["account_id"] == world.account["id"]
    assert created[-1]["channels"] == [
        events.inbox_channel(world.inbox["id"]),
        events.contact_channel(visitor.pubsub_token or ""),
    ]


async def test_private_note_never_reaches_the_visitor(client: TestClient, world: World) -> None:
    visitor = await started(client, world.inbox["website_token"], "hi")
    url = conv_url(world, display_id(visitor), "/messages")
    note = await post_ok(client, url, world.agent, {"content": "internal only", "private": True})
    assert note["private"] is True
    assert [m["content"] for m in await visitor_messages(visitor)] == ["hi"]
    after = await visitor.get("messages", params={"after": "0"})
    assert [m["content"] for m in (await after.json())["payload"]] == ["hi"]
    # Agents see it, in order.
    listed = await get_ok(client, url, world.agent)
    assert [(m["content"], m["private"]) for m in listed["payload"]] == [
        ("hi", False),
        ("internal only", True),
    ]
    [row] = [r for r in await outbox_rows(client) if b"internal only" in r["payload"].encode()]
    assert row["event"] == events.MESSAGE_CREATED
    assert row["channels"] == [events.inbox_channel(world.inbox["id"])]
    # The conversation's last message (what lists show) is still the public one.
    conv = await get_ok(client, conv_url(world, display_id(visitor)), world.agent)
    assert conv["messages"][0]["content"] == "hi"


async def test_reply_does_not_reopen_a_resolved_conversation(
    client: TestClient, world: World
) -> None:
    visitor = await started(client, world.inbox["website_token"])
    did = display_id(visitor)
    await post_ok(
        client, conv_url(world, did, "/toggle_status"), world.agent, {"status": "resolved"}
    )
    await post_ok(client, conv_url(world, did, "/messages"), world.agent, {"content": "bye"})
    assert (await conversation_row(client, world, did))["status"] == "resolved"
    assert (await (await visitor.get("conversations")).json())["status"] == "resolved"


async def test_incoming_message_type_is_422(client: TestClient, world: World) -> None:
    visitor = await started(client, world.inbox["website_token"])
    before = await snapshot(client)
    status, body = await call(
        client,
        "POST",
        conv_url(world, display_id(visitor), "/messages"),
        world.agent,
        {"content": "x", "message_type": "incoming"},
    )
    assert status == 422
    assert body == {"error": "Incoming messages are only allowed in Api inboxes"}
    assert await snapshot(client) == before


async def test_content_attributes_object_or_json_string(client: TestClient, world: World) -> None:
    visitor = await started(client, world.inbox["website_token"])
    url = conv_url(world, display_id(visitor), "/messages")
    a = await post_ok(
        client, url, world.agent, {"content": "a", "content_attributes": {"in_reply_to": 1}}
    )
    assert a["content_attributes"] == {"in_reply_to": 1}
    b = await post_ok(
        client,
        url,
        world.agent,
        {"content": "b", "content_attributes": '{"x": 2}', "content_type": "input_email"},
    )
    assert b["content_attributes"] == {"x": 2}
    assert b["content_type"] == "input_email"


async def test_messages_before_and_after(client: TestClient, world: World) -> None:
    visitor = await started(client, world.inbox["website_token"], "m0")
    url = conv_url(world, display_id(visitor), "/messages")
    await agent_messages(
        client, world, display_id(visitor), [(f"m{i}", i % 5 == 0) for i in range(1, 25)]
    )
    newest = await get_ok(client, url, world.agent)
    ids = [m["id"] for m in newest["payload"]]
    assert len(ids) == 20 and ids == sorted(ids)
    assert newest["payload"][-1]["content"] == "m24"
    assert newest["meta"]["contact"]["id"] == visitor.contact_id
    assert newest["meta"]["labels"] == []
    assert newest["meta"]["assignee"] is None
    assert "agent_last_seen_at" in newest["meta"]
    assert "browser" in newest["meta"]["additional_attributes"]

    older = await get_ok(client, f"{url}?before={ids[0]}", world.agent)
    assert [m["content"] for m in older["payload"]] == [f"m{i}" for i in range(5)]
    later = await get_ok(client, f"{url}?after={ids[-3]}", world.agent)
    assert [m["id"] for m in later["payload"]] == ids[-2:]
    both = await get_ok(client, f"{url}?after={ids[2]}&before={ids[5]}", world.agent)
    assert [m["id"] for m in both["payload"]] == ids[2:5]
    # Private notes are in the agent's history, with their flag.
    assert [m["content"] for m in newest["payload"] if m["private"]] == [
        "m5",
        "m10",
        "m15",
        "m20",
    ]
    # The contact message carries the contact as sender, replies the agent.
    assert older["payload"][0]["sender"]["type"] == "contact"
    assert older["payload"][1]["sender"]["id"] == world.agent["id"]


# -- status, last seen, typing -----------------------------------------------------------------


async def test_toggle_status(client: TestClient, world: World) -> None:
    visitor = await started(client, world.inbox["website_token"])
    did = display_id(visitor)
    url = conv_url(world, did, "/toggle_status")

    async def visitor_status() -> str:
        return (await (await visitor.get("conversations")).json())["status"]

    body = await post_ok(client, url, world.agent, {"status": "resolved"})
    assert body == {
        "meta": {},
        "payload": {
            "success": True,
            "conversation_id": did,
            "current_status": "resolved",
            "snoozed_until": None,
        },
    }
    assert await visitor_status() == "resolved"
    body = await post_ok(client, url, world.agent)  # no status: toggles
    assert body["payload"]["current_status"] == "open"
    assert await visitor_status() == "open"
    body = await post_ok(client, url, world.agent, {})
    assert body["payload"]["current_status"] == "resolved"
    body = await post_ok(client, url, world.agent, {"status": "pending"})
    assert body["payload"]["current_status"] == "pending"
    body = await post_ok(client, url, world.agent)  # anything but open toggles to open
    assert body["payload"]["current_status"] == "open"
    body = await post_ok(client, url, world.agent, {"status": "open"})  # unchanged: no event
    assert body["payload"]["current_status"] == "open"

    rows = await outbox_rows(client)
    changes = [
        orjson.loads(r["payload"])["data"]["status"]
        for r in rows
        if r["event"] == events.CONVERSATION_STATUS_CHANGED
    ]
    assert changes == ["resolved", "open", "resolved", "pending", "open"]
    updated = [r for r in rows if r["event"] == events.CONVERSATION_UPDATED]
    assert len(updated) == 5
    status_row = next(r for r in rows if r["event"] == events.CONVERSATION_STATUS_CHANGED)
    assert status_row["channels"] == [
        events.inbox_channel(world.inbox["id"]),
        events.contact_channel(visitor.pubsub_token or ""),
    ]


async def test_update_last_seen_zeroes_unread_count(client: TestClient, world: World) -> None:
    visitor = await started(client, world.inbox["website_token"], "one")
    await visitor.send("two")
    did = display_id(visitor)
    listed = await get_ok(client, conv_url(world), world.agent)
    assert listed["data"]["payload"][0]["unread_count"] == 2
    assert listed["data"]["payload"][0]["agent_last_seen_at"] == 0

    events_before = len(await outbox_rows(client))
    assert await post_ok(client, conv_url(world, did, "/update_last_seen"), world.agent) == {}
    listed = await get_ok(client, conv_url(world), world.agent)
    assert listed["data"]["payload"][0]["unread_count"] == 0
    assert listed["data"]["payload"][0]["agent_last_seen_at"] > 0
    history = await get_ok(client, conv_url(world, did, "/messages"), world.agent)
    assert history["meta"]["agent_last_seen_at"] > 0
    assert len(await outbox_rows(client)) == events_before  # nothing for the visitor

    await visitor.send("three")
    listed = await get_ok(client, conv_url(world), world.agent)
    assert listed["data"]["payload"][0]["unread_count"] == 1


class BusTap:
    """Records what the app's real bus delivers on some channels (chained to the hub's
    handler, if one is installed, so nothing else is disturbed)."""

    def __init__(self, client: TestClient, channels: list[str]) -> None:
        self.bus = client.app[SERVICES].bus
        self.channels = channels
        self.got: list[tuple[str, dict[str, Any], dict[str, Any]]] = []

    async def __aenter__(self) -> BusTap:
        self.previous = self.bus.handler
        self.bus.handler = self._on
        for channel in self.channels:
            await self.bus.subscribe(channel)
        return self

    def _on(self, channel: str, payload: bytes) -> None:
        if channel in self.channels:
            header, message = unpack(payload)
            self.got.append((channel, header, orjson.loads(message)))
        if self.previous is not None:
            self.previous(channel, payload)

    async def __aexit__(self, *exc: object) -> None:
        self.bus.handler = self.previous


async def test_typing(client: TestClient, world: World) -> None:
    visitor = await started(client, world.inbox["website_token"])
    did = display_id(visitor)
    url = conv_url(world, did, "/toggle_typing_status")
    inbox_ch = events.inbox_channel(world.inbox["id"])
    contact_ch = events.contact_channel(visitor.pubsub_token or "")
    async with BusTap(client, [inbox_ch, contact_ch]) as tap:
        resp = await client.post(url, headers=hdr(world.agent), json={"typing_status": "on"})
        assert resp.status == 200
        assert await resp.read() == b""
        await post_ok(client, url, world.agent, {"typing_status": "off", "is_private": True})
    # The test app runs the in-process bus, which delivers as it publishes.
    on = [(ch, h, m) for ch, h, m in tap.got if m["event"] == events.TYPING_ON]
    assert sorted(ch for ch, _, _ in on) == sorted([inbox_ch, contact_ch])
    for _, header, message in on:
        assert header["s"] == world.agent["pubsub_token"]  # never echoed to the typer
        assert message["data"]["user"] == events.user_push(world.agent)
        assert message["data"]["conversation"]["id"] == did
        assert message["data"]["is_private"] is False
        assert message["data"]["account_id"] == world.account["id"]
    off = [(ch, m) for ch, _, m in tap.got if m["event"] == events.TYPING_OFF]
    assert [ch for ch, _ in off] == [inbox_ch]  # private typing stays with the agents
    assert off[0][1]["data"]["is_private"] is True


async def test_typing_bad_input_is_400(client: TestClient, world: World) -> None:
    visitor = await started(client, world.inbox["website_token"])
    url = conv_url(world, display_id(visitor), "/toggle_typing_status")
    for body in [
        {},
        {"typing_status": "maybe"},
        {"typing_status": 1},
        {"typing_status": "on", "is_private": "yes"},
    ]:
        status, got = await call(client, "POST", url, world.agent, body)
        assert status == 400, body
        assert "error" in got


# -- bad input ---------------------------------------------------------------------------------


async def test_bad_input_battery_changes_nothing(client: TestClient, world: World) -> None:
    visitor = await started(client, world.inbox["website_token"])
    did = display_id(visitor)
    acc = world.account["id"]
    too_long = "x" * (client.app[SERVICES].settings.max_message_length + 1)
    cases: list[tuple[str, str, Any, set[int]]] = [
        ("GET", conv_url(world) + "?status=closed", None, {400}),
        ("GET", conv_url(world) + "?page=0", None, {400}),
        ("GET", conv_url(world) + "?page=-3", None, {400}),
        ("GET", conv_url(world) + "?page=abc", None, {400}),
        ("GET", conv_url(world) + "?page=99999999999999999999", None, {400}),
        ("GET", f"{API}/accounts/abc/conversations", None, {404}),
        ("GET", f"{API}/accounts/99999999999999999999999/conversations", None, {404}),
        ("GET", f"{API}/accounts/-1/conversations", None, {404}),
        ("GET", conv_url(world, "abc"), None, {404}),
        ("GET", conv_url(world, "1.5", "/messages"), None, {404}),
        ("GET", conv_url(world, "99999999999999999999999"), None, {404}),
        ("GET", conv_url(world, 424242), None, {404}),
        ("GET", conv_url(world, "%C2%B2"), None, {404}),
        ("GET", conv_url(world, did, "/messages?before=x"), None, {400}),
        ("GET", conv_url(world, did, "/messages?after=1e5"), None, {400}),
        ("POST", conv_url(world, did, "/messages"), {}, {422}),
        ("POST", conv_url(world, did, "/messages"), {"content": "   "}, {422}),
        ("POST", conv_url(world, did, "/messages"), {"content": None}, {422}),
        ("POST", conv_url(world, did, "/messages"), {"content": {"a": 1}}, {400}),
        ("POST", conv_url(world, did, "/messages"), {"content": ["x"]}, {400}),
        ("POST", conv_url(world, did, "/messages"), {"content": too_long}, {400, 413, 422}),
        ("POST", conv_url(world, did, "/messages"), {"content": "a\x00b"}, {400}),
        ("POST", conv_url(world, did, "/messages"), {"content": "x", "private": "maybe"}, {400}),
        ("POST", conv_url(world, did, "/messages"), {"content": "x", "private": 1}, {400}),
        (
            "POST",
            conv_url(world, did, "/messages"),
            {"content": "x", "message_type": "activity"},
            {400},
        ),
        ("POST", conv_url(world, did, "/messages"), {"content": "x", "message_type": True}, {400}),
        ("POST", conv_url(world, did, "/messages"), {"content": "x", "message_type": 0}, {422}),
        (
            "POST",
            conv_url(world, did, "/messages"),
            {"content": "x", "content_type": "video"},
            {400},
        ),
        (
            "POST",
            conv_url(world, did, "/messages"),
            {"content": "x", "content_type": ["text"]},
            {400},
        ),
        (
            "POST",
            conv_url(world, did, "/messages"),
            {"content": "x", "content_attributes": [1]},
            {400},
        ),
        (
            "POST",
            conv_url(world, did, "/messages"),
            {"content": "x", "content_attributes": "{bad"},
            {400},
        ),
        (
            "POST",
            conv_url(world, did, "/messages"),
            {"content": "x", "content_attributes": "[1]"},
            {400},
        ),
        (
            "POST",
            conv_url(world, did, "/messages"),
            {"content": "x", "content_attributes": {"k": "v" * 20000}},
            {400},
        ),
        ("POST", conv_url(world, did, "/messages"), {"content": "x", "echo_id": "e" * 65}, {400}),
        ("POST", conv_url(world, did, "/messages"), {"content": "x", "echo_id": {"a": 1}}, {400}),
        ("POST", conv_url(world, "abc", "/messages"), {"content": "x"}, {404}),
        ("POST", conv_url(world, did, "/toggle_status"), {"status": "closed"}, {400}),
        ("POST", conv_url(world, did, "/toggle_status"), {"status": 1}, {400}),
        ("POST", conv_url(world, did, "/toggle_status"), {"status": ["open"]}, {400}),
        ("POST", conv_url(world, "abc", "/toggle_status"), {"status": "open"}, {404}),
        ("POST", conv_url(world, "abc", "/update_last_seen"), None, {404}),
        ("DELETE", conv_url(world, did), None, {405}),
        ("PUT", conv_url(world, did, "/messages"), {"content": "x"}, {405}),
    ]
    before = await snapshot(client)
    for method, url, body, expected in cases:
        status, got = await call(client, method, url, world.agent, body)
        assert status in expected, (method, url, body, status, got)
        assert isinstance(got, dict) and isinstance(got.get("error"), str), (url, got)

    # Malformed bodies, with the right token, on every POST endpoint.
    for suffix in ("/messages", "/toggle_status", "/toggle_typing_status", "/update_last_seen"):
        for raw in (b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"):
            resp = await client.post(
                conv_url(world, did, suffix),
                data=raw,
                headers={**hdr(world.agent), "Content-Type": "application/json"},
            )
            assert resp.status == 400, (suffix, raw, await resp.text())
            assert "error" in await resp.json()
    # A body over the server's limit.
    resp = await client.post(
        conv_url(world, did, "/messages"),
        data=b'{"content": "' + b"x" * (2 * 1024 * 1024) + b'"}',
        headers={**hdr(world.agent), "Content-Type": "application/json"},
    )
    assert resp.status == 413
    assert await snapshot(client) == before
    # The same requests from a good caller still work afterwards.
    await post_ok(
        client, f"{API}/accounts/{acc}/conversations/{did}/messages", world.agent, {"content": "ok"}
    )
    assert (await snapshot(client))[0] == before[0] + 1


async def test_concurrent_toggles_end_where_they_started(client: TestClient, world: World) -> None:
    """Each toggle decides under the row lock, so two at once are open -> resolved -> open."""
    visitor = await started(client, world.inbox["website_token"])
    did = display_id(visitor)
    url = conv_url(world, did, "/toggle_status")
    results = await asyncio.gather(*(call(client, "POST", url, world.agent) for _ in range(2)))
    assert sorted(body["payload"]["current_status"] for _, body in results) == ["open", "resolved"]
    assert (await conversation_row(client, world, did))["status"] == "open"
    changes = [
        orjson.loads(r["payload"])["data"]["status"]
        for r in await outbox_rows(client)
        if r["event"] == events.CONVERSATION_STATUS_CHANGED
    ]
    assert changes == ["resolved", "open"]


async def test_suspended_account_is_401(client: TestClient, world: World) -> None:
    async def suspend(conn: Any) -> None:
        await conn.execute(
            update(accounts).where(accounts.c.id == world.account["id"]).values(status="suspended")
        )

    await client.app[SERVICES].db.write(suspend)
    status, body = await call(client, "GET", conv_url(world), world.admin)
    assert status == 401
    assert body == {"error": "Account is suspended"}
