"""Issue 14 item 4, with the reference client: the real @anycable/core (tests/js, in Node)
on the extended protocol against our /cable, through a TCP proxy standing for a load
balancer. Its connection is cut while messages are posted; it reconnects and must have
received exactly the missed messages, in order, once.

- Scaled deploy (PostgreSQL, Redis, two web processes, a worker): the client is cut from
  web 1 and comes back on web 2, which restores its session and serves its history from
  Redis (both shared). Then web 2 stops (SIGTERM: a `disconnect` frame, after which the
  client drops its session id) and the client comes back on web 1 without a session: it
  resubscribes with its stream positions and is sent what it missed all the same.
- Embedded default (SQLite, one process, in-process bus and session store): cut and back
  to the same process."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.store.db import Database
from tests.blackhole import BlackholeProxy
from tests.conftest import Visitor, build_world
from tests.procs import ROOT, Process, base_env, web_process
from tests.scaled import Deploy, deploy_fixture  # noqa: F401  (the fixture)

JS = ROOT / "tests" / "js"
NODE = shutil.which("node")


@pytest.fixture(scope="session")
def node_client() -> Path:
    """The Node driver, its packages installed as .ci/run does (`npm ci` in tests/js)."""
    if NODE is None:
        pytest.fail("node is not installed (Node 20 and npm; .ci/run expects them)")
    if not (JS / "node_modules" / "@anycable" / "core").exists():
        npm = shutil.which("npm")
        assert npm, "npm is not installed"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS, check=True, timeout=300)
    return JS / "resume_client.mjs"


class NodeClient:
    """The Node process and the lines it printed."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self.stderr = b""
        self._new = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(cls, script: Path, url: str, pubsub_token: str) -> NodeClient:
        proc = await asyncio.create_subprocess_exec(
            NODE or "node",
            str(script),
            url,
            pubsub_token,
            cwd=JS,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.lines.append(json.loads(line))
            self._new.set()
        self._new.set()

    async def wait_for(self, pred: Any, timeout: float = 10.0, start: int = 0) -> dict[str, Any]:
        """The first line from `start` on (printed so far or within `timeout`) matching."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines[start:]:
                if pred(line):
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.returncode is not None:
                raise AssertionError(f"no such line in {timeout}s: {self.lines[-8:]}")
            self._new.clear()
            try:
                await asyncio.wait_for(self._new.wait(), remaining)
            except TimeoutError:
                pass

    def count(self, kind: str) -> int:
        return sum(1 for line in self.lines if line["type"] == kind)

    def contents(self) -> list[str]:
        return [
            line["content"]
            for line in self.lines
            if line["type"] == "message" and line["event"] == "message.created"
        ]

    def offsets(self) -> list[int]:
        return [
            line["meta"]["offset"]
            for line in self.lines
            if line["type"] == "message" and line["meta"] is not None
        ]

    async def stop(self) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._reader.cancel()
        assert self.proc.stderr is not None
        self.stderr = await self.proc.stderr.read()


async def send(visitor: Visitor, content: str) -> None:
    await visitor.send(content)


async def wait_content(client: NodeClient, content: str) -> None:
    await client.wait_for(lambda line: line["type"] == "message" and line.get("content") == content)


def history_received(line: dict[str, Any]) -> bool:
    """A history request confirmed. (@anycable/core tells the channel only once it is
    connected: the one of the first subscribe may not show.)"""
    return line["type"] == "info" and line["event"] == "history_received"


def assert_exactly(client: NodeClient, expected: list[str]) -> None:
    got = client.contents()
    assert got == expected, f"got {got}\n{client.lines}"
    offsets = client.offsets()
    assert offsets == sorted(offsets) and len(offsets) == len(set(offsets)), offsets


@pytest.mark.parametrize("deploy", ["postgresql"], indirect=True)
async def test_the_real_client_resumes_on_the_other_process(
    deploy: Deploy, node_client: Path
) -> None:
    web1, web2 = deploy.webs
    visitor = await deploy.visitor(web1)
    visitor_on_2 = await deploy.visitor(web2)
    visitor_on_2.auth_token = visitor.auth_token
    proxy = BlackholeProxy(web1.port).start()
    client = await NodeClient.start(
        node_client, f"ws://127.0.0.1:{proxy.port}/cable", visitor.pubsub_token or ""
    )
    try:
        await client.wait_for(lambda line: line["type"] == "subscribed")
        sent = [f"m{n}" for n in range(1, 4)]
        for content in sent:
            await send(visitor, content)
        await wait_content(client, "m3")

        # Cut, on web 1; posted while away (to both processes); back through web 2.
        proxy.refuse = True
        assert proxy.cut() == 1
        await client.wait_for(lambda line: line["type"] == "disconnect")
        for n in range(4, 10):
            sent.append(f"m{n}")
            await send(visitor if n % 2 else visitor_on_2, f"m{n}")
        proxy.upstream_port = web2.port
        mark = len(client.lines)
        proxy.refuse = False
        await client.wait_for(lambda line: line["type"] == "connect" and line["restored"])
        await client.wait_for(history_received, start=mark)
        sent.append("m10")
        await send(visitor, "m10")
        await wait_content(client, "m10")
        async with aiohttp.ClientSession() as http:
            metrics = await (await http.get(f"{web2.url}/metrics")).text()
        assert "chat_cable_sessions_restored_total 1.0" in metrics
        assert 'chat_cable_history_requests_total{result="confirmed"} 1.0' in metrics

        # Web 2 stops: a disconnect frame, the client forgets its session and comes back to
        # web 1 by subscribing with its positions.
        proxy.refuse = True
        web2.signal(signal.SIGTERM)
        await client.wait_for(
            lambda line: line["type"] == "disconnect" and line["reason"] == "server_restart"
        )
        for n in range(11, 15):
            sent.append(f"m{n}")
            await send(visitor, f"m{n}")
        proxy.upstream_port = web1.port
        mark = len(client.lines)
        proxy.refuse = False
        await client.wait_for(
            lambda line: line["type"] == "connect" and line["reconnect"] and not line["restored"]
        )
        await client.wait_for(history_received, start=mark)
        sent.append("m15")
        await send(visitor, "m15")
        await wait_content(client, "m15")
        await asyncio.sleep(0.3)  # a duplicate would be right behind
        assert_exactly(client, sent)
        assert not any(
            line["type"] == "info" and line["event"] == "history_not_found" for line in client.lines
        )
    finally:
        await client.stop()
        proxy.stop()
        print(client.lines, client.stderr.decode(errors="replace"))


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[tuple[Process, Any]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    db = Database(url)
    await db.start()
    world = await build_world(db)
    await db.close()
    env = base_env(url, tmp_path / "data", REDIS_URL="")
    web = web_process(env, tmp_path / "web.log").start()
    try:
        yield web, world
    finally:
        web.stop()
        print(web.output()[-4000:])


async def test_the_real_client_resumes_on_the_embedded_default(
    embedded: tuple[Process, Any], node_client: Path
) -> None:
    web, world = embedded
    async with aiohttp.ClientSession(base_url=web.url) as http:
        visitor = await Visitor(http, world.inbox["website_token"]).start()  # type: ignore[arg-type]
        proxy = BlackholeProxy(web.port).start()
        client = await NodeClient.start(
            node_client, f"ws://127.0.0.1:{proxy.port}/cable", visitor.pubsub_token or ""
        )
        try:
            await client.wait_for(lambda line: line["type"] == "subscribed")
            sent = ["m1", "m2"]
            for content in sent:
                await send(visitor, content)
            await wait_content(client, "m2")
            proxy.refuse = True
            proxy.cut()
            await client.wait_for(lambda line: line["type"] == "disconnect")
            for n in range(3, 8):
                sent.append(f"m{n}")
                await send(visitor, f"m{n}")
            mark = len(client.lines)
            proxy.refuse = False
            await client.wait_for(lambda line: line["type"] == "connect" and line["restored"])
            await client.wait_for(history_received, start=mark)
            sent.append("m8")
            await send(visitor, "m8")
            await wait_content(client, "m8")
            await asyncio.sleep(0.3)  # a duplicate would be right behind
            assert_exactly(client, sent)
        finally:
            await client.stop()
            proxy.stop()
            print(client.lines, client.stderr.decode(errors="replace"))
