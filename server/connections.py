"""How many connections a client may hold, and for how long before it must say something.

- One client address holds at most MAX_CONNECTIONS_PER_ADDRESS connections at once. At accept
  only the TCP peer is known, so a direct client is counted by its peer address. A peer in
  TRUSTED_PROXIES is not counted at accept (it carries many clients' connections); instead
  each request and /cable socket that comes through it counts against its forwarded client
  address while it runs (`forwarded_cap`). Past the cap: a 429 with Retry-After.
- All client connections together stay under a descriptor ceiling: RLIMIT_NOFILE minus the
  descriptors open at start minus FD_RESERVE. Past it a new connection is closed at once, so
  the database, Redis and the SQLite checkpoint always find a descriptor (running out used
  to break the checkpoint with "unable to open database file").
- A connection must deliver its first request head within HEADER_TIMEOUT of connecting.
  Later heads are bounded by aiohttp's keep-alive timer (KEEPALIVE_TIMEOUT from the end of
  the previous response, idle time and head together: incoming bytes do not reset it).
  Bodies: BODY_TIMEOUT, in server/params.py. /cable sockets: CABLE_SUBSCRIBE_TIMEOUT, in
  server/hub/endpoint.py.

aiohttp builds its `web.Server` inside AppRunner, and every connection reports itself to that
server's `connection_made` / `connection_lost`. `ConnectionGuard.install` wraps those two on
the instance: a connection costs a dict entry and one timer handle, a request nothing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import resource
import time
from typing import Any

from aiohttp import web

from server.client_address import Network, client_address, is_trusted_proxy
from server.errors import json_response

log = logging.getLogger(__name__)

RETRY_AFTER = 10  # seconds: connections of the same client have usually closed by then
TOO_MANY = {"error": "too many connections from your address"}
_TOO_MANY_BODY = b'{"error":"too many connections from your address"}'
# Written to a connection refused at accept, before any request was read.
TOO_MANY_RESPONSE = (
    b"HTTP/1.1 429 Too Many Requests\r\n"
    b"Content-Type: application/json\r\n"
    b"Retry-After: %d\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n\r\n" % (RETRY_AFTER, len(_TOO_MANY_BODY))
) + _TOO_MANY_BODY
WARN_INTERVAL = 10.0  # seconds between two log lines about the same kind of refusal


class Throttled:
    """A log line at most once per WARN_INTERVAL: an attack is thousands of refusals a
    second, and one line with the running count tells the operator as much."""

    __slots__ = ("_last", "level")

    def __init__(self, level: int) -> None:
        self.level = level
        self._last = -math.inf

    def __call__(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last >= WARN_INTERVAL:
            self._last = now
            log.log(self.level, message, *args)


class AddressCounts:
    """Open connections (or, through a proxy, running requests) per client address. An
    address leaves the map when its count drops to zero, so the map is bounded by the
    connections themselves."""

    __slots__ = ("_counts", "cap", "refused_forwarded")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._counts: dict[str, int] = {}
        self.refused_forwarded = 0  # requests refused by forwarded_cap

    def acquire(self, address: str) -> bool:
        n = self._counts.get(address, 0)
        if n >= self.cap:
            return False
        self._counts[address] = n + 1
        return True

    def release(self, address: str) -> None:
        n = self._counts.get(address, 0) - 1
        if n > 0:
            self._counts[address] = n
        else:
            self._counts.pop(address, None)

    def count(self, address: str) -> int:
        return self._counts.get(address, 0)


def forwarded_cap(counts: AddressCounts, trusted: tuple[Network, ...]) -> Any:
    """Middleware (installed only with TRUSTED_PROXIES): a request or /cable socket that came
    through a trusted proxy counts against its forwarded address for as long as it runs."""

    say = Throttled(logging.WARNING)

    @web.middleware
    async def cap_forwarded(request: web.Request, handler: Any) -> web.StreamResponse:
        address = client_address(request, trusted)
        if address == request.remote:  # direct, or a proxy that named nobody: counted at accept
            return await handler(request)
        if not counts.acquire(address):
            counts.refused_forwarded += 1
            say(
                "refused a request from %s through proxy %s: MAX_CONNECTIONS_PER_ADDRESS "
                "requests and sockets already open (%d refused so far)",
                address,
                request.remote,
                counts.refused_forwarded,
            )
            return too_many()
        try:
            return await handler(request)
        finally:
            counts.release(address)

    return cap_forwarded


def too_many() -> web.Response:
    resp = json_response(TOO_MANY, 429)
    resp.headers["Retry-After"] = str(RETRY_AFTER)
    return resp


def open_descriptors() -> int:
    """Descriptors this process has open now (0 where the OS does not list them)."""
    for path in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(path)) - 1  # minus the one listdir itself holds
        except OSError:
            continue
    return 0


def descriptor_ceiling(reserve: int) -> int:
    """How many client connections fit in RLIMIT_NOFILE beside what the process already
    holds and the FD_RESERVE it keeps for the database, Redis, logs and outgoing calls."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    held = open_descriptors()
    ceiling = soft - held - reserve
    if ceiling < 1:
        raise SystemExit(
            f"RLIMIT_NOFILE is {soft}: with {held} descriptors open at start and "
            f"FD_RESERVE={reserve} no client could connect; raise `ulimit -n` "
            "(systemd: LimitNOFILE=) or lower FD_RESERVE"
        )
    log.info(
        "client connections: at most %d at once (RLIMIT_NOFILE %d, %d open at start, "
        "FD_RESERVE %d)",
        ceiling,
        soft,
        held,
        reserve,
    )
    return ceiling


class ConnectionGuard:
    """Counts connections at accept and refuses those past a cap; closes a connection that
    has not delivered a request head within `header_timeout`."""

    def __init__(
        self,
        counts: AddressCounts,
        *,
        max_connections: int,
        header_timeout: float,
        trusted: tuple[Network, ...] = (),
    ) -> None:
        self.counts = counts
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.trusted = trusted
        self.open = 0
        # Counters for operators (and tests).
        self.refused_per_address = 0
        self.refused_descriptors = 0
        self.head_timeouts = 0
        self._conns: dict[Any, tuple[str | None, asyncio.TimerHandle | None]] = {}
        self._say_descriptors = Throttled(logging.WARNING)
        self._say_address = Throttled(logging.WARNING)
        self._say_head = Throttled(logging.INFO)

    def install(self, server: web.Server) -> None:
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: Any, transport: asyncio.Transport) -> None:
            made(handler, transport)
            self._accepted(handler, transport)

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            lost(handler, exc)
            self._closed(handler)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]

    def _accepted(self, handler: Any, transport: asyncio.Transport) -> None:
        if self.open >= self.max_connections:
            self.refused_descriptors += 1
            _refuse(handler, transport)
            self._say_descriptors(
                "refusing new connections: %d client connections open, the most the "
                "descriptor limit allows beside FD_RESERVE (%d refused so far); raise "
                "`ulimit -n` (systemd: LimitNOFILE=) or add web processes",
                self.open,
                self.refused_descriptors,
            )
            return
        peername = transport.get_extra_info("peername")
        peer = peername[0] if isinstance(peername, tuple) else None
        key = None
        if peer is not None and not is_trusted_proxy(peer, self.trusted):
            if not self.counts.acquire(peer):
                self.refused_per_address += 1
                transport.write(TOO_MANY_RESPONSE)
                _refuse(handler, transport)
                self._say_address(
                    "refused a connection from %s: it has %d open, MAX_CONNECTIONS_PER_ADDRESS "
                    "(%d refused so far); if that address is your proxy, add it to "
                    "TRUSTED_PROXIES",
                    peer,
                    self.counts.count(peer),
                    self.refused_per_address,
                )
                return
            key = peer
        self.open += 1
        timer = asyncio.get_running_loop().call_later(self.header_timeout, self._head_due, handler)
        self._conns[handler] = (key, timer)

    def _head_due(self, handler: Any) -> None:
        # `_request_count` counts the request heads aiohttp has parsed on this connection
        # (tests/test_connections.py holds us to it across aiohttp upgrades).
        entry = self._conns.get(handler)
        if entry is not None:  # a fired timer kept for a long-lived socket is 0.27 KB
            self._conns[handler] = (entry[0], None)
        if handler._request_count == 0 and handler.transport is not None:
            self.head_timeouts += 1
            handler.force_close()
            self._say_head(
                "closed a connection that sent no whole request head within HEADER_TIMEOUT "
                "(%d so far): idle or slow clients, or browsers' unused preconnections",
                self.head_timeouts,
            )

    def _closed(self, handler: Any) -> None:
        entry = self._conns.pop(handler, None)
        if entry is None:
            return  # refused at accept: never counted
        key, timer = entry
        if timer is not None:
            timer.cancel()
        self.open -= 1
        if key is not None:
            self.counts.release(key)


def _refuse(handler: Any, transport: asyncio.Transport) -> None:
    """Close a connection refused at accept, and read nothing from it meanwhile.

    Not at once: aiohttp starts the handler's task right after connection_made, and a close
    now would run connection_lost before that task's first step (which then fails on the
    manager connection_lost cleared). Two turns of the loop later the task is waiting."""
    transport.pause_reading()
    loop = asyncio.get_running_loop()
    loop.call_soon(loop.call_soon, handler.force_close)
