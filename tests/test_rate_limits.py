"""Issue 13 §4 over real HTTP on both databases: each creation flood meets its limit (429,
Retry-After, a JSON error naming the limit), and normal widget use never does. The
defaults are tested as they ship, except where a test says which limit it narrows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import text

from server.app import create_app
from server.client_address import parse_networks
from server.ratelimit import Rate, RateLimits
from server.services import SERVICES
from server.store import accounts as accounts_store
from tests.conftest import Visitor, World, build_world, make_settings
from tests.fake_elevenlabs import FakeElevenLabs

WIDGET = "/api/v1/widget"
DEFAULTS = RateLimits()


async def count(client: TestClient, sql: str, **params: Any) -> int:
    async def op(conn: Any) -> int:
        return (await conn.execute(text(sql), params)).scalar_one()

    return await client.app[SERVICES].db.read(op)


async def statuses(requests: list[Any]) -> tuple[list[int], list[Any]]:
    responses = await asyncio.wait_for(asyncio.gather(*requests), timeout=120)
    return [r.status for r in responses], responses


async def assert_limited(resp: Any, limit: str) -> None:
    """A 429 says which limit, and when to come back."""
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body["limit"] == limit
    assert body["error"].startswith("Too many ")


def passed_within(rate: Rate | None, elapsed: float) -> int:
    """The most a GCRA budget lets through in `elapsed` seconds: the burst, plus one per
    interval that went by (so a slow machine cannot make these tests flaky)."""
    assert rate is not None
    return rate.count + int(elapsed / rate.interval) + 1


async def test_contact_flood_from_one_address_meets_the_limit(
    client: TestClient, world: World
) -> None:
    """The issue: 300 POST /config from one address made 300 contacts in 0.3 s."""
    url = f"{WIDGET}/config?website_token={world.inbox['website_token']}"
    start = time.monotonic()
    codes, responses = await statuses([client.post(url) for _ in range(300)])
    elapsed = time.monotonic() - start
    created = codes.count(200)
    assert DEFAULTS.contacts_per_address.count <= created  # type: ignore[union-attr]
    assert created <= passed_within(DEFAULTS.contacts_per_address, elapsed)
    assert codes.count(429) == 300 - created
    await assert_limited(next(r for r in responses if r.status == 429), "contacts_per_address")
    assert await count(client, "select count(*) from contacts") == created

    # GET /widget without a token draws on the same budget.
    page = await client.get(f"/widget?website_token={world.inbox['website_token']}")
    await assert_limited(page, "contacts_per_address")


async def test_reusing_a_valid_token_is_not_counted(client: TestClient, world: World) -> None:
    """A reload loop with the visitor's token creates nothing and is never refused, even
    when the address has no budget left for new contacts."""
    token = world.inbox["website_token"]
    visitor = await Visitor(client, token).start()
    url = f"{WIDGET}/config?website_token={token}"
    codes, _ = await statuses([client.post(url) for _ in range(60)])
    assert 429 in codes  # the address's budget is spent
    for _ in range(50):
        resp = await client.post(url, headers={"X-Auth-Token": visitor.auth_token or ""})
        assert resp.status == 200, await resp.text()
        page = await client.get(
            f"/widget?website_token={token}&cw_conversation={visitor.auth_token}"
        )
        assert page.status == 200


@pytest.fixture
def proxied_settings(db_url: str, tmp_path: Any) -> Any:
    return make_settings(
        db_url,
        tmp_path,
        trusted_proxies=parse_networks("127.0.0.1"),
        rate_limits=RateLimits(contacts_per_address=Rate(3, 3600)),
    )


async def test_contacts_are_counted_per_client_address(
    proxied_settings: Any, aiohttp_client: Any
) -> None:
    client = await aiohttp_client(create_app(proxied_settings))
    world = await build_world(client.app[SERVICES].db)
    url = f"{WIDGET}/config?website_token={world.inbox['website_token']}"

    async def from_(address: str) -> int:
        resp = await client.post(url, headers={"X-Forwarded-For": address})
        return resp.status

    assert [await from_("198.51.100.1") for _ in range(4)] == [200, 200, 200, 429]
    assert [await from_("198.51.100.2") for _ in range(4)] == [200, 200, 200, 429]
    # IPv6 is counted by /64: one subscriber's addresses share one budget.
    assert await from_("2001:db8:1:2::1") == 200
    assert await from_("2001:db8:1:2::2") == 200
    assert await from_("2001:db8:1:2:ffff::3") == 200
    assert await from_("2001:db8:1:2::4") == 429
    assert await from_("2001:db8:1:3::1") == 200


async def test_set_user_switching_identifiers_meets_the_contact_limit(
    proxied_settings: Any, aiohttp_client: Any
) -> None:
    """set_user with a new identifier on a contact that has one makes a new contact: the
    same budget as /config."""
    client = await aiohttp_client(create_app(proxied_settings))
    world = await build_world(client.app[SERVICES].db)
    visitor = await Visitor(client, world.inbox["website_token"]).start()  # 1 of 3
    codes = []
    for i in range(5):
        resp = await visitor.patch("contact/set_user", {"identifier": f"user-{i}"})
        codes.append(resp.status)
        if resp.status == 200:
            new = (await resp.json()).get("widget_auth_token")
            visitor.auth_token = new or visitor.auth_token
        else:
            await assert_limited(resp, "contacts_per_address")
    # user-0 is set on the anonymous contact; user-1 and user-2 each make a contact.
    assert codes == [200, 200, 200, 429, 429]
    assert await count(client, "select count(*) from contacts") == 3


async def test_conversation_flood_meets_the_limit(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    """The issue: one visitor opened 300 conversations in 0.7 s."""
    body = {"message": {"content": "hi"}}
    start = time.monotonic()
    codes, responses = await statuses([visitor.post("conversations", body) for _ in range(300)])
    elapsed = time.monotonic() - start
    opened = codes.count(200)
    assert DEFAULTS.conversations_per_contact.count <= opened  # type: ignore[union-attr]
    assert opened <= passed_within(DEFAULTS.conversations_per_contact, elapsed)
    assert codes.count(429) == 300 - opened
    await assert_limited(next(r for r in responses if r.status == 429), "conversations_per_contact")
    sql = "select count(*) from conversations where contact_id = :c"
    assert await count(client, sql, c=visitor.contact_id) == opened
    # Messages still flow, into the latest conversation: they never open one of their own.
    await visitor.send("still here")
    assert await count(client, sql, c=visitor.contact_id) == opened
    # Another visitor has a budget of their own.
    other = await Visitor(client, world.inbox["website_token"]).start()
    assert (await other.post("conversations", body)).status == 200


@pytest.fixture
def narrow_settings(db_url: str, tmp_path: Any) -> Any:
    return make_settings(
        db_url, tmp_path, rate_limits=RateLimits(conversations_per_contact=Rate(2, 3600))
    )


async def test_voice_transcript_opening_conversations_meets_the_limit(
    narrow_settings: Any, aiohttp_client: Any
) -> None:
    """voice_transcript opens a new conversation after the latest was resolved: resolve,
    talk, resolve, talk... is a conversation flood too. Turns into an open conversation
    are not counted."""
    client = await aiohttp_client(create_app(narrow_settings))
    world = await build_world(client.app[SERVICES].db)
    visitor = await Visitor(client, world.inbox["website_token"]).start()
    turn = {"source": "user", "content": "hello"}
    sql = "select count(*) from conversations where contact_id = :c"
    for _ in range(2):
        for _ in range(5):
            resp = await visitor.post("conversations/voice_transcript", turn)
            assert resp.status == 200, await resp.text()
        assert (await visitor.get("conversations/toggle_status")).status == 200
    assert await count(client, sql, c=visitor.contact_id) == 2
    resp = await visitor.post("conversations/voice_transcript", turn)
    await assert_limited(resp, "conversations_per_contact")
    assert await count(client, sql, c=visitor.contact_id) == 2
    # POST /conversations shares the budget.
    resp = await visitor.post("conversations", {"message": {"content": "hi"}})
    await assert_limited(resp, "conversations_per_contact")


API_KEY = "sk_test_rate_limits"
AGENT_ID = "agent_rate_limits"


@pytest.fixture
async def fake() -> AsyncIterator[FakeElevenLabs]:
    async with FakeElevenLabs(api_key=API_KEY, agent_id=AGENT_ID) as server:
        yield server


async def voice_setup(
    aiohttp_client: Any, db_url: str, tmp_path: Any, fake: FakeElevenLabs, **limits: Any
) -> tuple[TestClient, dict[str, Any]]:
    settings = make_settings(
        db_url, tmp_path, elevenlabs_base_url=fake.base_url, rate_limits=RateLimits(**limits)
    )
    client = await aiohttp_client(create_app(settings))

    async def op(conn: Any) -> dict[str, Any]:
        account = await accounts_store.create_account(conn, "Voice")
        return await accounts_store.create_inbox(
            conn,
            account_id=account["id"],
            name="Voice",
            elevenlabs_agent_id=AGENT_ID,
            elevenlabs_api_key=API_KEY,
        )

    return client, await client.app[SERVICES].db.write(op)


async def test_signed_url_flood_meets_the_visitor_limit(
    aiohttp_client: Any, db_url: str, tmp_path: Any, fake: FakeElevenLabs
) -> None:
    """The issue: 300 voice_signed_url calls, each an ElevenLabs request."""
    client, inbox = await voice_setup(aiohttp_client, db_url, tmp_path, fake)
    visitor = await Visitor(client, inbox["website_token"]).start()
    start = time.monotonic()
    codes, responses = await statuses(
        [visitor.get("conversations/voice_signed_url") for _ in range(300)]
    )
    elapsed = time.monotonic() - start
    ok = codes.count(200)
    assert DEFAULTS.voice_urls_per_visitor.count <= ok  # type: ignore[union-attr]
    assert ok <= passed_within(DEFAULTS.voice_urls_per_visitor, elapsed)
    assert len(fake.requests) == ok
    await assert_limited(next(r for r in responses if r.status == 429), "voice_urls_per_visitor")
    # Without a token the caller is its address: a budget of its own, as big.
    url = f"{WIDGET}/conversations/voice_signed_url?website_token={inbox['website_token']}"
    codes, _ = await statuses([client.get(url) for _ in range(30)])
    assert codes.count(200) == DEFAULTS.voice_urls_per_visitor.count  # type: ignore[union-attr]


async def test_signed_url_flood_meets_the_inbox_limit(
    aiohttp_client: Any, db_url: str, tmp_path: Any, fake: FakeElevenLabs
) -> None:
    """Many visitors together: the inbox's budget bounds what ElevenLabs is asked."""
    client, inbox = await voice_setup(
        aiohttp_client, db_url, tmp_path, fake, voice_urls_per_inbox=Rate(5, 3600)
    )
    visitors = [await Visitor(client, inbox["website_token"]).start() for _ in range(8)]
    codes = [(await v.get("conversations/voice_signed_url")).status for v in visitors]
    assert codes == [200] * 5 + [429] * 3
    resp = await visitors[0].get("conversations/voice_signed_url")
    await assert_limited(resp, "voice_urls_per_inbox")
    assert len(fake.requests) == 5


async def test_typing_flood_meets_the_limit(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    await visitor.send("hello")
    on = {"typing_status": "on"}
    start = time.monotonic()
    codes, responses = await statuses(
        [visitor.post("conversations/toggle_typing", on) for _ in range(1000)]
    )
    elapsed = time.monotonic() - start
    ok = codes.count(200)
    assert (
        DEFAULTS.typing_per_sender.count
        <= ok
        <= passed_within(  # type: ignore[union-attr]
            DEFAULTS.typing_per_sender, elapsed
        )
    )
    await assert_limited(next(r for r in responses if r.status == 429), "typing_per_sender")

    # The agent's toggle_typing_status has its own budget, per agent.
    display_id = (await (await visitor.get("conversations")).json())["id"]
    url = f"/api/v1/accounts/{world.account['id']}/conversations/{display_id}/toggle_typing_status"
    headers = {"api_access_token": world.agent["access_token"]}
    codes, responses = await statuses(
        [client.post(url, json=on, headers=headers) for _ in range(1000)]
    )
    assert DEFAULTS.typing_per_sender.count <= codes.count(200) < 1000  # type: ignore[union-attr]
    await assert_limited(next(r for r in responses if r.status == 429), "typing_per_sender")
