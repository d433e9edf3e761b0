"""A TCP proxy on 127.0.0.1 that can black-hole: the connections it holds stop forwarding in
both directions while both sockets stay open, the way a NAT or load balancer that forgot a
connection (or a host that vanished) looks from each end: no FIN, no RST, just silence. New
connections are forwarded normally, so a peer that notices and reconnects is served again.

It can also stand for a load balancer in front of web processes: `cut()` resets every
connection it holds, `refuse` turns new ones away, and `upstream_port` may be changed (new
connections go there), so a client that reconnects lands on another process.

It runs its own event loop in a thread, so the test may block (starting processes) freely."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.procs import free_port


@dataclass
class Link:
    """One proxied connection: what the client sent first (to tell a Redis pub/sub connection
    or a PostgreSQL application by name), and whether it is black-holed."""

    opened_at: float
    head: bytearray = field(default_factory=bytearray)
    holed: asyncio.Event = field(default_factory=asyncio.Event)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    def sent(self, needle: bytes) -> bool:
        return needle.lower() in bytes(self.head).lower()


HEAD_LIMIT = 64 * 1024


class BlackholeProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.links: list[Link] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        # Set by blackhole(new_too=True): connections accepted from then on are silent too
        # (a host that vanished, rather than a middlebox that forgot some connections).
        self.hole_new = False
        # New connections are reset at once (nothing to forward to).
        self.refuse = False

    def start(self) -> BlackholeProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def blackhole(
        self, which: Callable[[Link], bool] = lambda link: True, new_too: bool = False
    ) -> int:
        """Stop forwarding on the open connections `which` selects (and, with `new_too`, on
        every connection accepted from now on); returns how many were open."""

        async def hole() -> int:
            self.hole_new = self.hole_new or new_too
            chosen = [link for link in self.links if not link.holed.is_set() and which(link)]
            for link in chosen:
                link.holed.set()
            return len(chosen)

        return self._call(hole())

    def cut(self) -> int:
        """Reset every connection open now, both ways (an RST to the client and to the
        upstream); returns how many were open."""

        async def reset() -> int:
            open_links = [link for link in self.links if link.writers]
            for link in open_links:
                for writer in link.writers:
                    writer.transport.abort()
                link.writers.clear()
            return len(open_links)

        return self._call(reset())

    def opened_since(self, since: float, which: Callable[[Link], bool]) -> list[Link]:
        async def find() -> list[Link]:
            return [link for link in self.links if link.opened_at >= since and which(link)]

        return self._call(find())

    def _call(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self.links:
            for writer in link.writers:
                writer.transport.abort()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            writer.transport.abort()
            return
        link = Link(opened_at=time.monotonic(), writers=[writer])
        self.links.append(link)
        if self.hole_new:
            link.holed.set()
            await asyncio.Event().wait()  # accepted, then silence
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        link.writers.append(up_writer)
        await asyncio.gather(
            self._pipe(link, reader, up_writer, record=True),
            self._pipe(link, up_reader, writer, record=False),
        )

    async def _pipe(
        self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bool
    ) -> None:
        try:
            while not link.holed.is_set():
                data = await reader.read(65536)
                if not data:
                    break
                if link.holed.is_set():
                    break  # read after the hole opened: dropped
                if record and len(link.head) < HEAD_LIMIT:
                    link.head += data[: HEAD_LIMIT - len(link.head)]
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        if link.holed.is_set():
            # Keep both sockets open and read nothing more: silence, not a close.
            await asyncio.Event().wait()
        writer.close()
