"""The voice sweeper in a scaled deploy (real processes: Redis, two web processes, a worker):
the web processes run no relay, so the worker, holding the relay lease, is the one process
that ends a call whose heartbeats stopped, and the agent on the other web process sees it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.store.db import Database
from tests.conftest import build_world, temp_pg_database
from tests.procs import RedisServer, base_env, web_process, worker_process
from tests.scaled import Deploy


@pytest.fixture(params=["postgresql", "sqlite"])
async def deploy(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Deploy]:
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
    env = base_env(url, tmp_path / "data", REDIS_URL=redis.url, VOICE_HEARTBEAT_TIMEOUT="1")
    webs = [web_process(env, tmp_path / f"web{i}.log") for i in (1, 2)]
    worker = worker_process(env, tmp_path / "worker1.log")
    found = Deploy(tmp_path, env, redis, webs, worker, world)
    try:
        for proc in [*webs, worker]:
            proc.start()
        yield found
    finally:
        for session in found.sessions:
            await session.close()
        for proc in [*webs, worker]:
            proc.stop()
        redis.stop()
        if pg is not None:
            await pg.__aexit__(None, None, None)


async def test_the_worker_ends_a_call_whose_heartbeats_stopped(deploy: Deploy) -> None:
    web1, web2 = deploy.webs
    visitor = await deploy.visitor(web1)
    agent = await deploy.agent_socket(web2)
    resp = await visitor.post("conversations/voice_heartbeat", {})
    assert resp.status == 200, await resp.text()
    started = await agent.wait_event("conversation.updated", lambda d: d["voice_call"] is not None)
    assert started["voice_call"]["live"] is True
    # No more heartbeats: the worker ends the call within the timeout and a sweep.
    ended = await agent.wait_event(
        "conversation.updated",
        lambda d: d["voice_call"] is not None and not d["voice_call"]["live"],
        timeout=20,
    )
    assert ended["voice_call"]["end_reason"] == "heartbeat_lost"
    deadline = time.monotonic() + 10
    while "ended 1 voice calls whose heartbeats stopped" not in deploy.worker.output():
        assert time.monotonic() < deadline, deploy.logs()
        await asyncio.sleep(0.1)
    for web in deploy.webs:
        assert "voice calls whose heartbeats stopped" not in web.output()
    resp = await visitor.get("conversations/voice_call_active")
    assert (await resp.json())["active"] is False
    await agent.close()
