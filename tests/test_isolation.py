"""Tenancy over real HTTP, on both databases: a visitor's token reaches only that visitor's
conversation, and a contact JWT is good only with the website_token of its own inbox."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from server.services import SERVICES
from server.store import accounts as accounts_store
from server.store import conversations as conversations_store
from tests.conftest import Visitor, World

NOT_FOUND = {"error": "Resource could not be found"}


async def row(client: TestClient, account_id: int, display_id: int) -> dict[str, Any]:
    found = await client.app[SERVICES].db.read(
        conversations_store.by_display_id, account_id, display_id
    )
    assert found is not None
    return found


async def contents(visitor: Visitor, query: str = "") -> list[str]:
    resp = await visitor.client.get(
        f"/api/v1/widget/messages?website_token={visitor.website_token}{query}",
        headers={"X-Auth-Token": visitor.auth_token or ""},
    )
    assert resp.status == 200
    return [m["content"] for m in (await resp.json())["payload"]]


async def test_visitors_never_touch_each_others_conversation(
    client: TestClient, world: World
) -> None:
    token = world.inbox["website_token"]
    a = await Visitor(client, token).start()
    b = await Visitor(client, token).start()
    b_sent = await b.send("B's secret")
    b_conv = b_sent["conversation_id"]
    await b.post("conversations/set_custom_attributes", {"custom_attributes": {"b": "mine"}})

    # A, with no conversation of its own, sees nothing of B's and cannot act on it.
    assert await (await a.get("conversations")).json() == {}
    assert await contents(a) == []
    assert await contents(a, "&after=0") == []
    assert await contents(a, f"&after=0&before={b_sent['id'] + 1}") == []
    for method, path, body in (
        ("POST", "conversations/set_custom_attributes", {"custom_attributes": {"a": 1}}),
        ("POST", "conversations/destroy_custom_attributes", {"custom_attribute": ["b"]}),
        ("POST", "conversations/toggle_typing", {"typing_status": "on"}),
        ("GET", "conversations/toggle_status", None),
    ):
        resp = await a.request(method, path, json=body)
        assert resp.status == 404, (path, await resp.text())
        assert await resp.json() == NOT_FOUND
    assert (await a.post("conversations/update_last_seen", {})).status == 200

    # A's own writes land in A's own conversation.
    a_sent = await a.send("A's message")
    assert a_sent["conversation_id"] != b_conv
    await a.post("conversations/set_custom_attributes", {"custom_attributes": {"a": 1}})
    await a.post("conversations/destroy_custom_attributes", {"custom_attribute": ["b"]})
    assert (await a.get("conversations/toggle_status")).status == 200
    await a.post("conversations/update_last_seen", {})
    await a.post("conversations/voice_transcript", {"source": "user", "content": "A speaks"})

    b_row = await row(client, world.account["id"], b_conv)
    assert b_row["custom_attributes"] == {"b": "mine"}
    assert b_row["status"] == "open"
    assert b_row["contact_last_seen_at"] is None
    assert b_row["contact_id"] == b.contact_id
    assert await contents(b) == ["B's secret"]
    assert await (await b.get("conversations")).json() == {
        "id": b_conv,
        "inbox_id": world.inbox["id"],
        "contact_last_seen_at": 0,
        "status": "open",
    }
    assert "B's secret" not in await contents(a, "&after=0")


async def test_claiming_an_identifier_without_the_hmac_reads_nothing(
    client: TestClient, world: World
) -> None:
    token = world.inbox["website_token"]
    b = await Visitor(client, token).start()
    assert (await b.patch("contact/set_user", {"identifier": "victim"})).status == 200
    await b.send("victim's history")

    a = await Visitor(client, token).start()
    resp = await a.patch("contact/set_user", {"identifier": "victim", "email": "evil@x.io"})
    assert resp.status == 200
    body = await resp.json()
    assert body["id"] == a.contact_id
    assert "widget_auth_token" not in body
    assert await contents(a) == []
    assert await (await a.get("conversations")).json() == {}
    # A bad hash is refused outright.
    resp = await a.patch("contact/set_user", {"identifier": "victim", "identifier_hash": "00" * 32})
    assert resp.status == 401
    assert await contents(a) == []


async def test_a_jwt_for_one_inbox_is_refused_by_another(client: TestClient, world: World) -> None:
    a = await Visitor(client, world.inbox["website_token"]).start()
    await a.send("in inbox one")

    async def op(conn: Any) -> dict[str, Any]:
        account = await accounts_store.create_account(conn, "Other tenant")
        return await accounts_store.create_inbox(conn, account_id=account["id"], name="Theirs")

    foreign = await client.app[SERVICES].db.write(op)
    for website_token in (world.other_inbox["website_token"], foreign["website_token"]):
        stolen = Visitor(client, website_token)
        stolen.auth_token = a.auth_token
        for method, path, body in (
            ("GET", "conversations", None),
            ("POST", "conversations", {"message": {"content": "x"}}),
            ("GET", "messages", None),
            ("POST", "messages", {"message": {"content": "x"}}),
            ("GET", "contact", None),
            ("PATCH", "contact", {"name": "x"}),
            ("PATCH", "contact/set_user", {"identifier": "x"}),
            ("POST", "conversations/set_custom_attributes", {"custom_attributes": {"x": 1}}),
            ("POST", "conversations/toggle_typing", {"typing_status": "on"}),
            ("POST", "conversations/update_last_seen", {}),
            ("GET", "conversations/toggle_status", None),
            ("POST", "conversations/voice_transcript", {"source": "user", "content": "x"}),
        ):
            resp = await stolen.request(method, path, json=body)
            assert resp.status == 404, (website_token, path, await resp.text())
            assert await resp.json() == NOT_FOUND

        # /config and /widget treat it as no token at all: a new visitor of that inbox.
        resp = await client.post(
            f"/api/v1/widget/config?website_token={website_token}",
            headers={"X-Auth-Token": a.auth_token or ""},
        )
        assert (await resp.json())["contact"]["id"] != a.contact_id
    assert await contents(a) == ["in inbox one"]


async def test_display_ids_are_per_account(client: TestClient, world: World) -> None:
    """Conversation #1 of two accounts are different conversations."""

    async def op(conn: Any) -> dict[str, Any]:
        account = await accounts_store.create_account(conn, "Second")
        return await accounts_store.create_inbox(conn, account_id=account["id"], name="Second")

    second_inbox = await client.app[SERVICES].db.write(op)
    a = await Visitor(client, world.inbox["website_token"]).start()
    c = await Visitor(client, second_inbox["website_token"]).start()
    a_msg = await a.send("account one")
    c_msg = await c.send("account two")
    assert a_msg["conversation_id"] == c_msg["conversation_id"] == 1
    assert await contents(a) == ["account one"]
    assert await contents(c) == ["account two"]
    await c.post("conversations/set_custom_attributes", {"custom_attributes": {"c": 1}})
    assert (await row(client, world.account["id"], 1))["custom_attributes"] == {}
