"""An ActionCable test client: real WebSocket frames, the way @rails/actioncable speaks (or,
with `ext=True`, AnyCable's extended protocol as @anycable/core speaks it)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

SUBPROTOCOLS = ("actioncable-v1-json", "actioncable-unsupported")
EXT_SUBPROTOCOL = "actioncable-v1-ext-json"


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
        self.raw: list[str] = []  # the frames as they came, for byte-exact checks
        self._new = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self.closed = asyncio.Event()

    @classmethod
    async def connect(
        cls,
        session_or_client: Any,
        url: str = "/cable",
        *,
        ext: bool = False,
        headers: dict[str, str] | None = None,
    ) -> CableClient:
        protocols = (EXT_SUBPROTOCOL,) if ext else SUBPROTOCOLS
        ws = await session_or_client.ws_connect(url, protocols=protocols, headers=headers)
        assert ws.protocol == (EXT_SUBPROTOCOL if ext else "actioncable-v1-json")
        client = cls(ws)
        await client.wait_for(lambda f: f.get("type") == "welcome")
        return client

    @property
    def welcome(self) -> dict[str, Any]:
        return next(f for f in self.frames if f.get("type") == "welcome")

    def positions(self) -> dict[str, dict[str, Any]]:
        """The last stream position seen per stream_id, as @anycable/core keeps them."""
        out: dict[str, dict[str, Any]] = {}
        for frame in self.frames:
            if "stream_id" in frame:
                out[frame["stream_id"]] = {"epoch": frame["epoch"], "offset": frame["offset"]}
        return out

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self.raw.append(msg.data)
                    self.frames.append(json.loads(msg.data))
                    self._new.set()
        finally:
            self.closed.set()
            self._new.set()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def subscribe(
        self,
        identifier: str,
        *,
        expect: str = "confirm_subscription",
        history: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        frame: dict[str, Any] = {"command": "subscribe", "identifier": identifier}
        if history is not None:
            frame["history"] = history
        await self.send(frame)
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
