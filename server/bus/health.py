"""Keeping long-lived connections honest: a connection that dies without a FIN (a NAT or
load balancer forgetting it, a host that vanished) looks open for good; only an answer that
does not come reveals it. TCP keepalive catches some of these at the kernel; the rest is
found by our own pings with a deadline (server/bus/redis.py, workers/listener.py)."""

from __future__ import annotations

import socket
from typing import Any


def keepalive_options(interval: float) -> dict[int, int]:
    """TCP keepalive for a connection health-checked every `interval` seconds: the first
    probe after that much silence, then 3 probes a second apart (Linux option names; other
    platforms get what they have)."""
    idle = max(1, round(interval))
    options: dict[int, int] = {}
    for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", 1), ("TCP_KEEPCNT", 3)):
        opt = getattr(socket, name, None)
        if opt is not None:
            options[opt] = value
    return options


def enable_keepalive(sock: Any, interval: float) -> None:
    """Turn on TCP keepalive on an open socket (asyncpg has no option for it)."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for opt, value in keepalive_options(interval).items():
            sock.setsockopt(socket.IPPROTO_TCP, opt, value)
    except OSError:
        pass  # not a TCP socket (a Unix socket): nothing to keep alive
