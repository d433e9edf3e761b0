"""/cable on the embedded default: protocol, subscriptions, events and their audiences."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient

from tests.cable import CableClient, agent_identifier, visitor_identifier
from tests.conftest import Visitor, World


async def _agent_socket(client: TestClient, world: World, who: str = "agent") -> CableClient:
    user = getattr(world, who)
    cable = await CableClient.connect(client)
    await cable.subscribe(agent_identifier(user["pubsub_token"], world.account["id"], user["id"]))
    return cable


async def test_welcome_subscribe_confirm_echoes_identifier(
    client: TestClient, visitor: Visitor
) -> None:
    cable = await CableClient.connect(client)
    ident = visitor_identifier(visitor.pubsub_token)
    frame = await cable.subscribe(ident)
    assert frame == {"identifier": ident, "type": "confirm_subscription"}
    presence = await cable.wait_event("presence.update")
    assert "users" in presence and "account_id" in presence
    await cable.close()


async def test_unknown_token_is_rejected(client: TestClient, world: World) -> None:
    cable = await CableClient.connect(client)
    await cable.subscribe(visitor_identifier("nope"), expect="reject_subscription")
    bad_user = agent_identifier(world.agent["pubsub_token"], world.account["id"], world.admin["id"])
    await cable.subscribe(bad_user, expect="reject_subscription")
    await cable.close()


async def test_message_reaches_visitor_and_agent_once(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    vcable = await CableClient.connect(client)
    await vcable.subscribe(visitor_identifier(visitor.pubsub_token))
    acable = await _agent_socket(client, world)
    sent = await visitor.send("hello there")
    for cable in (vcable, acable):
        data = await cable.wait_event("message.created", lambda d: d["id"] == sent["id"])
        assert data["content"] == "hello there"
        assert data["account_id"] == world.account["id"]
        assert data["conversation_id"] == sent["conversation_id"]
    await asyncio.sleep(0.2)
    for cable in (vcable, acable):
        assert (
            len([e for e in cable.events("message.created") if e["data"]["id"] == sent["id"]]) == 1
        )
    await vcable.close()
    await acable.close()


async def test_typing_skips_the_typer(client: TestClient, world: World, visitor: Visitor) -> None:
    await visitor.send("hi")
    vcable = await CableClient.connect(client)
    await vcable.subscribe(visitor_identifier(visitor.pubsub_token))
    acable = await _agent_socket(client, world)
    resp = await visitor.post("conversations/toggle_typing", {"typing_status": "on"})
    assert resp.status == 200
    data = await acable.wait_event("conversation.typing_on")
    assert data["user"]["type"] == "contact"
    await asyncio.sleep(0.2)
    assert vcable.events("conversation.typing_on") == []
    await vcable.close()
    await acable.close()


async def test_malformed_frames_do_not_break_the_socket(
    client: TestClient, visitor: Visitor
) -> None:
    cable = await CableClient.connect(client)
    for junk in [
        "not json",
        "[]",
        '{"command":"dance"}',
        '{"command":"subscribe"}',
        '{"command":"message","identifier":"x","data":"{"}',
    ]:
        await cable.ws.send_str(junk)
    ident = visitor_identifier(visitor.pubsub_token)
    await cable.subscribe(ident)
    await cable.close()
