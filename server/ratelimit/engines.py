"""Where rate limit budgets are kept: in process (the embedded default), or in Redis so that
every web process spends the same budget.

Both run GCRA (the generic cell rate algorithm): a subject's state is one number, its
"theoretical arrival time" (TAT). A request at `now` moves it to max(TAT, now) + interval and
is refused when that lands more than a period ahead of now. So COUNT requests pass at once,
then one every PERIOD/COUNT seconds; the refusal says exactly when the next one passes
(Retry-After); and a key carries information only until its TAT, which is its expiry.
Fixed windows would be as cheap but let 2 x COUNT through across a window boundary and keep
a visitor out until the window ends."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from redis.exceptions import RedisError

from server.ratelimit.rules import Rate

log = logging.getLogger(__name__)

# Rounding slack: COUNT requests at once must all pass although COUNT * (PERIOD/COUNT) may
# come out a hair above PERIOD in floating point.
_SLACK = 1e-6


def gcra(tat: float | None, now: float, rate: Rate) -> tuple[float, float]:
    """(new TAT, 0.0) when the request passes, else (old TAT, seconds until one would)."""
    start = now if tat is None or tat < now else tat
    new = start + rate.interval
    if new - now > rate.period + _SLACK:
        return start, new - rate.period - now
    return new, 0.0


class Engine(Protocol):
    async def hit(self, key: str, rate: Rate) -> float:
        """Spend one request of `key`'s budget: 0.0 if it passes, else seconds to wait."""
        ...


class MemoryEngine:
    """Budgets in a dict, bounded: entries whose TAT has passed carry nothing (the budget is
    full again) and are swept every SWEEP_EVERY seconds and whenever the dict is full. If it
    is still full of live entries (a flood from more subjects than max_keys), it is emptied:
    limits forget rather than memory grows, and `resets` counts it."""

    SWEEP_EVERY = 30.0

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._tat: dict[str, float] = {}
        self._next_sweep = 0.0  # the first hit sweeps (nothing) and sets the next time
        self.resets = 0

    def __len__(self) -> int:
        return len(self._tat)

    async def hit(self, key: str, rate: Rate) -> float:
        return self.hit_now(key, rate, time.monotonic())

    def hit_now(self, key: str, rate: Rate, now: float) -> float:
        tat, wait = gcra(self._tat.get(key), now, rate)
        if wait:
            return wait
        if now >= self._next_sweep or (len(self._tat) >= self.max_keys and key not in self._tat):
            self._sweep(now)
        self._tat[key] = tat
        return 0.0

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.SWEEP_EVERY
        for key in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[key]
        if len(self._tat) >= self.max_keys:
            self.resets += 1
            log.warning(
                "rate limits: %d subjects at once, more than the %d kept in memory; "
                "forgetting them all (limits restart from full budgets)",
                len(self._tat),
                self.max_keys,
            )
            self._tat.clear()


# One round trip: read the TAT, decide, write it back with the TTL it needs, all on Redis's
# clock (web processes' clocks may disagree). Floats travel as strings: Lua numbers returned
# to Redis are truncated to integers.
_GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new = tat + interval
if new - now > period + 0.000001 then
  return string.format('%.6f', new - period - now)
end
redis.call('SET', KEYS[1], string.format('%.6f', new), 'PX', math.ceil((new - now) * 1000))
return '0'
"""


class RedisEngine:
    """Budgets in Redis, shared by every web process (keys `rl:<limit>:<subject>`, each
    expiring at its TAT). If Redis cannot answer within `timeout`, the request is counted
    in this process alone instead (the limits fail open to per-process budgets, never to
    refusing everyone); `errors` counts those, and a warning is logged at most every 10 s."""

    def __init__(self, redis: Any, *, timeout: float = 0.5) -> None:
        self.redis = redis
        self.timeout = timeout
        self.local = MemoryEngine()
        self.errors = 0
        self._script = redis.register_script(_GCRA_LUA)
        self._next_warning = 0.0

    async def hit(self, key: str, rate: Rate) -> float:
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self._script(
                    keys=[key], args=[repr(rate.interval), repr(rate.period)]
                )
            return float(answer)
        except (RedisError, OSError, TimeoutError, ValueError) as exc:
            self.errors += 1
            now = time.monotonic()
            if now >= self._next_warning:
                self._next_warning = now + 10.0
                log.warning(
                    "rate limits: Redis did not answer (%s); counting in this process only "
                    "until it does (%d checks so far)",
                    exc.__class__.__name__,
                    self.errors,
                )
            return await self.local.hit(key, rate)
