"""Sockets that catch up the way Chatwoot's clients do: when the server closes one (a
restart, a resync, a slow consumer), the client connects again, subscribes again and asks for
the messages after the last one it has (`GET ...messages?after=<id>`), then goes on live.

What a test checks on it: every message arrived (live or by catch-up), and on each
connection the live `message.created` events came in order, none twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.cable import CableClient

Connect = Callable[[], Awaitable[CableClient]]
FetchAfter = Callable[[int], Awaitable[list[dict[str, Any]]]]


class CatchingUpSocket:
    def __init__(self, connect: Connect, fetch_after: FetchAfter) -> None:
        self.connect = connect
        self.fetch_after = fetch_after
        self.messages: dict[int, str] = {}  # message id -> content, live or caught up
        self.live_runs: list[list[int]] = []  # per connection: ids of live message.created
        self.reconnects = 0
        self.sock: CableClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def start(self) -> CatchingUpSocket:
        self.sock = await self.connect()
        self.live_runs.append([])
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            sock = self.sock
            assert sock is not None
            seen = 0
            while True:
                for frame in sock.frames[seen:]:
                    message = frame.get("message")
                    if isinstance(message, dict) and message.get("event") == "message.created":
                        data = message["data"]
                        self.live_runs[-1].append(data["id"])
                        self.messages[data["id"]] = data["content"]
                        self._changed.set()
                seen = len(sock.frames)
                if sock.closed.is_set() and seen == len(sock.frames):
                    break
                sock._new.clear()
                await sock._new.wait()
            # Closed by the server: reconnect (retrying while the server is away), then ask
            # for what came after the newest message we have.
            while True:
                try:
                    self.sock = await self.connect()
                    break
                except Exception:
                    await asyncio.sleep(0.2)
            self.reconnects += 1
            self.live_runs.append([])
            for m in await self.fetch_after(max(self.messages, default=0)):
                self.messages[m["id"]] = m["content"]
            self._changed.set()

    def contents(self, prefix: str = "") -> list[str]:
        """Every message content with `prefix`, in message id order."""
        return [c for _, c in sorted(self.messages.items()) if c.startswith(prefix)]

    async def wait_for_content(self, content: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while content not in self.messages.values():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{content!r} not received within {timeout}s")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    def assert_live_in_order_once(self) -> None:
        for run in self.live_runs:
            assert run == sorted(set(run)), f"live events out of order or twice: {run}"

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.sock is not None:
            await self.sock.close()
