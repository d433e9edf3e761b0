"""Issue 3's scaled-out test: Redis, two web processes and a worker, all real processes.
A visitor socket lives on process 1, an agent socket on process 2."""

from __future__ import annotations

import asyncio

from tests.scaled import Deploy, deploy_fixture  # noqa: F401  (the fixture)


async def test_events_cross_processes(deploy: Deploy) -> None:
    web1, web2 = deploy.webs
    visitor = await deploy.visitor(web1)
    first = await visitor.send("first")  # the conversation exists before the sockets
    vsock = await deploy.visitor_socket(web1, visitor)
    asock = await deploy.agent_socket(web2)
    conv_path = f"conversations/{first['conversation_id']}"

    # A visitor message posted to process 2 reaches both sockets, once each.
    visitor_on_2 = await deploy.visitor(web2)
    visitor_on_2.auth_token = visitor.auth_token
    sent = await visitor_on_2.send("posted to process 2")
    for sock in (vsock, asock):
        data = await sock.wait_event("message.created", lambda d: d["id"] == sent["id"])
        assert data["content"] == "posted to process 2"
        assert data["account_id"] == deploy.world.account["id"]

    # Agent typing reaches the visitor and not the agent.
    await deploy.agent_post(web1, f"{conv_path}/toggle_typing_status", {"typing_status": "on"})
    typing = await vsock.wait_event("conversation.typing_on")
    assert typing["user"]["id"] == deploy.world.agent["id"]

    # Voice transcript turns arrive in order.
    turns = [f"turn {i}" for i in range(10)]
    for i, text in enumerate(turns):
        resp = await visitor.post(
            "conversations/voice_transcript",
            {"source": "user" if i % 2 == 0 else "ai", "content": text, "event_id": f"ev-{i}"},
        )
        assert resp.status == 200, await resp.text()
    for sock in (vsock, asock):
        await sock.wait_event("message.created", lambda d: d["content"] == "turn 9")
        got = [e["data"]["content"] for e in sock.events("message.created")]
        assert [c for c in got if c.startswith("turn ")] == turns

    # Resolving sends conversation.status_changed to the visitor.
    await deploy.agent_post(web2, f"{conv_path}/toggle_status", {"status": "resolved"})
    changed = await vsock.wait_event("conversation.status_changed")
    assert changed["status"] == "resolved"
    assert changed["id"] == first["conversation_id"]

    # Once everything settled: each message event came once, typing never echoed to the agent.
    await asyncio.sleep(0.3)
    for sock in (vsock, asock):
        ids = [e["data"]["id"] for e in sock.events("message.created")]
        assert len(ids) == len(set(ids)), ids
    assert asock.events("conversation.typing_on") == []

    # A visitor who reconnects catches up with after=.
    last_seen = sent["id"]
    await vsock.close()
    reply = await deploy.agent_post(
        web1, f"{conv_path}/messages", {"content": "while you were away"}
    )
    reply_id = (await reply.json())["id"]
    vsock = await deploy.visitor_socket(web2, visitor)
    resp = await visitor.get(f"messages?after={last_seen}")
    payload = (await resp.json())["payload"]
    assert [m["id"] for m in payload][-1] == reply_id
    assert "while you were away" in [m["content"] for m in payload]
    await vsock.close()
    await asock.close()
