"""Presence forgets who has expired (issue 13 §2): the Redis sorted set gained every visitor
ever seen, and the in-memory maps every visitor of an account no agent was reading. A real
redis-server; a short TTL so members expire within the test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from server.presence import MemoryPresence, RedisPresence
from tests.procs import RedisServer

TTL = 0.3
WAVES = 5
PER_WAVE = 200


@pytest.fixture
async def redis_client(tmp_path: Path) -> AsyncIterator[Any]:
    server = RedisServer(tmp_path / "redis").start()
    client = aioredis.from_url(server.url)
    try:
        yield client
    finally:
        await client.aclose()
        server.stop()


async def until_expired(since: float) -> None:
    """Wait (bounded) until everything touched at `since` has expired."""
    deadline = time.monotonic() + 5
    while time.time() <= since + TTL:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def waves(presence: Any, size: Any) -> list[int]:
    """WAVES waves of new visitors, each after the previous one expired; the sizes seen."""
    sizes = []
    for wave in range(WAVES):
        for n in range(PER_WAVE):
            await presence.touch(1, "contact", wave * PER_WAVE + n)
        sizes.append(await size())
        await until_expired(time.time())
    await presence.touch(1, "contact", 999_999)
    sizes.append(await size())
    return sizes


async def test_redis_presence_set_stays_bounded(redis_client: Any) -> None:
    presence = RedisPresence(redis_client, ttl=TTL)
    key = "presence:1:contact"
    sizes = await waves(presence, lambda: redis_client.zcard(key))
    assert max(sizes) <= PER_WAVE, sizes  # was 200, 400, ... 1001
    assert sizes[-1] == 1
    assert await presence.online(1, "contact") == {999_999}
    # The key lives about a TTL past its last touch, then goes with its members.
    assert 0 < await redis_client.pttl(key) <= (TTL + 2) * 1000
    deadline = time.monotonic() + 5
    while await redis_client.exists(key):
        assert time.monotonic() < deadline, await redis_client.pttl(key)
        await asyncio.sleep(0.05)


async def test_memory_presence_stays_bounded_without_reads() -> None:
    presence = MemoryPresence(ttl=TTL)

    async def size() -> int:  # every member held, expired or not
        return sum(len(seen) for seen in presence._seen.values())

    sizes = await waves(presence, size)
    assert max(sizes) <= PER_WAVE, sizes
    assert sizes[-1] == 1
    await presence.touch(1, "contact", 999_999)  # a touch again moves it to the end
    assert await presence.online(1, "contact") == {999_999}
    await until_expired(time.time())
    assert await presence.online(1, "contact") == set()
    assert await size() == 0
