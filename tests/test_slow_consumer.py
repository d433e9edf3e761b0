"""A socket that stops reading is closed once its bounded send queue is full, and never delays
the sockets that do read (issue 3 item 5). The idle client is a raw TCP socket that does the
WebSocket handshake, subscribes, then never reads again, with a tiny receive buffer so the
kernel buffers fill quickly. Both databases."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.services import SERVICES
from server.settings import Settings
from tests.cable import CableClient, agent_identifier, visitor_identifier
from tests.conftest import Visitor, World, build_world, make_settings

QUEUE = 8
CONTENT = 60_000  # characters per message: each frame carries it twice (content + processed)
MAX_MESSAGES = 300


def _client_frame(text: str) -> bytes:
    """One masked text frame, as a browser sends it."""
    payload = text.encode()
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x81, 0x80 | n])
    elif n < 65536:
        head = bytes([0x81, 0x80 | 126]) + struct.pack("!H", n)
    else:
        head = bytes([0x81, 0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _server_frames(buf: bytearray) -> list[bytes]:
    """Pop the complete (unmasked, unfragmented) server frames off `buf`."""
    out = []
    while len(buf) >= 2:
        n = buf[1] & 0x7F
        offset = 2
        if n == 126:
            if len(buf) < 4:
                break
            n, offset = struct.unpack("!H", buf[2:4])[0], 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, offset = struct.unpack("!Q", buf[2:10])[0], 10
        if len(buf) < offset + n:
            break
        out.append(bytes(buf[offset : offset + n]))
        del buf[: offset + n]
    return out


class IdleClient:
    """Handshakes, subscribes, and from then on never reads."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    @classmethod
    async def connect(cls, host: str, port: int, identifier: str) -> IdleClient:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # before connect: small window
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /cable HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        client = cls(sock)
        head = await client._read_until(lambda: b"\r\n\r\n" in client.buf)
        status, _, rest = bytes(client.buf).partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 101"), head
        assert b"actioncable-v1-json" in status.lower()
        client.buf = bytearray(rest)
        frames: list[dict[str, Any]] = []

        def seen(kind: str) -> bool:
            frames.extend(json.loads(f) for f in _server_frames(client.buf))
            return any(f.get("type") == kind for f in frames)

        await client._read_until(lambda: seen("welcome"))
        await loop.sock_sendall(
            sock, _client_frame(json.dumps({"command": "subscribe", "identifier": identifier}))
        )
        await client._read_until(lambda: seen("confirm_subscription"))
        return client

    async def _read_until(self, done: Any, timeout: float = 5.0) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"handshake stalled: {bytes(self.buf[:200])!r}"
            chunk = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), remaining)
            assert chunk, "server closed the socket during the handshake"
            self.buf += chunk
        return bytes(self.buf)

    async def dropped_by_server(self, timeout: float = 10.0) -> bool:
        """Read everything left; True once the server has closed the connection."""
        loop = asyncio.get_running_loop()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = await asyncio.wait_for(
                    loop.sock_recv(self.sock, 1 << 20), deadline - time.monotonic()
                )
            except (ConnectionResetError, BrokenPipeError):
                return True
            except TimeoutError:
                return False
            if not chunk:
                return True
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize(
    "limits",
    [
        {"send_queue_size": QUEUE},
        # Bounded by bytes alone: far more frames allowed than the test ever sends.
        {"send_queue_size": 100_000, "send_queue_bytes": 256 * 1024},
    ],
    ids=["frames", "bytes"],
)
async def test_a_socket_that_never_reads_is_dropped_and_delays_no_one(
    aiohttp_client: Any, db_url: str, tmp_path: Any, limits: dict[str, int]
) -> None:
    settings = make_settings(db_url, tmp_path, messages_per_minute=100_000, **limits)
    client: TestClient = await aiohttp_client(create_app(settings))
    hub = client.app[SERVICES].hub
    assert hub is not None
    world: World = await build_world(client.app[SERVICES].db)
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    first = await visitor.send("hello")
    display_id = first["conversation_id"]

    reader = await CableClient.connect(client)
    await reader.subscribe(visitor_identifier(visitor.pubsub_token))  # type: ignore[arg-type]
    agent = await CableClient.connect(client)
    await agent.subscribe(
        agent_identifier(world.agent["pubsub_token"], world.account["id"], world.agent["id"])
    )
    idle = await IdleClient.connect(
        client.server.host,
        client.server.port,  # type: ignore[arg-type]
        visitor_identifier(visitor.pubsub_token),  # type: ignore[arg-type]
    )
    assert len(hub.connections) == 3
    assert hub.slow_consumers == 0

    url = f"/api/v1/accounts/{world.account['id']}/conversations/{display_id}/messages"
    headers = {"api_access_token": world.agent["access_token"]}
    posted: list[int] = []
    for i in range(MAX_MESSAGES):
        content = f"{i:04d} " + "x" * CONTENT
        resp = await client.post(url, json={"content": content}, headers=headers)
        assert resp.status == 200, await resp.text()
        posted.append((await resp.json())["id"])
        # The reading sockets get each message while the idle one backs up.
        for cable in (reader, agent):
            await cable.wait_event("message.created", lambda d: d["id"] == posted[-1])
        if hub.slow_consumers:
            break
    assert hub.slow_consumers == 1, f"no overflow after {len(posted)} messages"
    if "send_queue_bytes" not in limits:
        assert len(posted) > QUEUE  # the kernel buffers and the queue really filled first

    # A few more after the drop still reach the readers, in order, and nobody else overflows.
    for i in range(5):
        resp = await client.post(url, json={"content": f"after {i}"}, headers=headers)
        assert resp.status == 200
        posted.append((await resp.json())["id"])
    for cable in (reader, agent):
        await cable.wait_event("message.created", lambda d: d["id"] == posted[-1])
        got = [e["data"]["id"] for e in cable.events("message.created")]
        assert [i for i in got if i != first["id"]] == posted  # (the first may be relayed late)
        assert not cable.closed.is_set()
    assert hub.slow_consumers == 1

    assert await idle.dropped_by_server()
    deadline = time.monotonic() + 5
    while len(hub.connections) != 2:
        assert time.monotonic() < deadline, hub.connections
        await asyncio.sleep(0.02)
    subscribed = {sub.conn for subs in hub.channels.values() for sub in subs}
    assert subscribed == hub.connections
    idle.close()
    await reader.close()
    await agent.close()


def test_send_queue_bytes_setting() -> None:
    base = {"SECRET_KEY_BASE": "x" * 40}
    assert Settings.from_env(base).send_queue_bytes == 4 * 1024 * 1024
    assert Settings.from_env({**base, "SEND_QUEUE_BYTES": "1048576"}).send_queue_bytes == 1 << 20
    for bad in ("big", "0", "-5", "1000", str(2 << 30)):
        with pytest.raises(SystemExit, match="SEND_QUEUE_BYTES"):
            Settings.from_env({**base, "SEND_QUEUE_BYTES": bad})
