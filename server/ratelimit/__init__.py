"""Rate limits: `Limiter.check(limit, subject)` for what HTTP handlers create or cost
(counted in process, or in Redis across web processes), and `SocketLimits` for what one
/cable socket may do (counted on the socket: it lives in one process).

The rules and their defaults are in rules.py; the engines in engines.py."""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
import time
from typing import Any

from server.errors import ApiError
from server.ratelimit.engines import Engine, MemoryEngine, RedisEngine, gcra
from server.ratelimit.rules import Rate, RateLimits, env_name, parse_rate

__all__ = [
    "Limiter",
    "MemoryEngine",
    "Rate",
    "RateLimited",
    "RateLimits",
    "RedisEngine",
    "SocketLimited",
    "SocketLimits",
    "address_subject",
    "create_limiter",
    "parse_rate",
]

log = logging.getLogger(__name__)

# What a refusal tells the client, per limit.
WHAT = {
    "contacts_per_address": "new contacts from this address",
    "conversations_per_contact": "new conversations for this contact",
    "voice_urls_per_visitor": "voice_signed_url calls for this visitor",
    "voice_urls_per_inbox": "voice_signed_url calls for this inbox",
    "voice_polls_per_visitor": "voice_transcript_poll calls for this visitor",
    "voice_calls_per_visitor": "voice call heartbeats, links and ends for this visitor",
    "searches_per_agent": "conversation searches for this agent",
    "typing_per_sender": "typing updates",
    "widget_updates_per_contact": "answers and label changes from this visitor",
    "presence_per_socket": "presence updates and subscriptions on this socket",
    "failed_subscribes_per_socket": "refused subscriptions on this socket",
    "history_per_socket": "history requests on this socket",
    "transcripts_per_conversation": "transcript emails for this conversation",
    "widget_events_per_contact": "widget events for this contact",
}


class RateLimited(ApiError):
    """429 with Retry-After (whole seconds, at least 1) and which limit was met."""

    def __init__(self, name: str, rate: Rate, wait: float) -> None:
        seconds = max(1, math.ceil(wait))
        super().__init__(
            429,
            {
                "error": f"Too many {WHAT[name]}: at most {rate}; retry in {seconds} s",
                "limit": name,
            },
            headers={"Retry-After": str(seconds)},
        )


class Limiter:
    """The shared limits. `refused[limit]` counts refusals (for the per-socket limits, the
    sockets closed: server/hub/endpoint.py); one log line per limit at most every LOG_EVERY
    seconds says how many, so a flood does not flood the log too."""

    LOG_EVERY = 10.0

    def __init__(self, rules: RateLimits, engine: Engine) -> None:
        self.rules = rules
        self.engine = engine
        self.refused: dict[str, int] = dict.fromkeys(WHAT, 0)
        self._logged: dict[str, tuple[float, int]] = {}

    async def check(self, name: str, subject: str) -> None:
        """Spend one request of `subject`'s budget for limit `name`, or raise RateLimited."""
        rate: Rate | None = getattr(self.rules, name)
        if rate is None:
            return
        wait = await self.engine.hit(f"rl:{name}:{subject}", rate)
        if wait > 0:
            self.refused[name] += 1
            self._log(name, rate, subject)
            raise RateLimited(name, rate, wait)

    def _log(self, name: str, rate: Rate, subject: str) -> None:
        now = time.monotonic()
        last, count = self._logged.get(name, (0.0, 0))
        if now - last < self.LOG_EVERY:
            return
        log.warning(
            "rate limit %s (%s) refused %d requests since the last report, latest from %s; "
            "if real visitors meet it, raise %s",
            name,
            rate,
            self.refused[name] - count,
            subject,
            env_name(name),
        )
        self._logged[name] = (now, self.refused[name])


def address_subject(address: str) -> str:
    """What a per-address limit counts: an IPv4 address, or an IPv6 address's /64 (one
    subscriber's usual allocation: counting single IPv6 addresses would give an attacker
    2^64 budgets)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return address


def create_limiter(rules: RateLimits, redis: Any | None) -> Limiter:
    """In process without Redis (the embedded default); in Redis when the bus has one."""
    return Limiter(rules, RedisEngine(redis) if redis is not None else MemoryEngine())


class SocketLimited(Exception):
    """A /cable socket spent a budget: the endpoint sends a disconnect frame and closes."""

    def __init__(self, name: str, rate: Rate) -> None:
        super().__init__(f"{WHAT[name]} over {rate} ({env_name(name)})")
        self.name = name


SOCKET_LIMITS = ("presence_per_socket", "failed_subscribes_per_socket", "history_per_socket")


@functools.cache
def _socket_rates(rules: RateLimits) -> dict[str, Rate]:
    return {n: r for n in SOCKET_LIMITS if (r := getattr(rules, n)) is not None}


class SocketLimits:
    """The per-socket budgets of one /cable socket: a TAT per limit, nothing shared. Small,
    as there is one per socket: the rates are shared by all sockets."""

    __slots__ = ("_rates", "_tats")

    def __init__(self, rules: RateLimits) -> None:
        self._rates = _socket_rates(rules)
        self._tats: dict[str, float] = {}

    def used(self, name: str) -> bool:
        """Whether `name` was spent on this socket before (to log its first time only)."""
        return name in self._tats

    def spend(self, name: str) -> None:
        """Spend one of `name`'s budget, or raise SocketLimited."""
        rate = self._rates.get(name)
        if rate is None:
            self._tats.setdefault(name, 0.0)  # off: never refuses, still marks it used
            return
        tat, wait = gcra(self._tats.get(name), time.monotonic(), rate)
        if wait:
            raise SocketLimited(name, rate)
        self._tats[name] = tat
