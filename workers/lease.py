"""Leases: with several relays, exactly one works at a time; the others wait to take over.

MemoryLease is for one process (the embedded default). RedisLease is a key with a TTL,
renewed by its holder; if the holder dies the key expires and another relay takes it.

The renewal runs in a task of its own (start()), apart from the relay's database work, so a
database stall does not let the lease lapse while the process is healthy. And the holder
trusts its lease only for a while after each renewal it *sent* (`held`, `remaining()`),
shorter than the TTL the key got: a process that cannot reach Redis stops publishing before
its key expires and another relay may take it, so two relays never publish at once."""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from server.lifecycle import cancel

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

# Of the TTL, the part after a renewal during which the holder still acts: the rest is the
# margin for a publish in flight and for clocks that run at different rates.
TRUST = 2 / 3
# Renewals per TTL; each attempt also has this fraction of the TTL as its deadline.
RENEWALS_PER_TTL = 4


class Lease(Protocol):
    # Called when the lease is taken (not on each renewal).
    on_acquired: list[Callable[[], None]]

    @property
    def held(self) -> bool:
        """True while this process may act as the holder."""
        ...

    def remaining(self) -> float:
        """Seconds this process may still act as the holder (inf: for good)."""
        ...

    def start(self) -> None:
        """Keep taking or renewing the lease in the background."""
        ...

    async def acquire(self) -> bool:
        """One attempt to take the lease or keep holding it. False: someone else holds it
        (or the lock service is unreachable)."""
        ...

    async def release(self) -> None: ...


class MemoryLease:
    held = True

    def __init__(self) -> None:
        self.on_acquired: list[Callable[[], None]] = []

    def remaining(self) -> float:
        return math.inf

    def start(self) -> None:
        return None

    async def acquire(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class RedisLease:
    def __init__(self, redis: Any, key: str = "relay:lease", ttl: float = 5.0) -> None:
        self.redis = redis
        self.key = key
        self.ttl = ttl
        self.ttl_ms = int(ttl * 1000)
        self.holder = uuid.uuid4().hex
        self.interval = ttl / RENEWALS_PER_TTL
        self._owned = False  # the key was ours at the last answer
        self._valid_until = 0.0  # monotonic
        self._failing = False
        self._task: asyncio.Task[None] | None = None
        # Renewals that got no answer in time (Redis unreachable or too slow).
        self.failed_renewals = 0
        self.on_acquired: list[Callable[[], None]] = []

    @property
    def held(self) -> bool:
        return time.monotonic() < self._valid_until

    def remaining(self) -> float:
        return max(0.0, self._valid_until - time.monotonic())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="relay-lease")

    async def _loop(self) -> None:
        while True:
            started = time.monotonic()
            await self.acquire()
            await asyncio.sleep(max(0.0, started + self.interval - time.monotonic()))

    async def acquire(self) -> bool:
        sent = time.monotonic()
        was_held = self.held
        try:
            async with asyncio.timeout(self.interval):
                if self._owned:
                    if await self.redis.eval(_RENEW, 1, self.key, self.holder, self.ttl_ms):
                        return self._renewed(sent)
                    log.warning("relay lease lost: another relay holds it; this one pauses")
                    self._owned = False
                    self._valid_until = 0.0
                taken = await self.redis.set(self.key, self.holder, nx=True, px=self.ttl_ms)
        except Exception as exc:
            self.failed_renewals += 1
            if was_held and not self._failing:
                self._failing = True
                log.warning(
                    "relay lease not renewed (%s: no answer from Redis within %.1fs); "
                    "publishing pauses in %.1fs unless a renewal gets through",
                    type(exc).__name__,
                    self.interval,
                    self.remaining(),
                )
            return self.held
        if taken:
            log.info("relay lease acquired")
            self._owned = True
            self._renewed(sent)
            for callback in self.on_acquired:
                callback()
            return True
        return False

    def _renewed(self, sent: float) -> bool:
        # The key expires no sooner than `ttl` after Redis ran the command, which was after
        # `sent`: act on it only for a part of that.
        self._valid_until = sent + self.ttl * TRUST
        if self._failing:
            self._failing = False
            log.info("relay lease renewed again")
        return True

    async def release(self) -> None:
        await cancel(self._task)
        self._task = None
        owned, self._owned, self._valid_until = self._owned, False, 0.0
        if not owned:
            return
        try:
            async with asyncio.timeout(self.interval):
                await self.redis.eval(_RELEASE, 1, self.key, self.holder)
        except Exception:
            pass
