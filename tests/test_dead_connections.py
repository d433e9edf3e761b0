"""Issue 14, fault B: connections that die without a FIN. A TCP proxy in the test
(tests/blackhole.py) stands between a process and Redis or PostgreSQL and black-holes what
it holds: both sockets stay open, nothing more is forwarded. The process must notice within
its health deadline, log it, reconnect (the proxy serves new connections normally), and lose
nothing: every event reaches the sockets once, in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from server.settings import Settings
from server.store.db import Database
from tests.blackhole import BlackholeProxy, Link
from tests.cable import CableClient, agent_identifier, visitor_identifier
from tests.conftest import Visitor, World, build_world, temp_pg_database
from tests.procs import Process, RedisServer, base_env, web_process, worker_process

# Short health checks, so that a test waits seconds (settings, see server/settings.py).
HEALTH_INTERVAL = 0.5
HEALTH_TIMEOUT = 1.0
# Detection is due within HEALTH_INTERVAL + HEALTH_TIMEOUT of the hole; this much more is
# allowed for scheduling on a busy machine, and for the reconnect's backoff.
DETECT_MARGIN = 3.0


def subscriber(link: Link) -> bool:
    return link.sent(b"SUBSCRIBE")


@dataclass
class ProxiedDeploy:
    """A web process whose Redis is behind a black-hole proxy (`web`), a web process and a
    worker connected to Redis directly (`direct`, `worker`)."""

    tmp: Path
    world: World
    redis: RedisServer
    proxy: BlackholeProxy
    web: Process
    direct: Process
    worker: Process
    sessions: list[aiohttp.ClientSession]

    def session(self, proc: Process) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(base_url=proc.url)
        self.sessions.append(session)
        return session


@pytest.fixture(params=["postgresql", "sqlite"])
async def proxied(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ProxiedDeploy]:
    pg = None
    if request.param == "postgresql":
        pg = temp_pg_database()
        url = await pg.__aenter__()
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'scaled.db'}"
    db = Database(url)
    await db.start()
    world = await build_world(db)
    await db.close()
    redis = RedisServer(tmp_path / "redis").start()
    proxy = BlackholeProxy(redis.port).start()
    health = {"REDIS_HEALTH_INTERVAL": HEALTH_INTERVAL, "REDIS_TIMEOUT": HEALTH_TIMEOUT}
    env = base_env(url, tmp_path / "data", REDIS_URL=redis.url, **health)
    proxied_env = {**env, "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0"}
    # Each port is picked right before its process binds it: the proxy's own outgoing
    # connections take ephemeral ports meanwhile.
    procs: list[Process] = []
    try:
        for make in (
            lambda: web_process(proxied_env, tmp_path / "web-proxied.log"),
            lambda: web_process(env, tmp_path / "web-direct.log"),
            lambda: worker_process(env, tmp_path / "worker.log"),
        ):
            procs.append(make())
            procs[-1].start()
        web, direct, worker = procs
        deploy = ProxiedDeploy(tmp_path, world, redis, proxy, web, direct, worker, [])
        yield deploy
    finally:
        if len(procs) == 3:
            for session in deploy.sessions:
                await session.close()
        for proc in procs:
            proc.stop()
        proxy.stop()
        redis.stop()
        if pg is not None:
            await pg.__aexit__(None, None, None)
        for proc in procs:  # shown when the test failed
            print(f"--- {proc.log_path.name}\n{proc.output()[-6000:]}")


async def wait_until(pred, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    """Poll `pred` until true; returns the seconds it took."""
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def received_once_in_order(sock: CableClient, sent: list[str], timeout: float) -> None:
    await sock.wait_event("message.created", lambda d: d["content"] == sent[-1], timeout=timeout)
    await asyncio.sleep(0.3)  # a duplicate would arrive right behind
    got = [e["data"]["content"] for e in sock.events("message.created")]
    got = [c for c in got if c.startswith("m")]
    missing = sorted(set(sent) - set(got))
    assert not missing, f"lost {len(missing)} of {len(sent)} events: {missing[:10]}"
    assert got == sent, "out of order or duplicated"


async def test_blackholed_pubsub_connection(proxied: ProxiedDeploy) -> None:
    """The web process behind the proxy loses its pub/sub connection silently while messages
    are posted through the other web process: it notices within the health deadline, says so
    in its log, subscribes again and its sockets get every message, once, in order."""
    d = proxied
    visitor = await Visitor(d.session(d.direct), d.world.inbox["website_token"]).start()  # type: ignore[arg-type]
    await visitor.send("hello")
    vsock = await CableClient.connect(d.session(d.web))
    await vsock.subscribe(visitor_identifier(visitor.pubsub_token or ""))
    agent = d.world.agent
    asock = await CableClient.connect(d.session(d.web))
    await asock.subscribe(
        agent_identifier(agent["pubsub_token"], d.world.account["id"], agent["id"])
    )
    assert d.proxy.opened_since(0, subscriber), "the proxied web process is not subscribed"

    sent: list[str] = []

    async def post(i: int) -> None:
        text = f"m{i:03d}"
        resp = await visitor.post("messages", {"message": {"content": text}})
        assert resp.status == 200, await resp.text()
        sent.append(text)

    for i in range(10):
        await post(i)
        await asyncio.sleep(0.02)
    await received_once_in_order(vsock, sent, timeout=10)

    holed_at = time.monotonic()
    assert d.proxy.blackhole() >= 1  # every connection the web process holds to Redis
    i = 10
    # Posted while the web process is deaf, until it has subscribed again.
    reconnected = asyncio.ensure_future(
        wait_until(
            lambda: d.proxy.opened_since(holed_at, subscriber),
            HEALTH_INTERVAL + HEALTH_TIMEOUT + DETECT_MARGIN,
            "the web process subscribed again after the hole",
        )
    )
    while not reconnected.done() and i < 200:
        await post(i)
        i += 1
        await asyncio.sleep(0.05)
    took = await reconnected
    for _ in range(10):  # and after
        await post(i)
        i += 1
        await asyncio.sleep(0.02)

    for sock in (vsock, asock):
        await received_once_in_order(sock, sent, timeout=15)
    assert "Redis pub/sub connection dead" in d.web.output()
    print(f"black-holed pub/sub connection replaced after {took:.2f}s")
    await vsock.close()
    await asock.close()


def test_health_settings_are_validated() -> None:
    base = {"SECRET_KEY_BASE": "x" * 40}
    ok = Settings.from_env(base)
    assert (ok.redis_timeout, ok.redis_health_interval) == (3.0, 3.0)
    assert (ok.relay_lease_ttl, ok.relay_stall_timeout) == (5.0, 30.0)
    for name in (
        "REDIS_TIMEOUT",
        "REDIS_HEALTH_INTERVAL",
        "RELAY_LEASE_TTL",
        "RELAY_STALL_TIMEOUT",
    ):
        assert getattr(Settings.from_env({**base, name: "0.5"}), name.lower()) == 0.5
        for bad in ("0", "-1", "nan", "inf", "7200", "soon"):
            with pytest.raises(SystemExit, match=name):
                Settings.from_env({**base, name: bad})
