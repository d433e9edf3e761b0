"""One client socket: a bounded send queue drained by a writer that exists only while there
is something to write, so an idle socket costs no task.

The common case skips the queue: when nothing is queued and the kernel is taking the
socket's bytes (the transport's buffer is below WRITE_BUFFER_LIMIT), a frame is written to the
transport right away, without a task or a coroutine per frame. Only a socket that falls
behind goes through the queue and the writer task, which waits for it to drain.

The queue is bounded in frames and in bytes, and a broadcast waits in it as (prefix, message):
the message is the event's bytes, shared by every subscription and every socket it goes to,
so a socket that stopped reading with many subscriptions holds a few small prefixes per
event, not a copy of the event per subscription. The frame is assembled when it is written.
An extended-protocol broadcast ends in its stream position instead of a bare `}` (the tail,
shared by every extended subscription the event goes to)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

# Bytes a socket may have waiting in its transport before frames go to the bounded queue.
WRITE_BUFFER_LIMIT = 64 * 1024
# A message larger than this is handed to the transport in pieces, not joined into one frame:
# uvloop keeps a reference to each piece it cannot send yet, so every socket that is behind
# shares the event's bytes instead of holding its own copy. Smaller ones are joined: one
# write of one buffer is the cheapest for the usual few-KB event.
SHARE_ABOVE = 16 * 1024


def text_frame_header(length: int) -> bytes:
    """RFC 6455 header of an unmasked, final text frame (servers never mask)."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return b"\x81\x7e" + length.to_bytes(2, "big")
    return b"\x81\x7f" + length.to_bytes(8, "big")


def write_frame(
    transport: Any, size: int, head: bytes, message: bytes | None, tail: bytes = b"}"
) -> None:
    """Write the frame `head` (message None) or head + message + tail (`size` bytes)."""
    if message is None:
        transport.write(text_frame_header(size) + head)
    elif size > SHARE_ABOVE:
        transport.writelines((text_frame_header(size), head, message, tail))
    else:
        transport.write(b"".join((text_frame_header(size), head, message, tail)))


# A queued frame: (prefix, message, tail) is the broadcast frame prefix + message + tail
# (b"}", or an extended frame's position); (frame, None, b"") a frame of its own (welcome,
# ping, confirm).
Item = tuple[bytes, bytes | None, bytes]


class Connection:
    __slots__ = (
        "_flush",
        "_on_overflow",
        "_queue",
        "_queued_bytes",
        "_writer",
        "byte_limit",
        "closed",
        "ext",
        "limit",
        "peer",
        "ping_group",
        "sid",
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
        flush: Callable[[], Awaitable[None]],
        peer: str = "",
        byte_limit: int = 4 * 1024 * 1024,
    ) -> None:
        """`flush` waits until the transport wants more (the payload writer's drain(), which
        `WebSocketResponse.prepare` returns): the writer task writes to the transport itself,
        like the direct path, so a frame it has not sent keeps referencing the shared bytes."""
        self.ws = ws
        self.transport = transport
        self.limit = limit
        self.byte_limit = byte_limit
        self.peer = peer
        self.ping_group = 0  # set by the hub
        self.closed = False
        self.ext = False  # speaks the extended protocol (actioncable-v1-ext-json)
        self.sid: str | None = None  # its session id (server/hub/sessions.py), if any
        self.subscriptions: dict[str, Any] = {}  # identifier string -> Subscription
        # Made at the first frame that has to wait, dropped once written: an empty deque is
        # 0.6 KB, and most sockets never queue anything.
        self._queue: deque[Item] | None = None
        self._queued_bytes = 0
        self._writer: asyncio.Task[None] | None = None
        self._on_overflow = on_overflow
        self._flush = flush

    def send(self, head: bytes, message: bytes | None = None, tail: bytes = b"}") -> None:
        """Send the frame `head`, or with a message the broadcast frame head + message + tail
        (built only when it is written: a queued one keeps a reference to the shared message).

        Without waiting: written now if the socket keeps up, else queued. A full queue (in
        frames, or in bytes once it holds anything) means the client stopped reading: it is
        dropped (it reconnects and catches up) instead of holding up anyone else."""
        if self.closed:
            return
        size = len(head) if message is None else len(head) + len(message) + len(tail)
        if self._writer is None:
            transport = self.transport
            if (
                transport is not None
                and not self.ws.closed
                and not transport.is_closing()
                and transport.get_write_buffer_size() < WRITE_BUFFER_LIMIT
            ):
                write_frame(transport, size, head, message, tail)
                return
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        if len(queue) >= self.limit or (queue and self._queued_bytes + size > self.byte_limit):
            self._on_overflow(self)  # first: it logs what was queued
            self.abort()
            return
        queue.append((head, message, tail))
        self._queued_bytes += size
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        queue = self._queue
        assert queue is not None
        try:
            while queue and not self.closed:
                transport = self.transport
                if transport is None or transport.is_closing() or self.ws.closed:
                    raise ConnectionResetError("socket closed")
                head, message, tail = queue.popleft()
                size = len(head) if message is None else len(head) + len(message) + len(tail)
                self._queued_bytes -= size
                write_frame(transport, size, head, message, tail)
                del head, message, tail  # sent or referenced by the transport, not this task
                await self._flush()
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            self.abort()
        except Exception:
            log.exception("socket write failed")
            self.abort()
        finally:
            self._writer = None
            if not queue:
                self._queue = None

    def abort(self) -> None:
        """Drop the connection now, without a closing handshake (it may not be reading)."""
        if self.closed:
            return
        self.closed = True
        self._queue = None
        self._queued_bytes = 0
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()
        if self.transport is not None:
            self.transport.abort()

    async def close(self, final_frame: bytes | None = None, timeout: float = 1.0) -> None:
        """Flush a last frame and close politely, waiting at most `timeout`."""
        goodbye = self.shut(final_frame, timeout)
        if goodbye is not None:
            await goodbye

    def shut(
        self, final_frame: bytes | None = None, timeout: float = 1.0
    ) -> Coroutine[Any, Any, None] | None:
        """Stop sending now (nothing more is written; queued frames are dropped) and return
        the goodbye to run: `final_frame` and the closing handshake. None: closed already.
        For a caller that must be sure no frame goes out after its decision, not only after
        the goodbye runs (a resync: a newer message would hide the gap from the client)."""
        if self.closed:
            return None
        self.closed = True
        self._queue = None
        self._queued_bytes = 0
        if self._writer is not None:
            self._writer.cancel()
        return self._goodbye(final_frame, timeout)

    async def _goodbye(self, final_frame: bytes | None, timeout: float) -> None:
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
        return len(self._queue) if self._queue is not None else 0

    @property
    def queued_bytes(self) -> int:
        """Bytes of the queued frames, as they will be written (less their headers)."""
        return self._queued_bytes
