"""GET/PATCH /api/v1/widget/contact and PATCH .../contact/set_user over real HTTP, on both
databases (contract §2.7), with the HMAC identity check."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from server.auth import decode_contact_token, identifier_hash
from server.services import SERVICES
from server.store import contacts as contacts_store
from tests.conftest import SECRET, Visitor, World

HMAC_FAILED = {"error": "HMAC failed: Invalid Identifier Hash Provided"}
NOT_FOUND = {"error": "Resource could not be found"}


async def identity(
    client: TestClient, world: World, token: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(contact, contact_inbox) behind a contact JWT, read through the store."""
    claims = decode_contact_token(SECRET, token)
    assert claims is not None
    found = await client.app[SERVICES].db.read(
        contacts_store.find_identity, claims["inbox_id"], claims["source_id"]
    )
    assert found is not None
    return found


async def test_show(visitor: Visitor) -> None:
    resp = await visitor.get("contact")
    assert resp.status == 200
    assert await resp.json() == {
        "id": visitor.contact_id,
        "has_email": False,
        "has_name": False,
        "has_phone_number": False,
        "identifier": None,
    }


async def test_contact_needs_a_token(client: TestClient, world: World) -> None:
    token = world.inbox["website_token"]
    for method, path in (("GET", "contact"), ("PATCH", "contact"), ("PATCH", "contact/set_user")):
        resp = await client.request(
            method, f"/api/v1/widget/{path}?website_token={token}", json={"name": "x"}
        )
        assert resp.status == 404
        assert await resp.json() == NOT_FOUND


async def test_update(visitor: Visitor, world: World) -> None:
    resp = await visitor.patch(
        "contact",
        {
            "name": " Jane ",
            "email": "JANE@X.IO",
            "phone_number": "+1555",
            "custom_attributes": {"plan": "pro"},
            "additional_attributes": {"city": "Oslo"},
        },
    )
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {
        "id": visitor.contact_id,
        "has_email": True,
        "has_name": True,
        "has_phone_number": True,
    }
    contact, _ = await identity(visitor.client, world, visitor.auth_token or "")
    assert contact["name"] == "Jane"
    assert contact["email"] == "jane@x.io"
    assert contact["custom_attributes"] == {"plan": "pro"}
    assert contact["additional_attributes"]["city"] == "Oslo"
    shown = await (await visitor.get("contact")).json()
    assert shown["has_email"] and shown["has_name"] and shown["has_phone_number"]


async def test_update_refuses_a_bad_email(visitor: Visitor) -> None:
    resp = await visitor.patch("contact", {"email": "not-an-email"})
    assert resp.status == 422
    assert "error" in await resp.json()
    assert (await (await visitor.get("contact")).json())["has_email"] is False


async def test_set_user_with_a_good_hash_verifies(visitor: Visitor, world: World) -> None:
    digest = identifier_hash(world.inbox["hmac_token"], "user-1")
    resp = await visitor.patch(
        "contact/set_user",
        {"identifier": "user-1", "identifier_hash": digest, "email": "U1@x.io", "name": "U One"},
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body == {
        "id": visitor.contact_id,
        "has_email": True,
        "has_name": True,
        "has_phone_number": False,
    }
    contact, ci = await identity(visitor.client, world, visitor.auth_token or "")
    assert ci["hmac_verified"] is True or ci["hmac_verified"] == 1
    assert contact["identifier"] == "user-1"
    assert contact["email"] == "u1@x.io"
    assert (await (await visitor.get("contact")).json())["identifier"] == "user-1"


async def test_set_user_with_a_bad_hash_is_401(visitor: Visitor, world: World) -> None:
    good = identifier_hash(world.inbox["hmac_token"], "user-1")
    for bad in ("0" * 64, good[:-1] + ("0" if good[-1] != "0" else "1"), "", "é" * 10):
        resp = await visitor.patch(
            "contact/set_user", {"identifier": "user-1", "identifier_hash": bad, "name": "Mallory"}
        )
        assert resp.status == 401, (bad, await resp.text())
        assert await resp.json() == HMAC_FAILED
    # A hash made with another inbox's key is no good either.
    other = identifier_hash(world.other_inbox["hmac_token"], "user-1")
    resp = await visitor.patch(
        "contact/set_user", {"identifier": "user-1", "identifier_hash": other}
    )
    assert resp.status == 401
    contact, ci = await identity(visitor.client, world, visitor.auth_token or "")
    assert contact["identifier"] is None
    assert contact["name"] == ""
    assert not ci["hmac_verified"]


async def test_set_user_a_second_identifier_makes_a_new_identity(
    visitor: Visitor, world: World
) -> None:
    await visitor.send("I am the first user")
    resp = await visitor.patch("contact/set_user", {"identifier": "first", "name": "First"})
    assert resp.status == 200
    assert "widget_auth_token" not in await resp.json()

    resp = await visitor.patch("contact/set_user", {"identifier": "second", "name": "Second"})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    new_token = body["widget_auth_token"]
    assert body["id"] != visitor.contact_id
    claims = decode_contact_token(SECRET, new_token)
    assert claims is not None and claims["inbox_id"] == world.inbox["id"]

    # The new identity has none of the first user's history.
    second = Visitor(visitor.client, visitor.website_token)
    second.auth_token = new_token
    shown = await (await second.get("contact")).json()
    assert shown["id"] == body["id"]
    assert shown["identifier"] == "second"
    assert await (await second.get("conversations")).json() == {}
    assert (await (await second.get("messages")).json())["payload"] == []
    # The old token still belongs to the first user.
    first = await (await visitor.get("contact")).json()
    assert first["identifier"] == "first"
    assert len((await (await visitor.get("messages")).json())["payload"]) == 1


async def test_set_user_verified_switch_to_a_known_user(client: TestClient, world: World) -> None:
    """Two browsers of one site user: with the site's HMAC the second joins the first."""
    digest = identifier_hash(world.inbox["hmac_token"], "shared")
    a = await Visitor(client, world.inbox["website_token"]).start()
    resp = await a.patch("contact/set_user", {"identifier": "shared", "identifier_hash": digest})
    assert resp.status == 200
    await a.send("from laptop")

    b = await Visitor(client, world.inbox["website_token"]).start()
    await b.patch("contact/set_user", {"identifier": "other", "name": "B"})
    resp = await b.patch("contact/set_user", {"identifier": "shared", "identifier_hash": digest})
    assert resp.status == 200
    body = await resp.json()
    assert body["id"] == a.contact_id
    b.auth_token = body["widget_auth_token"]
    assert (await (await b.get("contact")).json())["id"] == a.contact_id


async def test_blank_identifier_is_refused(visitor: Visitor) -> None:
    resp = await visitor.patch("contact/set_user", {"identifier": "  "})
    assert resp.status == 422
    assert "error" in await resp.json()
