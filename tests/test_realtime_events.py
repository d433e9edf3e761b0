"""Realtime events and their audiences (issue 3 item 2) on the embedded default: the in-process
bus and relay, real HTTP writes, real /cable sockets, both databases. Every event checked here
carries the account_id of the conversation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp.test_utils import TestClient

from server.services import SERVICES
from server.store import outbox
from tests.cable import CableClient, agent_identifier, visitor_identifier
from tests.conftest import Visitor, World, build_world

API = "/api/v1"
SETTLE = 0.2  # after a later event has arrived, how long an earlier one may still be in flight


async def relayed(client: TestClient) -> None:
    """Wait until the relay has published every committed event, so a socket subscribed
    after this point cannot receive an event of an earlier write."""
    db = client.app[SERVICES].db
    for _ in range(500):
        if not await db.read(outbox.unpublished, 1):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the relay did not publish the outbox within 5 s")


async def agent_cable(client: TestClient, world: World, who: str = "agent") -> CableClient:
    user = getattr(world, who)
    cable = await CableClient.connect(client)
    await cable.subscribe(agent_identifier(user["pubsub_token"], world.account["id"], user["id"]))
    return cable


async def visitor_cable(client: TestClient, visitor: Visitor) -> CableClient:
    cable = await CableClient.connect(client)
    await cable.subscribe(visitor_identifier(visitor.pubsub_token))  # type: ignore[arg-type]
    return cable


async def agent_post(
    client: TestClient, world: World, user: dict[str, Any], display_id: int, action: str, body: Any
) -> Any:
    url = f"{API}/accounts/{world.account['id']}/conversations/{display_id}/{action}"
    resp = await client.post(url, json=body, headers={"api_access_token": user["access_token"]})
    text = await resp.text()
    assert resp.status == 200, text
    return await resp.json() if text else None


def names(cable: CableClient) -> list[str]:
    return [e["event"] for e in cable.events() if e["event"] != "presence.update"]


def assert_account_everywhere(account_id: int, *cables: CableClient) -> None:
    for cable in cables:
        events = cable.events()
        assert events
        for event in events:
            assert event["data"]["account_id"] == account_id, event


async def close_all(*cables: CableClient) -> None:
    for cable in cables:
        await cable.close()


# -- messages -------------------------------------------------------------------------------


async def check_first_widget_message_creates_conversation_then_message(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    vcable = await visitor_cable(client, visitor)
    acable = await agent_cable(client, world)
    admin = await agent_cable(client, world, "admin")
    first = await visitor.send("first words")
    resp = await visitor.post("messages", {"message": {"content": "second words", "echo_id": "e2"}})
    assert resp.status == 200, await resp.text()
    second = await resp.json()
    for cable in (vcable, acable, admin):
        created = await cable.wait_event("conversation.created")
        assert created["id"] == first["conversation_id"]
        assert created["inbox_id"] == world.inbox["id"]
        assert created["status"] == "open"
        assert created["meta"]["sender"]["id"] == visitor.contact_id
        assert created["contact_inbox"]["pubsub_token"] == visitor.pubsub_token
        msg = await cable.wait_event("message.created", lambda d: d["id"] == second["id"])
        assert msg["content"] == "second words"
        # The widget matches its pending message by echo_id: without it, it shows it twice.
        assert msg["echo_id"] == "e2"
        assert msg["message_type"] == 0
        assert msg["sender_type"] == "Contact"
        assert msg["conversation_id"] == first["conversation_id"]
        assert msg["conversation"]["last_activity_at"] > 0
        assert names(cable) == ["conversation.created", "message.created", "message.created"]
        assert [e["data"]["id"] for e in cable.events("message.created")] == [
            first["id"],
            second["id"],
        ]
    assert_account_everywhere(world.account["id"], vcable, acable, admin)
    await close_all(vcable, acable, admin)


async def check_conversation_created_by_the_prechat_form(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    vcable = await visitor_cable(client, visitor)
    acable = await agent_cable(client, world)
    resp = await visitor.post(
        "conversations",
        {"contact": {"name": "Jane", "email": "jane@x.io"}, "message": {"content": "from form"}},
    )
    assert resp.status == 200, await resp.text()
    conv = await resp.json()
    for cable in (vcable, acable):
        created = await cable.wait_event("conversation.created", lambda d: d["id"] == conv["id"])
        assert created["meta"]["sender"]["name"] == "Jane"
        msg = await cable.wait_event("message.created")
        assert msg["content"] == "from form"
    assert_account_everywhere(world.account["id"], vcable, acable)
    await close_all(vcable, acable)


async def check_agent_reply_reaches_visitor_and_agents(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    sent = await visitor.send("hello?")
    await relayed(client)
    vcable = await visitor_cable(client, visitor)
    acable = await agent_cable(client, world)
    admin = await agent_cable(client, world, "admin")
    reply = await agent_post(
        client, world, world.agent, sent["conversation_id"], "messages", {"content": "Hi, Agent A"}
    )
    for cable in (vcable, acable, admin):
        msg = await cable.wait_event("message.created", lambda d: d["id"] == reply["id"])
        assert msg["content"] == "Hi, Agent A"
        assert msg["message_type"] == 1
        assert msg["sender_type"] == "User"
        assert msg["sender"]["id"] == world.agent["id"]
        assert msg["private"] is False
    assert_account_everywhere(world.account["id"], vcable, acable, admin)
    await close_all(vcable, acable, admin)


async def check_private_notes_never_reach_the_visitor(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    sent = await visitor.send("hello?")
    await relayed(client)
    vcable = await visitor_cable(client, visitor)
    acable = await agent_cable(client, world)
    admin = await agent_cable(client, world, "admin")
    display_id = sent["conversation_id"]
    note = await agent_post(
        client, world, world.agent, display_id, "messages", {"content": "secret", "private": True}
    )
    public = await agent_post(
        client, world, world.admin, display_id, "messages", {"content": "public"}
    )
    for cable in (acable, admin):
        got = await cable.wait_event("message.created", lambda d: d["id"] == note["id"])
        assert got["private"] is True and got["content"] == "secret"
        await cable.wait_event("message.created", lambda d: d["id"] == public["id"])
    await vcable.wait_event("message.created", lambda d: d["id"] == public["id"])
    await asyncio.sleep(SETTLE)
    assert [e["data"]["id"] for e in vcable.events("message.created")] == [public["id"]]
    assert all("secret" not in str(f) for f in vcable.frames)
    assert_account_everywhere(world.account["id"], vcable, acable, admin)
    await close_all(vcable, acable, admin)


async def check_voice_transcript_turns_arrive_in_order(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    vcable = await visitor_cable(client, visitor)
    acable = await agent_cable(client, world)
    posted = []
    for i in range(20):
        source = "user" if i % 2 == 0 else "ai"
        resp = await visitor.post(
            "conversations/voice_transcript", {"source": source, "content": f"turn {i:02d}"}
        )
        assert resp.status == 200, await resp.text()
        posted.append((await resp.json())["id"])
    assert posted == sorted(posted)
    for cable in (vcable, acable):
        await cable.wait_event("message.created", lambda d: d["id"] == posted[-1])
        turns = [e["data"] for e in cable.events("message.created")]
        assert [t["id"] for t in turns] == posted
        assert [t["content"] for t in turns] == [f"turn {i:02d}" for i in range(20)]
        assert [t["message_type"] for t in turns] == [0, 1] * 10
        for turn in turns:
            assert turn["content_attributes"]["voice_transcript"] is True
        created = cable.events("conversation.created")
        assert len(created) == 1
        assert created[0]["data"]["additional_attributes"]["initiated_from"] == "voice_agent"
    assert_account_everywhere(world.account["id"], vcable, acable)
    await close_all(vcable, acable)


# -- read receipts --------------------------------------------------------------------------


async def check_update_last_seen_sends_read_receipts(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    sent = await visitor.send("hello?")
    await relayed(client)
    display_id = sent["conversation_id"]
    replies = [
        await agent_post(client, world, world.agent, display_id, "messages", {"content": text})
        for text in ("one", "two")
    ]
    note = await agent_post(
        client, world, world.agent, display_id, "messages", {"content": "n", "private": True}
    )
    await relayed(client)
    vcable = await visitor_cable(client, visitor)
    acable = await agent_cable(client, world)
    resp = await visitor.post("conversations/update_last_seen", {})
    assert resp.status == 200

    reply_ids = [r["id"] for r in replies]
    await acable.wait_event("conversation.read")
    for cable in (vcable, acable):
        for reply_id in reply_ids:
            data = await cable.wait_event("message.updated", lambda d, i=reply_id: d["id"] == i)
            assert data["status"] == "read"
            assert data["previous_changes"]["status"] == ["sent", "read"]
            assert data["conversation_id"] == display_id
        updated = {e["data"]["id"] for e in cable.events("message.updated")}
        assert updated == set(reply_ids)  # not the visitor's own message, not the note
        assert note["id"] not in updated and sent["id"] not in updated
    read = acable.events("conversation.read")
    assert len(read) == 1
    assert read[0]["data"]["id"] == display_id
    assert read[0]["data"]["contact_last_seen_at"] > 0
    await asyncio.sleep(SETTLE)
    assert vcable.events("conversation.read") == []

    # Seen again: nothing left to mark, so no more message.updated.
    resp = await visitor.post("conversations/update_last_seen", {})
    assert resp.status == 200
    await acable.wait_for(lambda _f: len(acable.events("conversation.read")) == 2)
    await asyncio.sleep(SETTLE)
    assert len(acable.events("message.updated")) == 2
    assert len(vcable.events("message.updated")) == 2
    assert_account_everywhere(world.account["id"], vcable, acable)
    await close_all(vcable, acable)


# -- status ---------------------------------------------------------------------------------


async def check_agent_resolving_and_visitor_ending_send_status_events(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    sent = await visitor.send("hello?")
    await relayed(client)
    display_id = sent["conversation_id"]
    vcable = await visitor_cable(client, visitor)
    acable = await agent_cable(client, world)

    body = await agent_post(
        client, world, world.agent, display_id, "toggle_status", {"status": "resolved"}
    )
    assert body["payload"]["current_status"] == "resolved"
    for cable in (vcable, acable):
        changed = await cable.wait_event("conversation.status_changed")
        assert changed["id"] == display_id and changed["status"] == "resolved"
        updated = await cable.wait_event("conversation.updated")
        assert updated["id"] == display_id and updated["status"] == "resolved"

    # The visitor writes again: the conversation reopens, and everyone hears it.
    again = await visitor.send("one more thing")
    for cable in (vcable, acable):
        await cable.wait_event("message.created", lambda d: d["id"] == again["id"])
        await cable.wait_event("conversation.status_changed", lambda d: d["status"] == "open")

    # The visitor ends the chat (GET toggle_status, the end_conversation feature).
    resp = await visitor.get("conversations/toggle_status")
    assert resp.status == 200, await resp.text()
    for cable in (vcable, acable):
        changed = [e["data"]["status"] for e in cable.events("conversation.status_changed")]
        await cable.wait_for(
            lambda _f, c=cable: len(c.events("conversation.status_changed")) == 3, timeout=5
        )
        changed = [e["data"]["status"] for e in cable.events("conversation.status_changed")]
        assert changed == ["resolved", "open", "resolved"]
        await cable.wait_for(lambda _f, c=cable: len(c.events("conversation.updated")) == 3)
        assert [e["data"]["status"] for e in cable.events("conversation.updated")] == [
            "resolved",
            "open",
            "resolved",
        ]
        # Each status_changed is followed by its conversation.updated.
        seq = [n for n in names(cable) if n.startswith("conversation.")]
        assert seq == ["conversation.status_changed", "conversation.updated"] * 3
    assert_account_everywhere(world.account["id"], vcable, acable)
    await close_all(vcable, acable)


async def check_resolving_twice_emits_once(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    sent = await visitor.send("hello?")
    await relayed(client)
    acable = await agent_cable(client, world)
    for _ in range(2):
        await agent_post(
            client,
            world,
            world.agent,
            sent["conversation_id"],
            "toggle_status",
            {"status": "resolved"},
        )
    marker = await agent_post(
        client, world, world.agent, sent["conversation_id"], "messages", {"content": "m"}
    )
    await acable.wait_event("message.created", lambda d: d["id"] == marker["id"])
    assert len(acable.events("conversation.status_changed")) == 1
    await acable.close()


# -- typing ---------------------------------------------------------------------------------


async def check_visitor_typing_reaches_agents_not_the_visitor(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    await visitor.send("hi")
    await relayed(client)
    vcable = await visitor_cable(client, visitor)
    acable = await agent_cable(client, world)
    admin = await agent_cable(client, world, "admin")
    for status in ("on", "off"):
        resp = await visitor.post("conversations/toggle_typing", {"typing_status": status})
        assert resp.status == 200
    for cable in (acable, admin):
        on = await cable.wait_event("conversation.typing_on")
        assert on["user"]["type"] == "contact" and on["user"]["id"] == visitor.contact_id
        assert on["is_private"] is False
        assert on["conversation"]["contact_inbox"]["pubsub_token"] == visitor.pubsub_token
        await cable.wait_event("conversation.typing_off")
        assert names(cable) == ["conversation.typing_on", "conversation.typing_off"]
    # A durable event after the typing: once it arrives, typing would have arrived too.
    marker = await visitor.send("marker")
    await vcable.wait_event("message.created", lambda d: d["id"] == marker["id"])
    await asyncio.sleep(SETTLE)
    assert names(vcable) == ["message.created"]
    assert_account_everywhere(world.account["id"], vcable, acable, admin)
    await close_all(vcable, acable, admin)


async def check_agent_typing_reaches_visitor_and_other_agents_not_the_typer(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    sent = await visitor.send("hi")
    await relayed(client)
    display_id = sent["conversation_id"]
    vcable = await visitor_cable(client, visitor)
    acable = await agent_cable(client, world)
    admin = await agent_cable(client, world, "admin")
    for status in ("on", "off"):
        await agent_post(
            client,
            world,
            world.agent,
            display_id,
            "toggle_typing_status",
            {"typing_status": status, "is_private": False},
        )
    for cable in (vcable, admin):
        on = await cable.wait_event("conversation.typing_on")
        assert on["user"] == {
            "id": world.agent["id"],
            "name": world.agent["name"],
            "available_name": world.agent["name"],
            "avatar_url": "",
            "type": "user",
            "availability_status": world.agent["availability"],
            "thumbnail": "",
        }
        assert on["is_private"] is False
        assert on["conversation"]["id"] == display_id
        await cable.wait_event("conversation.typing_off")
    marker = await agent_post(
        client, world, world.admin, display_id, "messages", {"content": "marker"}
    )
    await acable.wait_event("message.created", lambda d: d["id"] == marker["id"])
    await asyncio.sleep(SETTLE)
    assert names(acable) == ["message.created"]
    assert_account_everywhere(world.account["id"], vcable, acable, admin)
    await close_all(vcable, acable, admin)


async def check_private_agent_typing_never_reaches_the_visitor(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    sent = await visitor.send("hi")
    await relayed(client)
    display_id = sent["conversation_id"]
    vcable = await visitor_cable(client, visitor)
    admin = await agent_cable(client, world, "admin")
    await agent_post(
        client,
        world,
        world.agent,
        display_id,
        "toggle_typing_status",
        {"typing_status": "on", "is_private": True},
    )
    on = await admin.wait_event("conversation.typing_on")
    assert on["is_private"] is True
    marker = await agent_post(
        client, world, world.agent, display_id, "messages", {"content": "marker"}
    )
    await vcable.wait_event("message.created", lambda d: d["id"] == marker["id"])
    await asyncio.sleep(SETTLE)
    assert names(vcable) == ["message.created"]
    await close_all(vcable, admin)


# -- isolation ------------------------------------------------------------------------------


async def check_a_visitor_never_hears_another_visitor(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    other = await Visitor(client, world.inbox["website_token"]).start()
    await other.send("other's first")
    await relayed(client)
    mine = await visitor_cable(client, visitor)
    theirs = await visitor_cable(client, other)
    acable = await agent_cable(client, world)

    sent = await visitor.send("my message")
    display_id = sent["conversation_id"]
    await agent_post(
        client, world, world.agent, display_id, "toggle_typing_status", {"typing_status": "on"}
    )
    reply = await agent_post(client, world, world.agent, display_id, "messages", {"content": "r"})
    resp = await visitor.post("conversations/update_last_seen", {})
    assert resp.status == 200
    await agent_post(
        client, world, world.agent, display_id, "toggle_status", {"status": "resolved"}
    )
    await mine.wait_event("conversation.status_changed")
    assert {"conversation.typing_on", "message.created", "message.updated"} <= set(names(mine))

    # Events of the other visitor's own conversation still reach them; nothing else does.
    marker = await other.send("their marker")
    await theirs.wait_event("message.created", lambda d: d["id"] == marker["id"])
    await asyncio.sleep(SETTLE)
    assert [e["data"]["id"] for e in theirs.events("message.created")] == [marker["id"]]
    assert names(theirs) == ["message.created"]
    assert reply["id"] not in {e["data"].get("id") for e in theirs.events()}
    await acable.wait_event("message.created", lambda d: d["id"] == marker["id"])
    await close_all(mine, theirs, acable)


async def check_inbox_membership_and_account_scope_who_hears(
    client: TestClient, world: World, _visitor: Visitor
) -> None:
    """world.agent belongs to world.inbox only; world.admin administers the account; an admin
    of another account hears nothing of this one."""
    stranger = await build_world(client.app[SERVICES].db)
    member = await agent_cable(client, world)
    admin = await agent_cable(client, world, "admin")
    outsider = await agent_cable(client, stranger, "admin")

    elsewhere = await Visitor(client, world.other_inbox["website_token"]).start()
    away = await elsewhere.send("in the other inbox")
    await admin.wait_event("message.created", lambda d: d["id"] == away["id"])
    await admin.wait_event("conversation.created")
    resp = await elsewhere.post("conversations/toggle_typing", {"typing_status": "on"})
    assert resp.status == 200
    await admin.wait_event("conversation.typing_on")

    home = await Visitor(client, world.inbox["website_token"]).start()
    here = await home.send("in the agent's inbox")
    for cable in (member, admin):
        await cable.wait_event("message.created", lambda d: d["id"] == here["id"])
    await asyncio.sleep(SETTLE)
    assert [e["data"]["id"] for e in member.events("message.created")] == [here["id"]]
    assert len(member.events("conversation.created")) == 1
    assert member.events("conversation.typing_on") == []
    assert names(outsider) == []

    # The outsider's own account still reaches it.
    theirs = await Visitor(client, stranger.inbox["website_token"]).start()
    own = await theirs.send("stranger's visitor")
    got = await outsider.wait_event("message.created", lambda d: d["id"] == own["id"])
    assert got["account_id"] == stranger.account["id"]
    await asyncio.sleep(SETTLE)
    assert own["id"] not in {e["data"].get("id") for e in admin.events("message.created")}
    assert_account_everywhere(world.account["id"], member, admin)
    await close_all(member, admin, outsider)


# -- the tests: several checks per server and database ----------------------------------------


async def run_checks(client: TestClient, world: World, *checks: Any) -> None:
    """Each check gets a visitor of its own, after every earlier event was relayed and every
    earlier socket is gone (a PostgreSQL database per test is the expensive part)."""
    hub = client.app[SERVICES].hub
    assert hub is not None
    for check in checks:
        await relayed(client)
        deadline = time.monotonic() + 5
        while hub.connections:
            assert time.monotonic() < deadline, f"sockets left over: {hub.connections}"
            await asyncio.sleep(0.02)
        visitor = await Visitor(client, world.inbox["website_token"]).start()
        await check(client, world, visitor)


async def test_message_events(client: TestClient, world: World) -> None:
    await run_checks(
        client,
        world,
        check_first_widget_message_creates_conversation_then_message,
        check_conversation_created_by_the_prechat_form,
        check_agent_reply_reaches_visitor_and_agents,
        check_private_notes_never_reach_the_visitor,
    )


async def test_voice_transcript_turns_arrive_in_order(client: TestClient, world: World) -> None:
    await run_checks(client, world, check_voice_transcript_turns_arrive_in_order)


async def test_read_receipts(client: TestClient, world: World) -> None:
    await run_checks(client, world, check_update_last_seen_sends_read_receipts)


async def test_status_events(client: TestClient, world: World) -> None:
    await run_checks(
        client,
        world,
        check_agent_resolving_and_visitor_ending_send_status_events,
        check_resolving_twice_emits_once,
    )


async def test_typing_events(client: TestClient, world: World) -> None:
    await run_checks(
        client,
        world,
        check_visitor_typing_reaches_agents_not_the_visitor,
        check_agent_typing_reaches_visitor_and_other_agents_not_the_typer,
        check_private_agent_typing_never_reaches_the_visitor,
    )


async def test_isolation(client: TestClient, world: World) -> None:
    await run_checks(
        client,
        world,
        check_a_visitor_never_hears_another_visitor,
        check_inbox_membership_and_account_scope_who_hears,
    )
