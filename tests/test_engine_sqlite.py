"""SQLite's own ways (server/store/engine/sqlite.py): the relay runs in the web process and is
woken by the commit of each write with events, not by its poll. (SQLite's message paths, the
flood check read by the bump and a first message opened without locking the contact_inbox,
are held on both engines by test_flood, test_widget_messages and test_store_statements.)"""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server import events
from server.app import create_app
from server.services import SERVICES
from tests.cable import CableClient, visitor_identifier
from tests.conftest import Visitor, build_world, make_settings

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

POLL = 60.0  # the relay's fallback poll: far longer than the wait below


@pytest.fixture
async def client(db_url: str, tmp_path: Any, aiohttp_client: Any) -> TestClient:
    settings = make_settings(db_url, tmp_path, relay_poll_interval=POLL)
    return await aiohttp_client(create_app(settings))


async def test_a_commit_with_events_wakes_the_relay(client: TestClient) -> None:
    world = await build_world(client.app[SERVICES].db)
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    assert visitor.pubsub_token is not None
    cable = await CableClient.connect(client)
    await cable.subscribe(visitor_identifier(visitor.pubsub_token))
    # The relay is idle now, until its poll or a wake-up.
    started = time.monotonic()
    sent = await visitor.send("woken")
    event = await cable.wait_event(
        events.MESSAGE_CREATED, lambda data: data["id"] == sent["id"], timeout=10.0
    )
    assert event["content"] == "woken"
    assert time.monotonic() - started < POLL / 2
    await cable.close()
