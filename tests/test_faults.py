"""Issue 3's fault tests: a worker killed mid-stream, Redis restarted mid-stream, a web
process stopped with SIGTERM. Nothing committed is lost; per-conversation order is kept."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest

from tests.cable import CableClient
from tests.conftest import Visitor
from tests.scaled import Deploy, deploy_fixture  # noqa: F401  (the fixture)

STREAM = 120


async def _stream(visitor: Visitor, count: int, rate: float, marks: dict[int, Any]) -> list[str]:
    """Post `count` messages at `rate`/s; call marks[i]() just before message i. Every
    message must be accepted: a 2xx means committed."""
    sent = []
    for i in range(count):
        if i in marks:
            await marks[i]()
        text = f"m{i:04d}"
        resp = await visitor.post("messages", {"message": {"content": text}})
        assert resp.status == 200, f"{text}: {resp.status} {await resp.text()}"
        sent.append(text)
        await asyncio.sleep(1 / rate)
    return sent


async def _ready(deploy: Deploy, timeout: float = 10) -> None:
    """Until every web process answers /readyz 200 (its bus subscribed again)."""
    deadline = time.monotonic() + timeout
    for web in deploy.webs:
        while (await deploy.session(web).get("/readyz")).status != 200:
            assert time.monotonic() < deadline, "a web process is not ready again"
            await asyncio.sleep(0.05)


async def _received_in_order(sock: CableClient, sent: list[str], timeout: float) -> None:
    await sock.wait_event("message.created", lambda d: d["content"] == sent[-1], timeout=timeout)
    got = [e["data"]["content"] for e in sock.events("message.created")]
    got = [c for c in got if c.startswith("m")]
    missing = sorted(set(sent) - set(got))
    assert not missing, f"lost {len(missing)} events: {missing[:10]}"
    assert got == sent, "out of order or duplicated"


async def test_worker_killed_mid_stream(deploy: Deploy) -> None:
    web1, web2 = deploy.webs
    visitor = await deploy.visitor(web1)
    await visitor.send("hello")
    vsock = await deploy.visitor_socket(web1, visitor)
    asock = await deploy.agent_socket(web2)

    async def kill_and_replace() -> None:
        deploy.worker.signal(signal.SIGKILL)
        deploy.worker.wait(5)
        await asyncio.to_thread(deploy.new_worker)

    sent = await _stream(visitor, STREAM, rate=100, marks={STREAM // 3: kill_and_replace})
    for sock in (vsock, asock):
        await _received_in_order(sock, sent, timeout=20)


async def test_redis_restarted_mid_stream(deploy: Deploy) -> None:
    """Redis restarts without its data: the streams' history is gone, so the web processes
    cannot catch their sockets up from it; they tell them to reconnect, and the clients catch
    up as Chatwoot's do (`after=`). Every message arrives; none twice or out of order live."""
    web1, web2 = deploy.webs
    visitor = await deploy.visitor(web1)
    first = await visitor.send("hello")
    vsock = await deploy.catching_up_visitor(web1, visitor)
    asock = await deploy.catching_up_agent(web2, first["conversation_id"])
    down_at: list[float] = []

    async def stop_redis() -> None:
        deploy.redis.stop()
        down_at.append(time.monotonic())

    async def start_redis() -> None:
        deploy.redis.start()

    third = STREAM // 3
    sent = await _stream(
        visitor, STREAM, rate=60, marks={third: stop_redis, 2 * third: start_redis}
    )
    assert down_at, "redis was never stopped"
    for sock in (vsock, asock):
        await sock.wait_for_content(sent[-1], timeout=30)
        assert sock.contents("m") == sent
        sock.assert_live_in_order_once()
        assert sock.reconnects >= 1, "the streams' epochs changed: sockets must resync"
        await sock.close()


@pytest.mark.parametrize("persistent", [False, True], ids=["redis-empty", "redis-kept"])
async def test_relay_behind_then_redis_restarts(deploy: Deploy, persistent: bool) -> None:
    """Issue 14, fault A: the worker dies and messages pile up in the outbox; then Redis
    dies too; Redis and a new worker come back together, and the relay publishes the backlog
    while the web processes are still reconnecting. No time window decides what is caught up:
    with Redis's data kept, the web processes read what they missed from the streams' history
    (no socket reconnects, every message live, once, in order); with it lost (new epochs),
    they resync their sockets, which catch up by `after=`. Either way nothing is lost."""
    web1, web2 = deploy.webs
    if persistent:  # the same port, now with an append-only file
        deploy.redis.stop()
        deploy.redis.persistent = True
        deploy.redis.start()
        await _ready(deploy)
    visitor = await deploy.visitor(web1)
    first = await visitor.send("hello")
    vsock = await deploy.catching_up_visitor(web1, visitor)
    asock = await deploy.catching_up_agent(web2, first["conversation_id"])

    async def kill_worker() -> None:
        deploy.worker.signal(signal.SIGKILL)
        deploy.worker.wait(5)

    async def kill_redis() -> None:
        deploy.redis.stop()

    async def both_back() -> None:
        deploy.redis.start()
        await asyncio.to_thread(deploy.new_worker)

    # The relay is 3 s behind when Redis goes (more than any "recent" window would cover).
    sent = await _stream(
        visitor, 120, rate=30, marks={10: kill_worker, 100: kill_redis, 110: both_back}
    )
    for sock in (vsock, asock):
        await sock.wait_for_content(sent[-1], timeout=30)
        assert sock.contents("m") == sent
        sock.assert_live_in_order_once()
        if persistent:
            assert sock.reconnects == 0, "the history covered the gap: no resync needed"
            assert sock.live_runs[0][-len(sent) :] == sorted(sock.messages)[-len(sent) :]
        else:
            assert sock.reconnects >= 1
        await sock.close()


async def test_sigterm_web_process(deploy: Deploy) -> None:
    web1, web2 = deploy.webs
    visitor = await deploy.visitor(web1)
    await visitor.send("hello")
    vsock = await deploy.visitor_socket(web1, visitor)

    # Writes in flight when the signal arrives: each one that got a 2xx must be kept.
    async def post(i: int) -> tuple[str, int]:
        try:
            resp = await visitor.post("messages", {"message": {"content": f"inflight {i}"}})
            return f"inflight {i}", resp.status
        except Exception:
            return f"inflight {i}", 0

    tasks = [asyncio.create_task(post(i)) for i in range(30)]
    await asyncio.sleep(0.02)
    started = time.monotonic()
    web1.signal(signal.SIGTERM)
    results = await asyncio.gather(*tasks)
    frame = await vsock.wait_for(lambda f: f.get("type") == "disconnect", timeout=5)
    assert frame == {"type": "disconnect", "reason": "server_restart", "reconnect": True}
    code = await asyncio.to_thread(web1.wait, 10)
    assert code == 0, web1.output()[-2000:]
    assert time.monotonic() - started < 3 + 3, "did not exit within its grace period"

    on_web2 = await deploy.visitor(web2)
    on_web2.auth_token = visitor.auth_token
    resp = await on_web2.get("messages?after=0")
    stored = {m["content"] for m in (await resp.json())["payload"]}
    committed = {text for text, status in results if status == 200}
    assert committed <= stored, f"lost: {committed - stored}"
