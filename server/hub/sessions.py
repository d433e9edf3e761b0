"""Resumable sessions of the extended protocol (actioncable-v1-ext-json), after AnyCable's.

A session is what a socket had subscribed: the identifier strings, nothing else. The
welcome gives the client a session id; a client that reconnects with it (`?sid=` or the
`X-ANYCABLE-RESTORE-SID` header, as @anycable/core does) gets those subscriptions back
without subscribing, on whichever web process it reaches. Restoring re-resolves every
identifier (server/hub/room.py), so a token revoked meanwhile does not come back.

Kept SESSION_TTL seconds after the last change or disconnect: in Redis in the scaled deploy
(one key per session, expiring), in memory in the embedded default (at most MEMORY_LIMIT
sessions, the oldest dropped first). A session is taken once: restoring deletes it, and the
restored socket gets a new id; the old socket's close (often noticed after the client came
back elsewhere) only refreshes a session still kept, so a taken one never returns. Values are
bounded by the per-socket subscription cap and the identifier length (1 KiB)."""

from __future__ import annotations

import re
import secrets
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any

import orjson
from redis.exceptions import RedisError

MEMORY_LIMIT = 100_000
KEY_PREFIX = "cable:session:"
# What we hand out is 24 URL-safe characters (144 bits); what we accept back is checked
# before it reaches a store key.
SID_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")


def new_sid() -> str:
    return secrets.token_urlsafe(18)


def valid_sid(value: str | None) -> str | None:
    """The session id a reconnecting client sent, if it can be one of ours."""
    if value and SID_PATTERN.fullmatch(value):
        return value
    return None


class SessionStoreUnavailable(Exception):
    """The store did not answer: the socket works without a session (no restore)."""


class Sessions(ABC):
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.restored = 0  # sessions restored (server/metrics.py)
        self.failures = 0  # store calls that failed

    @abstractmethod
    async def save(self, sid: str, identifiers: list[str], *, refresh: bool = False) -> None:
        """Keep (or replace) the session for `ttl` seconds from now; none when empty.
        `refresh`: only if it is still kept (a socket closing: its session may have been
        restored elsewhere meanwhile, and a taken session must not come back)."""

    @abstractmethod
    async def take(self, sid: str) -> list[str] | None:
        """The session's identifiers, deleting it; None when unknown or expired."""


class MemorySessions(Sessions):
    def __init__(self, ttl: float, limit: int = MEMORY_LIMIT) -> None:
        super().__init__(ttl)
        self.limit = limit
        # Oldest save first: the expired, and past `limit` the oldest, leave from the front.
        self._entries: OrderedDict[str, tuple[float, list[str]]] = OrderedDict()

    async def save(self, sid: str, identifiers: list[str], *, refresh: bool = False) -> None:
        entries = self._entries
        kept = entries.pop(sid, None)
        now = time.monotonic()
        if refresh and (kept is None or kept[0] <= now):
            return
        if identifiers:
            entries[sid] = (now + self.ttl, identifiers)
        while entries:
            oldest = next(iter(entries.values()))
            if oldest[0] > now and len(entries) <= self.limit:
                break
            entries.popitem(last=False)

    async def take(self, sid: str) -> list[str] | None:
        entry = self._entries.pop(sid, None)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def __len__(self) -> int:
        return len(self._entries)


class RedisSessions(Sessions):
    """One key per session (`cable:session:<sid>`, a JSON list), expiring after `ttl`."""

    def __init__(self, redis: Any, ttl: float) -> None:
        super().__init__(ttl)
        self.redis = redis
        self._ttl_ms = max(1, round(ttl * 1000))

    async def save(self, sid: str, identifiers: list[str], *, refresh: bool = False) -> None:
        try:
            if identifiers:
                await self.redis.set(
                    KEY_PREFIX + sid, orjson.dumps(identifiers), px=self._ttl_ms, xx=refresh
                )
            else:
                await self.redis.delete(KEY_PREFIX + sid)
        except (RedisError, OSError) as exc:
            self.failures += 1
            raise SessionStoreUnavailable(str(exc)) from exc

    async def take(self, sid: str) -> list[str] | None:
        try:
            raw = await self.redis.getdel(KEY_PREFIX + sid)
        except (RedisError, OSError) as exc:
            self.failures += 1
            raise SessionStoreUnavailable(str(exc)) from exc
        if raw is None:
            return None
        value = orjson.loads(raw)
        if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
            return None
        return value


def create_sessions(ttl: float, redis: Any | None) -> Sessions | None:
    """None when sessions are off (SESSION_TTL=0): the welcome then carries no session id."""
    if ttl <= 0:
        return None
    return RedisSessions(redis, ttl) if redis is not None else MemorySessions(ttl)
