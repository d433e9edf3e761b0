"""Attribute maps are capped once merged (issue 13 §2): PATCHing 16 KB at a time used to grow
one contact to megabytes, and every event about it carried the whole blob. Real HTTP and real
WebSocket frames, both databases."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.ratelimit.rules import RateLimits
from server.services import SERVICES
from server.settings import Settings
from server.store import contacts as contacts_store
from tests.cable import CableClient, agent_identifier
from tests.conftest import Visitor, World, make_settings

CAP = 16 * 1024
CHUNK = 5_000  # three fit under the cap, a fourth does not


def chunk(i: int) -> dict[str, str]:
    return {f"k{i}": "x" * CHUNK}


@pytest.fixture
async def client(db_url: str, tmp_path: Any, aiohttp_client: Any) -> TestClient:
    """The usual app, with no budget of new conversations: the listing test opens 30."""
    settings = make_settings(
        db_url, tmp_path, rate_limits=RateLimits(conversations_per_contact=None)
    )
    return await aiohttp_client(create_app(settings))


async def stored(client: TestClient, contact_id: int) -> dict[str, Any]:
    row = await client.app[SERVICES].db.read(contacts_store.get_contact, contact_id)
    assert row is not None
    return row


@pytest.mark.parametrize("path", ["contact", "contact/set_user"])
@pytest.mark.parametrize("key", ["custom_attributes", "additional_attributes"])
async def test_patches_cannot_grow_a_contact_past_the_cap(
    client: TestClient, visitor: Visitor, path: str, key: str
) -> None:
    assert client.app[SERVICES].settings.max_attributes_bytes == CAP
    for i in range(3):
        resp = await visitor.patch(path, {key: chunk(i)})
        assert resp.status == 200, await resp.text()
    before = await stored(client, visitor.contact_id)  # type: ignore[arg-type]

    for i in range(3, 30):  # the attack: keep adding keys, each request small enough alone
        resp = await visitor.patch(path, {key: chunk(i), "name": "Mallory"})
        assert resp.status == 422, await resp.text()
        error = (await resp.json())["error"]
        assert key in error and str(CAP) in error

    after = await stored(client, visitor.contact_id)  # type: ignore[arg-type]
    assert after[key] == before[key]  # nothing written, not even the name
    assert after["name"] == before["name"]
    assert set(after[key]) >= {"k0", "k1", "k2"} and "k3" not in after[key]

    # Overwriting an existing key with a value of the same size still fits.
    resp = await visitor.patch(path, {key: {"k0": "y" * CHUNK}})
    assert resp.status == 200, await resp.text()


async def test_a_single_map_over_the_cap_is_refused(client: TestClient, visitor: Visitor) -> None:
    big = {"k": "x" * (CAP + 1)}
    resp = await visitor.patch("contact", {"custom_attributes": big})
    assert resp.status == 422
    resp = await visitor.post(
        "conversations", {"message": {"content": "hi"}, "custom_attributes": big}
    )
    assert resp.status == 422
    assert "custom_attributes" in (await resp.json())["error"]
    await visitor.send("hello")  # a conversation to set attributes on
    resp = await visitor.post("conversations/set_custom_attributes", {"custom_attributes": big})
    assert resp.status == 422
    resp = await visitor.post(
        "conversations/set_custom_attributes", {"custom_attributes": {"k": "x" * 10_000}}
    )
    assert resp.status == 204


async def test_events_and_listings_stay_small_after_the_attack(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    """Each event about the contact carries its maps: they are bounded, so is every frame."""
    for key in ("custom_attributes", "additional_attributes"):
        for i in range(40):
            resp = await visitor.patch("contact", {key: chunk(i)})
            if resp.status == 422:
                break
    agent = await CableClient.connect(client)
    await agent.subscribe(
        agent_identifier(world.agent["pubsub_token"], world.account["id"], world.agent["id"])
    )
    sizes: list[int] = []
    original = agent.ws.receive

    async def measure(*args: Any, **kw: Any) -> Any:
        msg = await original(*args, **kw)
        if isinstance(msg.data, str):
            sizes.append(len(msg.data.encode()))
        return msg

    agent.ws.receive = measure  # type: ignore[method-assign]
    sent = await visitor.send("hello")
    await agent.wait_event("message.created", lambda d: d["id"] == sent["id"])
    await agent.close()
    assert sizes and max(sizes) < 3 * CAP, sizes  # two capped maps and the rest; was 1.6 MB

    for i in range(30):
        resp = await visitor.post("conversations", {"message": {"content": f"c{i}"}})
        assert resp.status == 200, await resp.text()
    resp = await client.get(
        f"/api/v1/accounts/{world.account['id']}/conversations",
        headers={"api_access_token": world.agent["access_token"]},
    )
    assert resp.status == 200
    body = await resp.read()
    assert len((await resp.json())["data"]["payload"]) == 25  # one page at most
    # Each conversation carries the contact twice (meta.sender and its last message's
    # sender, as Chatwoot does), each with two capped maps, and its own maps: 5 caps at most.
    assert len(body) < 25 * 5 * CAP, len(body)


def test_max_attributes_bytes_setting() -> None:
    base = {"SECRET_KEY_BASE": "x" * 40}
    assert Settings.from_env(base).max_attributes_bytes == CAP
    assert Settings.from_env({**base, "MAX_ATTRIBUTES_BYTES": "4096"}).max_attributes_bytes == 4096
    for bad in ("lots", "0", "-1", "100", str(2 << 20)):
        with pytest.raises(SystemExit, match="MAX_ATTRIBUTES_BYTES"):
            Settings.from_env({**base, "MAX_ATTRIBUTES_BYTES": bad})
