"""The Redis engine of the rate limits, with a real redis-server shared by two web apps on
one database (as two web processes would share it): a budget spent on one is spent on the
other; each key expires when it carries nothing; and with Redis gone the limits fail open to
counting in each process, so visitors are still served."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.ratelimit import Rate, RateLimits, RedisEngine
from server.services import SERVICES
from tests.conftest import Visitor, World, build_world, make_settings
from tests.procs import RedisServer

LIMITS = RateLimits(contacts_per_address=Rate(4, 3600), conversations_per_contact=Rate(3, 3600))


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


async def two_apps(
    aiohttp_client: Any, db_url: str, tmp_path: Path, redis_url: str
) -> tuple[TestClient, TestClient, World]:
    settings = make_settings(db_url, tmp_path, redis_url=redis_url, rate_limits=LIMITS)
    first = await aiohttp_client(create_app(settings))
    second = await aiohttp_client(create_app(settings))
    assert isinstance(first.app[SERVICES].limiter.engine, RedisEngine)
    return first, second, await build_world(first.app[SERVICES].db)


async def config(client: TestClient, world: World, token: str | None = None) -> int:
    headers = {"X-Auth-Token": token} if token else {}
    url = f"/api/v1/widget/config?website_token={world.inbox['website_token']}"
    return (await client.post(url, headers=headers)).status


async def test_budgets_are_shared_across_processes(
    aiohttp_client: Any, db_url: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    first, second, world = await two_apps(aiohttp_client, db_url, tmp_path, redis_server.url)
    assert [await config(first, world), await config(second, world)] == [200, 200]
    assert [await config(first, world), await config(second, world)] == [200, 200]
    assert [await config(first, world), await config(second, world)] == [429, 429]

    # The key is the whole state, and expires when the budget is full again.
    redis = first.app[SERVICES].limiter.engine.redis
    assert 0 < await redis.pttl("rl:contacts_per_address:127.0.0.1") <= 3600 * 1000
    await redis.delete("rl:contacts_per_address:127.0.0.1")

    # A conversation budget spent through one process is spent for the other.
    visitor_a = await Visitor(first, world.inbox["website_token"]).start()
    visitor_b = Visitor(second, world.inbox["website_token"])
    visitor_b.auth_token = visitor_a.auth_token
    body = {"message": {"content": "hi"}}
    codes = [(await v.post("conversations", body)).status for v in (visitor_a, visitor_b) * 2]
    assert codes == [200, 200, 200, 429]


async def test_redis_gone_fails_open_to_counting_in_each_process(
    aiohttp_client: Any, db_url: str, tmp_path: Path, redis_server: RedisServer, caplog: Any
) -> None:
    first, second, world = await two_apps(aiohttp_client, db_url, tmp_path, redis_server.url)
    assert await config(first, world) == 200
    redis_server.stop()
    caplog.set_level(logging.WARNING, logger="server.ratelimit.engines")
    # Each process now counts alone: visitors are served, and a flood still meets the limit.
    assert [await config(first, world) for _ in range(5)] == [200] * 4 + [429]
    assert [await config(second, world) for _ in range(5)] == [200] * 4 + [429]
    engine = first.app[SERVICES].limiter.engine
    assert engine.errors == 5
    warnings = [r for r in caplog.records if "Redis did not answer" in r.getMessage()]
    assert len(warnings) == 2  # one per process, not one per request
