"""Graceful shutdown of a real `python -m server` process (issue 3 items 1 and 8): on SIGTERM
every socket gets {"type":"disconnect","reason":"server_restart","reconnect":true}, the process
exits 0 within its grace period, and every write answered 2xx before or during the shutdown is
there after a restart on the same data. Both databases."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.cable import SUBPROTOCOLS, agent_identifier, visitor_identifier

GRACE = 5.0
ROOT = Path(__file__).resolve().parent.parent
DEMO = re.compile(
    r"created demo data: account (\d+); website_token=(\S+); agent access_token=(\S+)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`python -m server` as a subprocess, its log read line by line as it comes."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.lines: list[str] = []
        self._new = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['PORT']}"

    async def start(self) -> Server:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server",
            cwd=str(ROOT),
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.get_running_loop().create_task(self._read())
        await self.wait_line(re.compile(r"serving on http://"), timeout=30)
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while True:
            line = await self.proc.stderr.readline()
            if not line:
                break
            self.lines.append(line.decode(errors="replace").rstrip())
            self._new.set()
        self._new.set()

    async def wait_line(self, pattern: re.Pattern[str], timeout: float = 10) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for line in self.lines[seen:]:
                match = pattern.search(line)
                if match:
                    return match
            seen = len(self.lines)
            remaining = deadline - time.monotonic()
            assert self.proc is not None
            if remaining <= 0 or (self.proc.returncode is not None and self._reader.done()):  # type: ignore[union-attr]
                raise AssertionError(f"no log line {pattern.pattern!r}; log:\n" + self.log)
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), remaining)

    @property
    def log(self) -> str:
        return "\n".join(self.lines[-60:])

    async def stop(self, timeout: float) -> int:
        """SIGTERM, then the exit code (killing it if it outlives `timeout`)."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"still running {timeout}s after SIGTERM; log:\n{self.log}"
            ) from None
        finally:
            await self.kill()

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 5)


def _env(db_url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(
        DATA_DIR=str(data_dir),
        PORT=str(_free_port()),
        HOST="127.0.0.1",
        SEED_DEMO="1",
        SHUTDOWN_GRACE=str(GRACE),
        LOG_LEVEL="INFO",
        MESSAGES_PER_MINUTE="100000",
        PYTHONUNBUFFERED="1",
    )
    if not db_url.startswith("sqlite"):
        env["DATABASE_URL"] = db_url  # SQLite: the default file under DATA_DIR
    return env


async def _subscribe(ws: aiohttp.ClientWebSocketResponse, identifier: str) -> None:
    deadline = time.monotonic() + 10
    welcomed = False
    while True:
        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        frame = msg.json()
        if frame.get("type") == "welcome" and not welcomed:
            welcomed = True
            await ws.send_json({"command": "subscribe", "identifier": identifier})
        elif frame.get("identifier") == identifier and "type" in frame:
            assert frame["type"] == "confirm_subscription", frame
            return


async def _disconnect_frame(ws: aiohttp.ClientWebSocketResponse, timeout: float) -> dict[str, Any]:
    """Frames up to the disconnect frame, then the close that follows it."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        assert msg.type == aiohttp.WSMsgType.TEXT, f"closed without a disconnect frame: {msg}"
        frame = msg.json()
        if frame.get("type") == "disconnect":
            closing = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
            assert closing.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
            ), closing
            return frame


async def test_sigterm_disconnects_sockets_exits_in_grace_and_keeps_writes(
    db_url: str, tmp_path: Path
) -> None:
    env = _env(db_url, tmp_path / "data")
    server = Server(env)
    restarted: Server | None = None
    try:
        await server.start()
        demo = await server.wait_line(DEMO)
        account_id, website_token, access_token = int(demo[1]), demo[2], demo[3]
        async with aiohttp.ClientSession(server.url) as http:
            resp = await http.post(f"/api/v1/widget/config?website_token={website_token}")
            assert resp.status == 200, await resp.text()
            config = await resp.json()
            auth = {"X-Auth-Token": config["website_channel_config"]["auth_token"]}
            pubsub_token = config["contact"]["pubsub_token"]
            resp = await http.get("/api/v1/profile", headers={"api_access_token": access_token})
            assert resp.status == 200, await resp.text()
            profile = await resp.json()
            assert profile["account_id"] == account_id

            messages = f"/api/v1/widget/messages?website_token={website_token}"
            committed: list[int] = []

            async def write(content: str) -> bool:
                try:
                    resp = await http.post(
                        messages, json={"message": {"content": content}}, headers=auth
                    )
                except (aiohttp.ClientError, OSError):
                    return False
                if resp.status != 200:
                    return False
                committed.append((await resp.json())["id"])
                return True

            assert await write("before the sockets")
            visitor_ws = await http.ws_connect("/cable", protocols=SUBPROTOCOLS)
            await _subscribe(visitor_ws, visitor_identifier(pubsub_token))
            agent_ws = await http.ws_connect("/cable", protocols=SUBPROTOCOLS)
            await _subscribe(
                agent_ws,
                agent_identifier(profile["pubsub_token"], account_id, profile["id"]),
            )
            for i in range(5):
                assert await write(f"before the signal {i}")

            # Writers keep going while the signal lands; whatever got a 200 must survive.
            stop_writing = asyncio.Event()

            async def writer(n: int) -> None:
                for i in range(25):
                    if stop_writing.is_set() or not await write(f"writer {n} #{i}"):
                        return

            writers = [asyncio.create_task(writer(n)) for n in range(3)]
            await asyncio.sleep(0.05)
            assert server.proc is not None
            signalled = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)

            for ws in (visitor_ws, agent_ws):
                frame = await _disconnect_frame(ws, GRACE)
                assert frame == {
                    "type": "disconnect",
                    "reason": "server_restart",
                    "reconnect": True,
                }
            code = await server.stop(GRACE + 3)
            assert code == 0, server.log
            assert time.monotonic() - signalled < GRACE + 3
            stop_writing.set()
            await asyncio.wait_for(asyncio.gather(*writers), 10)
            await visitor_ws.close()
            await agent_ws.close()
        assert "Traceback" not in "\n".join(server.lines), server.log
        assert len(committed) >= 6

        restarted = await Server({**env, "PORT": str(_free_port())}).start()
        assert not any(DEMO.search(line) for line in restarted.lines)  # not seeded twice
        async with aiohttp.ClientSession(restarted.url) as http:
            resp = await http.get(
                f"/api/v1/widget/messages?website_token={website_token}&after=0", headers=auth
            )
            assert resp.status == 200, await resp.text()
            stored = [m["id"] for m in (await resp.json())["payload"]]
        assert len(committed) < 100  # one page of after=0 holds them all
        missing = set(committed) - set(stored)
        assert not missing, f"committed writes lost across the restart: {sorted(missing)}"
        assert await restarted.stop(GRACE + 3) == 0, restarted.log
    finally:
        await server.kill()
        if restarted is not None:
            await restarted.kill()
