"""A scaled deploy on one machine: its own redis-server, two web processes and a worker,
sharing one database (a throwaway PostgreSQL database, or a SQLite file)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.store.db import Database
from tests.cable import CableClient, agent_identifier, visitor_identifier
from tests.catchup import CatchingUpSocket
from tests.conftest import Visitor, World, build_world, temp_pg_database
from tests.procs import Process, RedisServer, base_env, web_process, worker_process


@dataclass
class Deploy:
    tmp: Path
    env: dict[str, str]
    redis: RedisServer
    webs: list[Process]
    worker: Process
    world: World
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)
    extra: list[Process] = field(default_factory=list)

    def session(self, web: Process) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(base_url=web.url)
        self.sessions.append(session)
        return session

    def new_worker(self) -> Process:
        proc = worker_process(self.env, self.tmp / f"worker{len(self.extra) + 2}.log")
        self.extra.append(proc)
        return proc.start()

    async def visitor(self, web: Process) -> Visitor:
        return await Visitor(self.session(web), self.world.inbox["website_token"]).start()  # type: ignore[arg-type]

    async def visitor_socket(self, web: Process, visitor: Visitor) -> CableClient:
        cable = await CableClient.connect(self.session(web))
        await cable.subscribe(visitor_identifier(visitor.pubsub_token or ""))
        return cable

    async def agent_socket(self, web: Process, who: str = "agent") -> CableClient:
        user = getattr(self.world, who)
        cable = await CableClient.connect(self.session(web))
        await cable.subscribe(
            agent_identifier(user["pubsub_token"], self.world.account["id"], user["id"])
        )
        return cable

    async def catching_up_visitor(self, web: Process, visitor: Visitor) -> CatchingUpSocket:
        """A visitor socket that reconnects and catches up like Chatwoot's widget."""

        async def fetch_after(after: int) -> list[dict[str, Any]]:
            return await _pages(lambda a: visitor.get(f"messages?after={a}"), after)

        return await CatchingUpSocket(
            lambda: self.visitor_socket(web, visitor), fetch_after
        ).start()

    async def catching_up_agent(self, web: Process, display_id: int) -> CatchingUpSocket:
        """An agent socket that reconnects and catches up the conversation `display_id`."""
        user = self.world.agent
        url = f"/api/v1/accounts/{self.world.account['id']}/conversations/{display_id}/messages"
        session = self.session(web)

        async def fetch_after(after: int) -> list[dict[str, Any]]:
            return await _pages(
                lambda a: session.get(
                    f"{url}?after={a}", headers={"api_access_token": user["access_token"]}
                ),
                after,
            )

        return await CatchingUpSocket(lambda: self.agent_socket(web), fetch_after).start()

    async def agent_post(
        self, web: Process, path: str, body: dict[str, Any], who: str = "agent"
    ) -> Any:
        user = getattr(self.world, who)
        url = f"/api/v1/accounts/{self.world.account['id']}/{path}"
        resp = await self.session(web).post(
            url, json=body, headers={"api_access_token": user["access_token"]}
        )
        assert resp.status == 200, await resp.text()
        return resp

    def logs(self) -> str:
        out = []
        for proc in [*self.webs, self.worker, *self.extra]:
            out.append(f"--- {proc.module} {proc.log_path.name}\n{proc.output()[-4000:]}")
        return "\n".join(out)


async def _pages(get: Any, after: int) -> list[dict[str, Any]]:
    """Every message after `after`, a page at a time (the API pages `after=` by 100)."""
    out: list[dict[str, Any]] = []
    while True:
        resp = await get(after)
        assert resp.status == 200, await resp.text()
        page = (await resp.json())["payload"]
        out.extend(page)
        if len(page) < 100:
            return out
        after = page[-1]["id"]


@pytest.fixture(name="deploy", params=["postgresql", "sqlite"])
async def deploy_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Deploy]:
    if request.param == "postgresql":
        pg = temp_pg_database()
        url = await pg.__aenter__()
    else:
        pg = None
        url = f"sqlite+aiosqlite:///{tmp_path / 'scaled.db'}"
    db = Database(url)
    await db.start()
    world = await build_world(db)
    await db.close()
    redis = RedisServer(tmp_path / "redis").start()
    env = base_env(url, tmp_path / "data", REDIS_URL=redis.url)
    webs = [web_process(env, tmp_path / f"web{i}.log") for i in (1, 2)]
    worker = worker_process(env, tmp_path / "worker1.log")
    deploy = Deploy(tmp_path, env, redis, webs, worker, world)
    try:
        for proc in [*webs, worker]:
            proc.start()
        yield deploy
    finally:
        for session in deploy.sessions:
            await session.close()
        for proc in [*webs, worker, *deploy.extra]:
            proc.stop()
        redis.stop()
        if pg is not None:
            await pg.__aexit__(None, None, None)
        print(deploy.logs())  # captured: pytest shows it only when the test failed
