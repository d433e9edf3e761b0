"""Who is on the other end of a request: the address every per-client limit counts against.

The peer of the TCP connection, unless that peer is a proxy the operator trusts
(`TRUSTED_PROXIES`): then the nearest `X-Forwarded-For` entry that is not itself a trusted
proxy. A client can write anything into `X-Forwarded-For`, so the header is read right to
left and only as far as the trusted hops go; an untrusted peer's header is ignored whole."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

CLIENT_ADDRESS = web.RequestKey("client_address", str)


def parse_networks(raw: str | None) -> tuple[Network, ...]:
    """`TRUSTED_PROXIES`: comma-separated addresses or CIDR ranges. A bad entry is a
    ValueError, which stops the process at start (server/settings.py) rather than silently
    trusting nobody, or everybody."""
    if not raw or not raw.strip():
        return ()
    out: list[Network] = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"must be IP addresses or CIDR ranges: {part!r} is neither") from None
    return tuple(out)


def _trusted(address: str, networks: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


def is_trusted_proxy(peer: str, trusted: tuple[Network, ...]) -> bool:
    """Whether the TCP peer is one of the operator's proxies (it speaks for many clients)."""
    return bool(trusted) and _trusted(peer, trusted)


def resolve(peer: str, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str:
    """The client's address given the TCP peer and the X-Forwarded-For header."""
    if not trusted or not forwarded_for or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop.strip("[]")))
            except ValueError:
                return peer  # garbage where an address should be: count the proxy instead
    return hops[0] if hops else peer


def client_address(request: web.Request, trusted: tuple[Network, ...]) -> str:
    """resolve() for a request, computed once and kept on it."""
    cached = request.get(CLIENT_ADDRESS)
    if cached is not None:
        return cached
    address = resolve(request.remote or "", request.headers.get("X-Forwarded-For"), trusted)
    request[CLIENT_ADDRESS] = address
    return address
