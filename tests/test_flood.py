"""The flood guard on POST /api/v1/widget/messages, over real HTTP on both databases: at
most MESSAGES_PER_MINUTE messages a minute per conversation, counted per conversation, also
when the requests arrive at once (several in one group-commit batch on SQLite, concurrent
transactions on PostgreSQL)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.services import SERVICES
from server.settings import Settings
from tests.conftest import Visitor, build_world, make_settings

LIMIT = 3


@pytest.fixture
def settings(db_url: str, tmp_path: Any) -> Settings:
    return make_settings(db_url, tmp_path, messages_per_minute=LIMIT)


@pytest.fixture
async def client(settings: Settings, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(create_app(settings))


async def post(visitor: Visitor, content: str) -> tuple[int, dict[str, Any]]:
    resp = await visitor.post("messages", {"message": {"content": content}})
    return resp.status, await resp.json()


async def history(visitor: Visitor) -> list[str]:
    resp = await visitor.get("messages")
    assert resp.status == 200, await resp.text()
    return [m["content"] for m in (await resp.json())["payload"]]


async def test_flood_guard_counts_per_conversation(client: TestClient) -> None:
    world = await build_world(client.app[SERVICES].db)
    token = world.inbox["website_token"]
    first = await Visitor(client, token).start()
    second = await Visitor(client, token).start()

    for i in range(LIMIT):
        status, body = await post(first, f"a{i}")
        assert status == 200, body
    status, body = await post(first, "too many")
    assert status == 422
    assert body == {
        "message": f"Too many messages: at most {LIMIT} a minute per conversation",
        "attributes": ["base"],
    }
    assert await history(first) == [f"a{i}" for i in range(LIMIT)]

    # Another visitor's conversation has its own count.
    for i in range(LIMIT):
        status, body = await post(second, f"b{i}")
        assert status == 200, body
    assert (await post(second, "too many"))[0] == 422
    assert await history(second) == [f"b{i}" for i in range(LIMIT)]


async def test_flood_guard_with_requests_at_once(client: TestClient) -> None:
    world = await build_world(client.app[SERVICES].db)
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    status, body = await post(visitor, "opens the conversation")
    assert status == 200, body
    bystander = await Visitor(client, world.inbox["website_token"]).start()

    burst = [post(visitor, f"m{i}") for i in range(2 * LIMIT)]
    burst += [post(bystander, f"other{i}") for i in range(LIMIT)]
    results = await asyncio.wait_for(asyncio.gather(*burst), timeout=30)

    mine = [status for status, _ in results[: 2 * LIMIT]]
    assert sorted(mine) == [200] * (LIMIT - 1) + [422] * (LIMIT + 1)
    assert [status for status, _ in results[2 * LIMIT :]] == [200] * LIMIT
    written = await history(visitor)
    assert len(written) == LIMIT and written[0] == "opens the conversation"
    assert sorted(await history(bystander)) == sorted(f"other{i}" for i in range(LIMIT))
