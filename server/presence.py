"""Who is online, per account: touched on subscribe and on every update_presence, and
forgotten PRESENCE_TTL seconds after the last touch (Chatwoot's OnlineStatusTracker).

Two engines behind one interface, like the bus: in-process, and Redis (sorted sets scored by
expiry) when processes must share it."""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from typing import Any

log = logging.getLogger(__name__)

PRESENCE_TTL = 20.0


class MemoryPresence:
    """Per (account, kind), members in the order of their expiry (a touch moves one to the
    end; the TTL is the same for all), so that what has expired is always at the front and
    every touch drops it: the maps hold only who was seen within the TTL, read or not."""

    def __init__(self, ttl: float = PRESENCE_TTL) -> None:
        self.ttl = ttl
        self._seen: dict[tuple[int, str], OrderedDict[int, float]] = {}

    async def touch(self, account_id: int, kind: str, ident: int) -> None:
        now = time.time()
        seen = self._seen.setdefault((account_id, kind), OrderedDict())
        seen[ident] = now + self.ttl
        seen.move_to_end(ident)
        self._trim(seen, now)

    async def online(self, account_id: int, kind: str) -> set[int]:
        seen = self._seen.get((account_id, kind))
        if seen is None:
            return set()
        self._trim(seen, time.time())
        if not seen:
            del self._seen[(account_id, kind)]
        return set(seen)

    @staticmethod
    def _trim(seen: OrderedDict[int, float], now: float) -> None:
        while seen:
            ident, expires = next(iter(seen.items()))
            if expires >= now:
                return
            del seen[ident]


class RedisPresence:
    def __init__(self, redis: Any, ttl: float = PRESENCE_TTL) -> None:
        self.redis = redis
        self.ttl = ttl

    @staticmethod
    def _key(account_id: int, kind: str) -> str:
        return f"presence:{account_id}:{kind}"

    async def touch(self, account_id: int, kind: str, ident: int) -> None:
        """Every touch also drops the members that have expired: `online()` only filters
        them, and on a busy account the key never expires, so without this the set gained
        every visitor ever seen. The key itself expires a TTL after its last touch, when
        every member in it has."""
        key = self._key(account_id, kind)
        now = time.time()
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zadd(key, {str(ident): now + self.ttl})
            pipe.zremrangebyscore(key, "-inf", f"({now}")
            pipe.expire(key, math.ceil(self.ttl) + 1)
            await pipe.execute()
        except Exception as exc:  # presence is best effort: Redis may be restarting
            log.debug("presence touch failed: %s", exc)

    async def online(self, account_id: int, kind: str) -> set[int]:
        try:
            members = await self.redis.zrangebyscore(
                self._key(account_id, kind), time.time(), "+inf"
            )
        except Exception as exc:
            log.debug("presence read failed: %s", exc)
            return set()
        return {int(m) for m in members}
