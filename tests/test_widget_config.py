"""Visitor identity over real HTTP, on both databases: POST /api/v1/widget/config, the
GET /widget page, and GET /api/v1/widget/inbox_members (contract §1.2, §1.3, §2.8)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import jwt
import orjson
from aiohttp.test_utils import TestClient

from server.auth import decode_contact_token
from tests.conftest import SECRET, World

NOT_FOUND = {"error": "Resource could not be found"}


async def config(client: TestClient, website_token: str, auth: str | None = None) -> Any:
    headers = {"X-Auth-Token": auth} if auth else {}
    return await client.post(
        f"/api/v1/widget/config?website_token={website_token}", headers=headers
    )


def page_globals(html: str) -> dict[str, Any]:
    out = {}
    for name in ("chatwootWebChannel", "chatwootPubsubToken", "authToken", "globalConfig"):
        match = re.search(rf"window\.{name} = (.*);\n", html)
        assert match, name
        out[name] = orjson.loads(match.group(1))
    return out


async def test_config_creates_a_contact_and_a_token(client: TestClient, world: World) -> None:
    resp = await config(client, world.inbox["website_token"])
    assert resp.status == 200
    body = await resp.json()
    assert set(body) == {"website_channel_config", "contact", "global_config"}
    cfg = body["website_channel_config"]
    assert cfg["website_token"] == world.inbox["website_token"]
    assert "end_conversation" in cfg["enabled_features"]
    for key in ("api_host", "auth_token", "website_name", "widget_color", "welcome_title"):
        assert key in cfg
    assert set(body["contact"]) == {
        "id",
        "name",
        "email",
        "phone_number",
        "identifier",
        "pubsub_token",
    }
    claims = decode_contact_token(SECRET, cfg["auth_token"])
    assert claims is not None
    assert claims["inbox_id"] == world.inbox["id"]
    assert set(claims) == {"source_id", "inbox_id", "iat", "exp"}
    assert claims["exp"] - claims["iat"] == 180 * 86400
    # Never the inbox's secrets.
    text = await resp.text()
    assert world.inbox["hmac_token"] not in text


async def test_config_reuses_the_contact_of_a_valid_token(client: TestClient, world: World) -> None:
    token = world.inbox["website_token"]
    first = await (await config(client, token)).json()
    old_jwt = first["website_channel_config"]["auth_token"]
    await asyncio.sleep(1.05)  # a fresh token has a later iat, so it differs from the old one
    again = await (await config(client, token, old_jwt)).json()
    assert again["contact"]["id"] == first["contact"]["id"]
    assert again["contact"]["pubsub_token"] == first["contact"]["pubsub_token"]
    new_jwt = again["website_channel_config"]["auth_token"]
    assert new_jwt != old_jwt  # always a fresh token
    assert (
        decode_contact_token(SECRET, new_jwt)["source_id"]
        == (  # type: ignore[index]
            decode_contact_token(SECRET, old_jwt)["source_id"]  # type: ignore[index]
        )
    )


async def test_config_with_a_bad_token_makes_a_new_contact(
    client: TestClient, world: World
) -> None:
    token = world.inbox["website_token"]
    first = await (await config(client, token)).json()
    good = first["website_channel_config"]["auth_token"]
    claims = decode_contact_token(SECRET, good)
    assert claims is not None
    forged = jwt.encode(claims, "another-secret-" + "y" * 40, algorithm="HS256")
    expired = jwt.encode({**claims, "iat": 1000, "exp": 2000}, SECRET, algorithm="HS256")
    other_inbox = (await (await config(client, world.other_inbox["website_token"])).json())[
        "website_channel_config"
    ]["auth_token"]
    seen = {first["contact"]["id"]}
    for bad in ("garbage", forged, expired, other_inbox):
        body = await (await config(client, token, bad)).json()
        assert body["contact"]["id"] not in seen, bad
        seen.add(body["contact"]["id"])


async def test_config_unknown_website_token(client: TestClient, world: World) -> None:
    resp = await config(client, "nope")
    assert resp.status == 404
    assert await resp.json() == NOT_FOUND
    resp = await client.post("/api/v1/widget/config")
    assert resp.status == 404
    assert await resp.json() == NOT_FOUND


async def test_widget_page(client: TestClient, world: World) -> None:
    token = world.inbox["website_token"]
    resp = await client.get(f"/widget?website_token={token}")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    html = await resp.text()
    g = page_globals(html)
    assert g["chatwootWebChannel"]["websiteToken"] == token
    assert len(g["chatwootPubsubToken"]) == 24
    claims = decode_contact_token(SECRET, g["authToken"])
    assert claims is not None and claims["inbox_id"] == world.inbox["id"]
    assert world.inbox["hmac_token"] not in html

    # The token works for the API, and a valid cw_conversation reuses the contact.
    headers = {"X-Auth-Token": g["authToken"]}
    contact = await (
        await client.get(f"/api/v1/widget/contact?website_token={token}", headers=headers)
    ).json()
    again = page_globals(
        await (
            await client.get(f"/widget?website_token={token}&cw_conversation={g['authToken']}")
        ).text()
    )
    assert again["authToken"] == g["authToken"]
    assert again["chatwootPubsubToken"] == g["chatwootPubsubToken"]
    contact_again = await (
        await client.get(
            f"/api/v1/widget/contact?website_token={token}",
            headers={"X-Auth-Token": again["authToken"]},
        )
    ).json()
    assert contact_again["id"] == contact["id"]

    # A bad cw_conversation is no error: a new visitor.
    fresh = page_globals(
        await (await client.get(f"/widget?website_token={token}&cw_conversation=bad")).text()
    )
    assert fresh["chatwootPubsubToken"] != g["chatwootPubsubToken"]
    assert fresh["authToken"] != g["authToken"]


async def test_widget_page_unknown_token(client: TestClient, world: World) -> None:
    for query in ("?website_token=nope", "", "?website_token=" + "a" * 500):
        resp = await client.get(f"/widget{query}")
        assert resp.status == 404
        assert resp.content_type == "application/json"
        assert await resp.json() == {"error": "web widget does not exist"}


async def test_inbox_members(client: TestClient, world: World) -> None:
    resp = await client.get(
        f"/api/v1/widget/inbox_members?website_token={world.inbox['website_token']}"
    )
    assert resp.status == 200
    body = await resp.json()
    assert body == {
        "payload": [
            {
                "id": world.agent["id"],
                "name": "Agent A",
                "avatar_url": "",
                "availability_status": "online",
            }
        ]
    }
    resp = await client.get(
        f"/api/v1/widget/inbox_members?website_token={world.other_inbox['website_token']}"
    )
    assert await resp.json() == {"payload": []}
    resp = await client.get("/api/v1/widget/inbox_members?website_token=nope")
    assert resp.status == 404
    assert await resp.json() == NOT_FOUND
