"""Who is online, per account: touched on subscribe and on every update_presence, and
forgotten PRESENCE_TTL seconds after the last touch (Chatwoot's OnlineStatusTracker).

Two engines behind one interface, like the bus: in-process, and Redis (sorted sets scored by
expiry) when processes must share it."""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)

PRESENCE_TTL = 20.0


class MemoryPresence:
    def __init__(self, ttl: float = PRESENCE_TTL) -> None:
        self.ttl = ttl
        self._seen: dict[tuple[int, str], dict[int, float]] = {}

    async def touch(self, account_id: int, kind: str, ident: int) -> None:
        self._seen.setdefault((account_id, kind), {})[ident] = time.time() + self.ttl

    async def online(self, account_id: int, kind: str) -> set[int]:
        seen = self._seen.get((account_id, kind), {})
        now = time.time()
        for ident in [i for i, exp in seen.items() if exp < now]:
            del seen[ident]
        return set(seen)


class RedisPresence:
    def __init__(self, redis: Any, ttl: float = PRESENCE_TTL) -> None:
        self.redis = redis
        self.ttl = ttl

    @staticmethod
    def _key(account_id: int, kind: str) -> str:
        return f"presence:{account_id}:{kind}"

    async def touch(self, account_id: int, kind: str, ident: int) -> None:
        key = self._key(account_id, kind)
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zadd(key, {str(ident): time.time() + self.ttl})
            pipe.expire(key, int(self.ttl * 3))
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
