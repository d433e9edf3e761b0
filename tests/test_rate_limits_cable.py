"""Issue 13 §4 on /cable, real WebSocket frames on both databases: a socket flooding
subscribes with unknown tokens, or update_presence, gets a rate_limited disconnect frame and
is closed; and a whole normal widget session (config, socket, messages, typing on every
keystroke, presence, reload) never meets any limit."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp.test_utils import TestClient

from server.ratelimit import RateLimits
from server.services import SERVICES
from tests.cable import CableClient, visitor_identifier
from tests.conftest import Visitor, World

DEFAULTS = RateLimits()


def disconnect(limit: str) -> dict[str, Any]:
    return {"type": "disconnect", "reason": "rate_limited", "reconnect": False, "limit": limit}


async def flood(cable: CableClient, frames: list[dict[str, Any]], deadline: float = 30.0) -> int:
    """Send frames until the server closes the socket (or all are sent); how many went."""
    end = time.monotonic() + deadline
    sent = 0
    for frame in frames:
        if cable.closed.is_set() or cable.ws.closed or time.monotonic() > end:
            break
        try:
            await cable.send(frame)
        except (ConnectionError, RuntimeError):
            break
        sent += 1
    return sent


async def test_failed_subscribe_flood_is_disconnected(client: TestClient, caplog: Any) -> None:
    """The issue: 3,000 subscribes with unknown tokens on one socket, 3,000 SQL reads and
    3,016 log lines, never disconnected."""
    caplog.set_level(logging.DEBUG, logger="server.hub.endpoint")
    cable = await CableClient.connect(client)
    frames = [
        {"command": "subscribe", "identifier": visitor_identifier(f"unknown-{i}")}
        for i in range(3000)
    ]
    await flood(cable, frames)
    limit = "failed_subscribes_per_socket"
    frame = await cable.wait_for(lambda f: f.get("type") == "disconnect", timeout=10)
    assert frame == disconnect(limit)
    await asyncio.wait_for(cable.closed.wait(), 5)
    rejects = [f for f in cable.frames if f.get("type") == "reject_subscription"]
    assert len(rejects) <= DEFAULTS.failed_subscribes_per_socket.count + 1  # type: ignore[union-attr]
    info = [
        r
        for r in caplog.records
        if r.levelno >= logging.INFO and "rejected subscription" in r.getMessage()
    ]
    assert len(info) == 1
    closing = [r for r in caplog.records if "closing /cable socket" in r.getMessage()]
    assert len(closing) == 1 and "LIMIT_FAILED_SUBSCRIBES_PER_SOCKET" in closing[0].getMessage()
    assert client.app[SERVICES].limiter.refused[limit] == 1


async def test_presence_flood_is_disconnected(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    """The issue: two sockets sent 104,600 update_presence frames in 10 s (a full core)."""
    ident = visitor_identifier(visitor.pubsub_token or "")
    cable = await CableClient.connect(client)
    await cable.subscribe(ident)
    presence = {
        "command": "message",
        "identifier": ident,
        "data": json.dumps({"action": "update_presence"}),
    }
    await flood(cable, [presence] * 100_000, deadline=10)
    frame = await cable.wait_for(lambda f: f.get("type") == "disconnect", timeout=10)
    assert frame == disconnect("presence_per_socket")
    await asyncio.wait_for(cable.closed.wait(), 5)
    # The subscribe counted too; a few more may pass as time goes by.
    answered = len(cable.events("presence.update"))
    assert answered <= DEFAULTS.presence_per_socket.count + 5  # type: ignore[union-attr]
    # Subscribing again and again (each a presence refresh and SQL reads) is bounded too.
    again = await CableClient.connect(client)
    frames = []
    for _ in range(200):
        frames.append({"command": "subscribe", "identifier": ident})
        frames.append({"command": "unsubscribe", "identifier": ident})
    await flood(again, frames, deadline=10)
    frame = await again.wait_for(lambda f: f.get("type") == "disconnect", timeout=10)
    assert frame == disconnect("presence_per_socket")


async def test_a_normal_widget_session_never_meets_a_limit(
    client: TestClient, world: World
) -> None:
    """Config, the socket, a few messages typed key by key (typing on/off at every
    keystroke, the worst a client does), presence, the agent typing back, ending the chat
    and starting another, reloads with the token. Counted: no 429, no disconnect."""
    token = world.inbox["website_token"]
    visitor = await Visitor(client, token).start()
    ident = visitor_identifier(visitor.pubsub_token or "")
    cable = await CableClient.connect(client)
    await cable.subscribe(ident)
    presence = {
        "command": "message",
        "identifier": ident,
        "data": json.dumps({"action": "update_presence"}),
    }
    statuses: list[int] = []

    async def call(resp: Any) -> Any:
        statuses.append(resp.status)
        assert resp.status == 200, await resp.text()
        return resp

    await call(await visitor.post("messages", {"message": {"content": "Hi"}}))
    for round_ in range(2):
        for text in ("Hello there", "I have a question about my order", "Thanks!"):
            for _ in text:
                await call(
                    await visitor.post("conversations/toggle_typing", {"typing_status": "on"})
                )
                await call(
                    await visitor.post("conversations/toggle_typing", {"typing_status": "off"})
                )
            if round_ == 1 and text == "Hello there":
                await call(await visitor.post("conversations", {"message": {"content": text}}))
            else:
                await call(await visitor.post("messages", {"message": {"content": text}}))
            await cable.send(presence)
            await call(await visitor.post("conversations/update_last_seen", {}))
        # Reload: the widget page and /config with the token, a new socket.
        for _ in range(3):
            await call(
                await client.get(
                    f"/widget?website_token={token}&cw_conversation={visitor.auth_token}"
                )
            )
            await call(
                await client.post(
                    f"/api/v1/widget/config?website_token={token}",
                    headers={"X-Auth-Token": visitor.auth_token or ""},
                )
            )
        await call(await visitor.get("conversations/toggle_status"))  # ends the chat

    # The agent typed back a few times too.
    display_id = (await (await visitor.get("conversations")).json())["id"]
    url = f"/api/v1/accounts/{world.account['id']}/conversations/{display_id}/toggle_typing_status"
    for status in ("on", "off") * 10:
        resp = await client.post(
            url,
            json={"typing_status": status},
            headers={"api_access_token": world.agent["access_token"]},
        )
        await call(resp)

    sent = await visitor.send("one more")
    await cable.wait_event("message.created", lambda d: d["id"] == sent["id"])
    assert not cable.closed.is_set()
    assert not [f for f in cable.frames if f.get("type") == "disconnect"]
    assert set(statuses) == {200}
    assert sum(client.app[SERVICES].limiter.refused.values()) == 0
    await cable.close()
