"""An ActionCable test client: real WebSocket frames, the way @rails/actioncable speaks."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

SUBPROTOCOLS = ("actioncable-v1-json", "actioncable-unsupported")


def visitor_identifier(pubsub_token: str) -> str:
    return json.dumps(
        {"channel": "RoomChannel", "pubsub_token": pubsub_token}, separators=(",", ":")
    )


def agent_identifier(pubsub_token: str, account_id: int, user_id: int) -> str:
    return json.dumps(
        {
            "channel": "RoomChannel",
            "pubsub_token": pubsub_token,
            "account_id": account_id,
            "user_id": user_id,
        },
        separators=(",", ":"),
    )


class CableClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self._new = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self.closed = asyncio.Event()

    @classmethod
    async def connect(cls, session_or_client: Any, url: str = "/cable") -> CableClient:
        ws = await session_or_client.ws_connect(url, protocols=SUBPROTOCOLS)
        assert ws.protocol == "actioncable-v1-json"
        client = cls(ws)
        await client.wait_for(lambda f: f.get("type") == "welcome")
        return client

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self.frames.append(json.loads(msg.data))
                    self._new.set()
        finally:
            self.closed.set()
            self._new.set()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def subscribe(
        self, identifier: str, *, expect: str = "confirm_subscription"
    ) -> dict[str, Any]:
        await self.send({"command": "subscribe", "identifier": identifier})
        return await self.wait_for(
            lambda f: (
                f.get("identifier") == identifier
                and f.get("type") in ("confirm_subscription", "reject_subscription")
            ),
            check=lambda f: f["type"] == expect,
        )

    async def wait_for(self, pred: Any, timeout: float = 5.0, check: Any = None) -> dict[str, Any]:
        """The first frame (seen so far or arriving within `timeout`) matching `pred`."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for frame in self.frames[seen:]:
                if pred(frame):
                    if check is not None:
                        assert check(frame), frame
                    return frame
            seen = len(self.frames)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.closed.is_set() and seen == len(self.frames)):
                raise AssertionError(f"no matching frame within {timeout}s; got {self.frames[-5:]}")
            self._new.clear()
            try:
                await asyncio.wait_for(self._new.wait(), remaining)
            except TimeoutError:
                pass

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = [
            f["message"] for f in self.frames if "message" in f and isinstance(f["message"], dict)
        ]
        return [m for m in out if name is None or m.get("event") == name]

    async def wait_event(self, name: str, pred: Any = None, timeout: float = 5.0) -> dict[str, Any]:
        frame = await self.wait_for(
            lambda f: (
                isinstance(f.get("message"), dict)
                and f["message"].get("event") == name
                and (pred is None or pred(f["message"]["data"]))
            ),
            timeout,
        )
        return frame["message"]["data"]

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
