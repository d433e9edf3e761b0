"""One client socket: a bounded send queue drained by a writer that exists only while there
is something to write, so an idle socket costs no task.

The common case skips the queue: when nothing is queued and the kernel is taking the
socket's bytes (the transport's buffer is below WRITE_BUFFER_LIMIT), a frame is written to the
transport right away, without a task or a coroutine per frame. Only a socket that falls
behind goes through the queue and the writer task, which waits for it to drain."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

# Bytes a socket may have waiting in its transport before frames go to the bounded queue.
WRITE_BUFFER_LIMIT = 64 * 1024


def text_frame_header(length: int) -> bytes:
    """RFC 6455 header of an unmasked, final text frame (servers never mask)."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return b"\x81\x7e" + length.to_bytes(2, "big")
    return b"\x81\x7f" + length.to_bytes(8, "big")


class Connection:
    __slots__ = (
        "_on_overflow",
        "_queue",
        "_writer",
        "closed",
        "limit",
        "peer",
        "ping_group",
        "subscriptions",
        "transport",
        "ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: Any,
        *,
        limit: int,
        on_overflow: Callable[[Connection], None],
        peer: str = "",
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.limit = limit
        self.peer = peer
        self.ping_group = 0  # set by the hub
        self.closed = False
        self.subscriptions: dict[str, Any] = {}  # identifier string -> Subscription
        self._queue: deque[bytes] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._on_overflow = on_overflow

    def send(self, frame: bytes) -> None:
        """Send a frame without waiting: written now if the socket keeps up, else queued.
        A full queue means the client stopped reading: it is dropped (it reconnects and
        catches up) instead of holding up anyone else."""
        if self.closed:
            return
        if self._writer is None:
            transport = self.transport
            if (
                transport is not None
                and not self.ws.closed
                and not transport.is_closing()
                and transport.get_write_buffer_size() < WRITE_BUFFER_LIMIT
            ):
                transport.write(text_frame_header(len(frame)) + frame)
                return
        if len(self._queue) >= self.limit:
            self.abort()
            self._on_overflow(self)
            return
        self._queue.append(frame)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        queue = self._queue
        try:
            while queue and not self.closed:
                await self.ws.send_frame(queue.popleft(), WSMsgType.TEXT)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            self.abort()
        except Exception:
            log.exception("socket write failed")
            self.abort()
        finally:
            self._writer = None

    def abort(self) -> None:
        """Drop the connection now, without a closing handshake (it may not be reading)."""
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()
        if self.transport is not None:
            self.transport.abort()

    async def close(self, final_frame: bytes | None = None, timeout: float = 1.0) -> None:
        """Flush a last frame and close politely, waiting at most `timeout`."""
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        if self._writer is not None:
            self._writer.cancel()
        try:
            async with asyncio.timeout(timeout):
                if final_frame is not None:
                    await self.ws.send_frame(final_frame, WSMsgType.TEXT)
                await self.ws.close()
        except (TimeoutError, ConnectionError, RuntimeError, asyncio.CancelledError):
            if self.transport is not None:
                self.transport.abort()

    @property
    def queued(self) -> int:
        return len(self._queue)
