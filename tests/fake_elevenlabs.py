"""A fake ElevenLabs API on 127.0.0.1 for the voice tests: the endpoints we call,
GET /v1/convai/conversation/get-signed-url (with switches for the failures we must survive)
and GET /v1/convai/conversations/{id} (a conversation's transcript, as a test sets it), and
the signing of ElevenLabs' post-call webhook (`webhook_signature`, the scheme the SDK's
construct_event checks: "t=<unix seconds>,v0=<hex HMAC-SHA256 of '<t>.<body>'>").

It checks what the real API checks (the `xi-api-key` header, the agent, the conversation) so
a test sees the server sent the stored key, and records every request it got."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

SIGNED_URL_PATH = "/v1/convai/conversation/get-signed-url"
CONVERSATION_PATH = "/v1/convai/conversations/{conversation_id}"


def webhook_signature(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The `ElevenLabs-Signature` header ElevenLabs sends with a webhook `body`."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v0={digest}"


def conversation_json(
    conversation_id: str,
    agent_id: str,
    turns: list[tuple[str, str]],
    *,
    status: str = "done",
    dynamic_variables: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An ElevenLabs conversation as GET /v1/convai/conversations/{id} answers it (and a
    post-call webhook's `data`): `turns` as (role "user" or "agent", message)."""
    start = int(time.time()) - 60
    return {
        "agent_id": agent_id,
        "conversation_id": conversation_id,
        "status": status,
        "transcript": [
            {"role": role, "message": message, "time_in_call_secs": i}
            for i, (role, message) in enumerate(turns)
        ],
        "metadata": {"start_time_unix_secs": start, "call_duration_secs": len(turns)},
        "has_audio": True,
        "has_user_audio": True,
        "has_response_audio": True,
        "has_auxiliary_audio": False,
        "conversation_initiation_client_data": {"dynamic_variables": dynamic_variables or {}},
    }


@dataclass
class FakeElevenLabs:
    """Serve with `async with FakeElevenLabs(api_key=..., agent_id=...) as fake:`;
    `fake.base_url` is what the app's elevenlabs_base_url should be."""

    api_key: str
    agent_id: str
    # "ok", "error" (answer `error_status`), "hang" (answer after `hang_seconds`), or
    # "trickle" (send the headers at once, then the answer a byte every `trickle_interval`:
    # every single read is quick, the whole answer is slow)
    mode: str = "ok"
    error_status: int = 500
    hang_seconds: float = 30.0
    trickle_interval: float = 0.1
    trickle_bytes_sent: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    # conversation id -> its JSON (conversation_json), what GET conversations/{id} answers
    conversations: dict[str, dict[str, Any]] = field(default_factory=dict)
    # called as each GET conversations/{id} arrives, before it is answered: a test changes
    # what ElevenLabs knows from one fetch to the next
    on_conversation: Callable[[], None] | None = None
    base_url: str = ""
    _runner: web.AppRunner | None = None

    def signed_url_for(self, agent_id: str) -> str:
        return f"wss://api.elevenlabs.io/v1/convai/conversation?agent_id={agent_id}&token=sig-123"

    async def _signed_url(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            {"headers": dict(request.headers), "query": dict(request.query), "path": request.path}
        )
        if self.mode == "trickle":
            return await self._trickle(request)
        if self.mode == "hang":
            await asyncio.sleep(self.hang_seconds)
        if self.mode == "error":
            return web.json_response(
                {"detail": {"status": "server_error", "message": "boom"}},
                status=self.error_status,
            )
        if request.headers.get("xi-api-key") != self.api_key:
            return web.json_response(
                {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}},
                status=401,
            )
        agent_id = request.query.get("agent_id")
        if agent_id != self.agent_id:
            return web.json_response(
                {"detail": {"status": "agent_not_found", "message": "no such agent"}},
                status=404,
            )
        return web.json_response({"signed_url": self.signed_url_for(agent_id)})

    async def _conversation(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            {"headers": dict(request.headers), "query": dict(request.query), "path": request.path}
        )
        if self.on_conversation is not None:
            self.on_conversation()
        if self.mode == "error":
            return web.json_response({"detail": {"message": "boom"}}, status=self.error_status)
        if request.headers.get("xi-api-key") != self.api_key:
            return web.json_response({"detail": {"status": "invalid_api_key"}}, status=401)
        found = self.conversations.get(request.match_info["conversation_id"])
        if found is None:
            return web.json_response({"detail": {"status": "conversation_not_found"}}, status=404)
        return web.json_response(found)

    def conversation_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].startswith("/v1/convai/conversations/")]

    async def _trickle(self, request: web.Request) -> web.StreamResponse:
        body = orjson.dumps({"signed_url": self.signed_url_for(self.agent_id)})
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        await response.prepare(request)
        for i in range(len(body)):
            try:
                await response.write(body[i : i + 1])
            except ConnectionError:
                break  # the client gave up: what a bounded caller does
            self.trickle_bytes_sent += 1
            await asyncio.sleep(self.trickle_interval)
        return response

    async def __aenter__(self) -> FakeElevenLabs:
        app = web.Application()
        app.router.add_get(SIGNED_URL_PATH, self._signed_url)
        app.router.add_get(CONVERSATION_PATH, self._conversation)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)  # port 0: a free port
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
