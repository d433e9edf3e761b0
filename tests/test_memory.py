"""One client cannot grow the server's memory by hundreds of MB, and what a slow consumer
cost comes back once it is gone (issue 13 §2). Each attack runs against a real
`python -m server` process; its VmRSS is read from /proc. Both databases.

Bounds: at most PEAK_MB above the baseline during an attack, and back within SETTLED_MB of it
after the attacking sockets close. The baseline is taken after the same traffic has run
once with readers only, so caches and pools are warm. Before the fixes the same attacks
added 50-900 MB that stayed after the sockets closed."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.store.db import Database
from tests.cable import CableClient, agent_identifier, visitor_identifier
from tests.conftest import Visitor, World, build_world
from tests.procs import Process, base_env, web_process
from tests.test_slow_consumer import IdleClient, _client_frame, _server_frames

PEAK_MB = 30
SETTLED_MB = 12
BIG = 149_000  # characters: just under MAX_MESSAGE_LENGTH, each frame carries it twice


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@dataclass
class Served:
    web: Process
    world: World
    session: aiohttp.ClientSession

    @property
    def pid(self) -> int:
        assert self.web.proc is not None
        return self.web.proc.pid

    def rss(self) -> float:
        return rss_mb(self.pid)

    async def visitor(self) -> Visitor:
        return await Visitor(self.session, self.world.inbox["website_token"]).start()  # type: ignore[arg-type]

    def agent_identifier(self) -> str:
        w = self.world
        return agent_identifier(w.agent["pubsub_token"], w.account["id"], w.agent["id"])

    async def agent_post(self, display_id: int, content: str) -> None:
        url = f"/api/v1/accounts/{self.world.account['id']}/conversations/{display_id}/messages"
        resp = await self.session.post(
            url,
            json={"content": content},
            headers={"api_access_token": self.world.agent["access_token"]},
        )
        assert resp.status == 200, await resp.text()

    async def settles_below(self, limit: float, timeout: float = 20.0) -> float:
        """RSS once it is at most `limit` MB; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while (rss := self.rss()) > limit:
            assert time.monotonic() < deadline, f"RSS {rss:.1f} MB, still above {limit:.1f} MB"
            await asyncio.sleep(0.1)
        return rss


@pytest.fixture
async def served(db_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    db = Database(db_url)
    await db.start()
    world = await build_world(db)
    await db.close()
    web = web_process(base_env(db_url, tmp_path / "data"), tmp_path / "web.log").start()
    session = aiohttp.ClientSession(base_url=web.url)
    try:
        yield Served(web, world, session)
    finally:
        await session.close()
        web.stop()
        print(web.output()[-3000:])  # shown when the test failed


async def idle_socket(port: int, identifiers: list[str]) -> IdleClient:
    """A raw socket that subscribes to every identifier, then never reads again."""
    client = await IdleClient.connect("127.0.0.1", port, identifiers[0])
    loop = asyncio.get_running_loop()
    confirmed = 1
    for identifier in identifiers[1:]:
        frame = json.dumps({"command": "subscribe", "identifier": identifier})
        await loop.sock_sendall(client.sock, _client_frame(frame))

    def all_confirmed() -> bool:
        nonlocal confirmed
        frames = [json.loads(f) for f in _server_frames(client.buf)]
        confirmed += sum(f.get("type") == "confirm_subscription" for f in frames)
        assert not any(f.get("type") == "reject_subscription" for f in frames)
        return confirmed == len(identifiers)

    await client._read_until(all_confirmed)
    return client


async def attack(
    served: Served,
    display_id: int,
    idle_identifiers: list[list[str]],
    messages: int,
    content: int,
) -> tuple[float, float, float]:
    """(baseline, peak, settled) RSS in MB: the messages once with readers only, then again
    with sockets that never read, which are then closed."""
    for i in range(messages):  # warm-up: the same traffic, nobody stalls
        await served.agent_post(display_id, f"warm {i} " + "w" * content)
    baseline = served.rss()
    idle = [await idle_socket(served.web.port, ids) for ids in idle_identifiers]
    peak = served.rss()
    for i in range(messages):
        await served.agent_post(display_id, f"{i} " + "x" * content)
        peak = max(peak, served.rss())
    print(f"baseline {baseline:.1f} MB, peak {peak:.1f} MB")
    assert peak - baseline < PEAK_MB
    # Every idle socket overflowed its queue and was closed (the relay publishes after the
    # POST is answered: wait for the last ones).
    deadline = time.monotonic() + 10
    while served.web.output().count("closing slow consumer") < len(idle):
        assert time.monotonic() < deadline, served.web.output()[-2000:]
        await asyncio.sleep(0.05)
    for client in idle:
        client.close()
    settled = await served.settles_below(baseline + SETTLED_MB)
    return baseline, peak, settled


async def test_agent_socket_that_stops_reading_for_150_large_messages(served: Served) -> None:
    visitor = await served.visitor()
    display_id = (await visitor.send("hello"))["conversation_id"]
    reader = await CableClient.connect(served.session)
    await reader.subscribe(served.agent_identifier())
    baseline, peak, settled = await attack(
        served, display_id, [[served.agent_identifier()]], messages=150, content=BIG
    )
    print(f"agent socket: baseline {baseline:.1f}, peak {peak:.1f}, settled {settled:.1f} MB")
    # The reading socket got everything, in order, and was not dropped.
    await reader.wait_event("message.created", lambda d: d["content"].startswith("149 "))
    assert not reader.closed.is_set()
    await reader.close()


async def test_non_reading_visitor_sockets_with_many_subscriptions(served: Served) -> None:
    visitor = await served.visitor()
    display_id = (await visitor.send("hello"))["conversation_id"]
    token = visitor.pubsub_token
    assert token is not None
    # Eight identifiers for the same room (ActionCable keys a subscription by its identifier).
    identifiers = [
        json.dumps({"channel": "RoomChannel", "pubsub_token": token, "n": n}) for n in range(8)
    ]
    reader = await CableClient.connect(served.session)
    await reader.subscribe(visitor_identifier(token))
    baseline, peak, settled = await attack(
        served, display_id, [identifiers, identifiers], messages=10, content=BIG
    )
    print(f"visitor sockets: baseline {baseline:.1f}, peak {peak:.1f}, settled {settled:.1f} MB")
    await reader.wait_event("message.created", lambda d: d["content"].startswith("9 "))
    await reader.close()


async def test_patch_growth_does_not_reach_the_sockets(served: Served) -> None:
    """300 PATCHes of 8 KB each: refused past the cap, so the events about the contact stay
    small, and so do the queues of sockets that stop reading."""
    visitor = await served.visitor()
    await visitor.send("hello")
    statuses = []
    for i in range(300):
        resp = await visitor.patch("contact", {"custom_attributes": {f"k{i}": "x" * 8_000}})
        statuses.append(resp.status)
    assert statuses[:2] == [200, 200] and set(statuses[2:]) == {422}
    reader = await CableClient.connect(served.session)
    await reader.subscribe(served.agent_identifier())
    sizes: list[int] = []
    receive = reader.ws.receive

    async def measure(*args: Any, **kw: Any) -> Any:
        msg = await receive(*args, **kw)
        if isinstance(msg.data, str):
            sizes.append(len(msg.data))
        return msg

    reader.ws.receive = measure  # type: ignore[method-assign]
    baseline = served.rss()
    idle = [await idle_socket(served.web.port, [served.agent_identifier()]) for _ in range(2)]
    for i in range(30):
        await visitor.send(f"visitor message {i}")
    await reader.wait_event("message.created", lambda d: d["content"] == "visitor message 29")
    assert max(sizes) < 64 * 1024, max(sizes)  # was 1.6 MB per message.created
    assert served.rss() - baseline < PEAK_MB
    for client in idle:
        client.close()
    await reader.close()


async def test_many_non_reading_sockets_share_each_frame(served: Served) -> None:
    """Fifty agent sockets stop reading while large events go out: each one's backlog (queue
    and transport) references the event's bytes instead of holding its own copy."""
    visitor = await served.visitor()
    display_id = (await visitor.send("hello"))["conversation_id"]
    reader = await CableClient.connect(served.session)
    await reader.subscribe(served.agent_identifier())
    idle = [[served.agent_identifier()]] * 50
    baseline, peak, settled = await attack(served, display_id, idle, messages=40, content=BIG)
    print(f"50 sockets: baseline {baseline:.1f}, peak {peak:.1f}, settled {settled:.1f} MB")
    await reader.wait_event("message.created", lambda d: d["content"].startswith("39 "))
    await reader.close()
