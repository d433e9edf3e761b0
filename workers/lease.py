"""Leases: with several relays, exactly one works at a time; the others wait to take over.

MemoryLease is for one process (the embedded default). RedisLease is a key with a TTL,
renewed by its holder; if the holder dies the key expires and another relay takes it."""

from __future__ import annotations

import logging
import uuid
from typing import Any, Protocol

log = logging.getLogger(__name__)

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class Lease(Protocol):
    # True while this process holds the lease (as of its last acquire).
    held: bool

    async def acquire(self) -> bool:
        """Take the lease or keep holding it. False: someone else holds it (or the lock
        service is unreachable)."""
        ...

    async def release(self) -> None: ...


class MemoryLease:
    held = True

    async def acquire(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class RedisLease:
    def __init__(self, redis: Any, key: str = "relay:lease", ttl: float = 5.0) -> None:
        self.redis = redis
        self.key = key
        self.ttl_ms = int(ttl * 1000)
        self.holder = uuid.uuid4().hex
        self.held = False

    async def acquire(self) -> bool:
        try:
            if self.held:
                renewed = await self.redis.eval(_RENEW, 1, self.key, self.holder, self.ttl_ms)
                if renewed:
                    return True
                log.warning("relay lease lost")
                self.held = False
            taken = await self.redis.set(self.key, self.holder, nx=True, px=self.ttl_ms)
        except Exception as exc:
            if self.held:
                log.warning("relay lease unknown (%s): pausing", type(exc).__name__)
            self.held = False
            return False
        if taken:
            log.info("relay lease acquired")
            self.held = True
        return self.held

    async def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            await self.redis.eval(_RELEASE, 1, self.key, self.holder)
        except Exception:
            pass
