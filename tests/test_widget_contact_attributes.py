"""POST /api/v1/widget/contact/destroy_custom_attributes (`$chatwoot.deleteCustomAttribute`)
over real HTTP on both databases: the keys go, the answer is the full Contact record, and
the account's agents hear contact.updated on /cable."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from server.services import SERVICES
from server.store import contacts as contacts_store
from tests.conftest import Visitor, World
from tests.test_realtime_events import agent_cable, relayed

PATH = "contact/destroy_custom_attributes"


async def _stored_attributes(client: TestClient, contact_id: int) -> dict:
    contact = await client.app[SERVICES].db.read(contacts_store.get_contact, contact_id)
    assert contact is not None
    return contact["custom_attributes"]


async def test_removes_the_keys_and_answers_the_contact(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    resp = await visitor.patch(
        "contact", {"email": "jo@x.io", "custom_attributes": {"plan": "pro", "seats": 3, "x": 1}}
    )
    assert resp.status == 200, await resp.text()
    await relayed(client)
    cable = await agent_cable(client, world, "admin")
    try:
        resp = await visitor.post(PATH, {"custom_attributes": ["plan", "x", "absent"]})
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert body["id"] == visitor.contact_id
        assert body["email"] == "jo@x.io"
        assert body["custom_attributes"] == {"seats": 3}
        assert body["account_id"] == world.account["id"]
        assert {"name", "phone_number", "identifier", "additional_attributes", "created_at"} <= set(
            body
        )
        assert await _stored_attributes(client, visitor.contact_id) == {"seats": 3}
        pushed = await cable.wait_event("contact.updated", lambda d: d["id"] == visitor.contact_id)
        assert pushed["custom_attributes"] == {"seats": 3}
        assert pushed["type"] == "contact"
        assert pushed["account_id"] == world.account["id"]
    finally:
        await cable.close()


async def test_unknown_keys_change_nothing(client: TestClient, visitor: Visitor) -> None:
    await visitor.patch("contact", {"custom_attributes": {"plan": "pro"}})
    for body in ({"custom_attributes": ["nope"]}, {}, {"custom_attributes": "nope"}):
        resp = await visitor.post(PATH, body)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["custom_attributes"] == {"plan": "pro"}
    assert await _stored_attributes(client, visitor.contact_id) == {"plan": "pro"}


async def test_only_the_callers_contact_changes(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    other = await Visitor(client, world.inbox["website_token"]).start()
    await other.patch("contact", {"custom_attributes": {"plan": "gold"}})
    await visitor.patch("contact", {"custom_attributes": {"plan": "pro"}})
    resp = await visitor.post(PATH, {"custom_attributes": ["plan"]})
    assert resp.status == 200
    assert await _stored_attributes(client, visitor.contact_id) == {}
    assert await _stored_attributes(client, other.contact_id) == {"plan": "gold"}


async def test_bad_requests(client: TestClient, world: World, visitor: Visitor) -> None:
    token = world.inbox["website_token"]
    resp = await client.post(
        f"/api/v1/widget/{PATH}?website_token={token}", json={"custom_attributes": ["a"]}
    )
    assert resp.status == 404  # no X-Auth-Token
    assert await resp.json() == {"error": "Resource could not be found"}
    resp = await client.post(
        f"/api/v1/widget/{PATH}?website_token=nope",
        json={"custom_attributes": ["a"]},
        headers={"X-Auth-Token": visitor.auth_token or ""},
    )
    assert resp.status == 404
    for bad in ({"custom_attributes": [1, 2]}, {"custom_attributes": {"a": 1}}):
        resp = await visitor.post(PATH, bad)
        assert resp.status == 400, bad
        assert "custom_attributes" in (await resp.json())["error"]
    resp = await visitor.post(PATH, {"custom_attributes": [f"k{i}" for i in range(101)]})
    assert resp.status == 400
    resp = await visitor.request("POST", PATH, data=b"{not json", **{})
    assert resp.status == 400
