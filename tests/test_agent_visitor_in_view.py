"""Issue 19, the visitor in view, over real HTTP on both databases: assignment (and the
mine / unassigned filters), search by contact and message text, the contact (show, edit,
earlier conversations), inbox members, and the activity lines an agent's status and assignee
changes write in their transaction. Tenant scoping and bad input throughout."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import orjson
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server import events
from server.auth import identifier_hash
from server.services import SERVICES
from server.store import accounts as accounts_store
from server.store.tables import contacts, messages
from tests.cable import CableClient, agent_identifier, visitor_identifier
from tests.conftest import World
from tests.test_agent_api import (
    API,
    call,
    conv_url,
    display_id,
    get_ok,
    outbox_rows,
    post_ok,
    second_account,
    snapshot,
    started,
)
from tests.test_realtime_events import relayed


def acc_url(world: World, path: str) -> str:
    return f"{API}/accounts/{world.account['id']}{path}"


async def agent_lines(client: TestClient, world: World, did: int, who: Any) -> list[str]:
    """The conversation's activity lines, as the agent API lists them."""
    body = await get_ok(client, conv_url(world, did, "/messages"), who)
    return [m["content"] for m in body["payload"] if m["message_type"] == events.ACTIVITY]


async def second_agent(client: TestClient, world: World, inbox_ids: list[int]) -> dict[str, Any]:
    async def op(conn: Any) -> dict[str, Any]:
        return await accounts_store.create_agent(
            conn,
            account_id=world.account["id"],
            name="Bo",
            email=f"bo-{secrets.token_hex(4)}@x.io",
            inbox_ids=inbox_ids,
        )

    return await client.app[SERVICES].db.write(op)


# -- activity lines -----------------------------------------------------------------------------


async def test_status_changes_write_activity_lines(client: TestClient, world: World) -> None:
    visitor = await started(client, world.inbox["website_token"], "help")
    did = display_id(visitor)
    url = conv_url(world, did, "/toggle_status")
    await post_ok(client, url, world.agent, {"status": "resolved"})
    await post_ok(client, url, world.agent, {"status": "resolved"})  # unchanged: no line
    await post_ok(client, url, world.admin, {"status": "open"})
    await post_ok(client, url, world.agent, {"status": "pending"})
    assert await agent_lines(client, world, did, world.agent) == [
        "Conversation was marked resolved by Agent A",
        "Conversation was reopened by Admin",
        "Conversation was marked as pending by Agent A",
    ]
    # Agents hear each line; the visitor neither hears nor lists them (Chatwoot's rule).
    rows = [r for r in await outbox_rows(client) if r["event"] == events.MESSAGE_CREATED]
    lines = [r for r in rows if orjson.loads(r["payload"])["data"]["message_type"] == 2]
    assert len(lines) == 3
    assert all(r["channels"] == [events.inbox_channel(world.inbox["id"])] for r in lines)
    listed = await (await visitor.get("messages")).json()
    assert [m["content"] for m in listed["payload"]] == ["help"]


async def test_visitor_ending_the_chat_writes_no_agent_line(
    client: TestClient, world: World
) -> None:
    visitor = await started(client, world.inbox["website_token"])
    resp = await visitor.get("conversations/toggle_status")
    assert resp.status == 200
    assert await agent_lines(client, world, display_id(visitor), world.agent) == []


async def test_activity_line_commits_with_the_status(client: TestClient, world: World) -> None:
    """The line is in the status change's transaction: a conversation resolved by an agent
    always has it, and its message id follows the messages before it."""
    visitor = await started(client, world.inbox["website_token"], "one")
    did = display_id(visitor)
    await post_ok(client, conv_url(world, did, "/toggle_status"), world.agent, {})

    async def op(conn: Any) -> list[tuple[int, str]]:
        rows = await conn.execute(
            select(messages.c.message_type, messages.c.content).order_by(messages.c.id)
        )
        return [(r[0], r[1]) for r in rows]

    assert await client.app[SERVICES].db.read(op) == [
        (0, "one"),
        (2, "Conversation was marked resolved by Agent A"),
    ]


# -- assignment ---------------------------------------------------------------------------------


async def test_assign_to_me_another_agent_and_unassign(client: TestClient, world: World) -> None:
    bo = await second_agent(client, world, [world.inbox["id"]])
    visitor = await started(client, world.inbox["website_token"])
    did = display_id(visitor)
    url = conv_url(world, did, "/assignments")

    body = await post_ok(client, url, world.agent, {"assignee_id": world.agent["id"]})
    assert body["id"] == world.agent["id"] and body["name"] == "Agent A"
    mine = await get_ok(client, conv_url(world) + "?assignee_type=me", world.agent)
    assert [c["id"] for c in mine["data"]["payload"]] == [did]
    assert mine["data"]["meta"] == {"mine_count": 1, "unassigned_count": 0, "all_count": 1}
    unassigned = await get_ok(client, conv_url(world) + "?assignee_type=unassigned", world.agent)
    assert unassigned["data"]["payload"] == []

    body = await post_ok(client, url, world.agent, {"assignee_id": bo["id"]})
    assert body["id"] == bo["id"]
    conv = await get_ok(client, conv_url(world, did), world.agent)
    assert conv["meta"]["assignee"]["id"] == bo["id"]
    assert (await get_ok(client, conv_url(world) + "?assignee_type=me", world.agent))["data"][
        "payload"
    ] == []
    assert [
        c["id"]
        for c in (await get_ok(client, conv_url(world) + "?assignee_type=me", bo))["data"][
            "payload"
        ]
    ] == [did]

    # Again the same assignee: nothing written.
    before = await snapshot(client)
    await post_ok(client, url, world.agent, {"assignee_id": bo["id"]})
    assert await snapshot(client) == before

    status, body = await call(client, "POST", url, world.admin, {"assignee_id": None})
    assert status == 200 and body is None
    unassigned = await get_ok(client, conv_url(world) + "?assignee_type=unassigned", world.agent)
    assert [c["id"] for c in unassigned["data"]["payload"]] == [did]

    assert await agent_lines(client, world, did, world.agent) == [
        "Agent A self-assigned this conversation",
        "Assigned to Bo by Agent A",
        "Conversation unassigned by Admin",
    ]
    rows = await outbox_rows(client)
    changed = [r for r in rows if r["event"] == events.ASSIGNEE_CHANGED]
    assert [orjson.loads(r["payload"])["data"]["meta"]["assignee"] for r in changed][-1] is None
    assert len(changed) == 3
    assert all(r["channels"] == [events.inbox_channel(world.inbox["id"])] for r in changed)
    updated = [
        orjson.loads(r["payload"])["data"]
        for r in rows
        if r["event"] == events.CONVERSATION_UPDATED
    ]
    assert [u["meta"]["assignee"] and u["meta"]["assignee"]["id"] for u in updated] == [
        world.agent["id"],
        bo["id"],
        None,
    ]


async def test_assignment_accepts_only_agents_of_the_inbox(
    client: TestClient, world: World
) -> None:
    outside = await second_agent(client, world, [world.other_inbox["id"]])
    _, stranger = await second_account(client)
    visitor = await started(client, world.inbox["website_token"])
    url = conv_url(world, display_id(visitor), "/assignments")
    before = await snapshot(client)
    for assignee in (outside["id"], stranger["id"], 999_999):
        status, body = await call(client, "POST", url, world.agent, {"assignee_id": assignee})
        assert status == 422, body
        assert body == {"error": "assignee_id must be an agent of the conversation's inbox"}
    for bad in ("x", 1.5, True, [1], {"id": 1}, -1, 0, 2**63):
        status, body = await call(client, "POST", url, world.agent, {"assignee_id": bad})
        assert status == 400, (bad, body)
        assert body == {"error": "assignee_id must be an agent's id or null"}
    status, _ = await call(client, "POST", url, world.agent, [1])
    assert status == 400
    # No assignee_id (Chatwoot's team assignment): nothing changes, null.
    status, body = await call(client, "POST", url, world.agent, {"team_id": 1})
    assert (status, body) == (200, None)
    assert await snapshot(client) == before
    # An administrator of the account answers every inbox.
    body = await post_ok(client, url, world.agent, {"assignee_id": world.admin["id"]})
    assert body["id"] == world.admin["id"]


async def test_assignment_is_scoped_like_every_conversation(
    client: TestClient, world: World
) -> None:
    theirs = await started(client, world.other_inbox["website_token"])
    url = conv_url(world, display_id(theirs), "/assignments")
    for payload in ({"assignee_id": None}, {}):
        status, body = await call(client, "POST", url, world.agent, payload)
        assert status == 404 and body == {"error": "Resource could not be found"}
    _, outsider = await second_account(client)
    status, _ = await call(client, "POST", url, outsider, {"assignee_id": None})
    assert status == 401


async def test_inbox_members(client: TestClient, world: World) -> None:
    bo = await second_agent(client, world, [world.inbox["id"]])
    body = await get_ok(client, acc_url(world, f"/inbox_members/{world.inbox['id']}"), bo)
    ids = [u["id"] for u in body["payload"]]
    assert ids == sorted([world.agent["id"], world.admin["id"], bo["id"]])
    assert all("access_token" not in u and "pubsub_token" not in u for u in body["payload"])
    for inbox_id in (world.other_inbox["id"], 999_999, "x"):
        status, got = await call(
            client, "GET", acc_url(world, f"/inbox_members/{inbox_id}"), world.agent
        )
        assert status == 404, got


async def test_assignee_type_bad_value_is_400(client: TestClient, world: World) -> None:
    status, body = await call(client, "GET", conv_url(world) + "?assignee_type=them", world.agent)
    assert status == 400
    assert body == {"error": "assignee_type must be one of: me, unassigned, assigned, all"}


# -- search -------------------------------------------------------------------------------------


async def test_search_by_message_text_and_contact(client: TestClient, world: World) -> None:
    ada = await started(client, world.inbox["website_token"], "My invoice 42_7% is wrong")
    resp = await ada.patch("contact", {"name": "Ada Lovelace", "email": "ada@calc.example"})
    assert resp.status == 200
    bo = await started(client, world.inbox["website_token"], "where is my parcel")
    theirs = await started(client, world.other_inbox["website_token"], "another invoice")
    search = conv_url(world, "", "/search")

    async def found(q: str, who: Any = None) -> list[int]:
        resp = await client.get(
            search,
            params={"q": q},
            headers={"api_access_token": (who or world.agent)["access_token"]},
        )
        assert resp.status == 200, await resp.text()
        return [c["id"] for c in (await resp.json())["data"]["payload"]]

    assert await found("INVOICE") == [display_id(ada)]  # the other inbox is not the agent's
    assert sorted(await found("invoice", world.admin)) == sorted(
        [display_id(ada), display_id(theirs)]
    )
    assert await found("lovelace") == [display_id(ada)]
    assert await found("calc.example") == [display_id(ada)]
    assert await found("parcel") == [display_id(bo)]
    # Wildcards are literal: "%" and "_" match only themselves.
    assert await found("2_7%") == [display_id(ada)]
    assert await found("%%") == []
    assert await found("__") == []
    # Resolved conversations are found too; activity lines are not searched.
    await post_ok(client, conv_url(world, display_id(bo), "/toggle_status"), world.agent, {})
    assert await found("parcel") == [display_id(bo)]
    assert await found("marked resolved") == []


async def test_search_pages_and_scopes(client: TestClient, world: World) -> None:
    _, outsider = await second_account(client)
    await started(client, world.inbox["website_token"], "needle in a haystack")
    search = conv_url(world, "", "/search")
    status, _ = await call(client, "GET", search + "?q=needle", outsider)
    assert status == 401
    body = await get_ok(client, search + "?q=needle&page=2", world.agent)
    assert body["data"]["payload"] == []
    assert body["data"]["meta"]["all_count"] == 1
    for q in ("", "a", " a ", "x" * 101):
        status, body = await call(client, "GET", f"{search}?q={q}", world.agent)
        assert status == 400, q
        assert body == {"error": "q must be 2 to 100 characters"}
    status, _ = await call(client, "GET", search + "?q=ok&page=0", world.agent)
    assert status == 400


# -- contacts -----------------------------------------------------------------------------------


async def test_contact_show_edit_and_conversations(client: TestClient, world: World) -> None:
    visitor = await started(client, world.inbox["website_token"], "first")
    did = display_id(visitor)
    url = acc_url(world, f"/contacts/{visitor.contact_id}")
    shown = (await get_ok(client, url, world.agent))["payload"]
    assert shown["id"] == visitor.contact_id
    assert shown["identifier_verified"] is False

    status, body = await call(
        client,
        "PUT",
        url,
        world.agent,
        {"name": " Grace Hopper ", "email": "Grace@Navy.example", "phone_number": "+14155552671"},
    )
    assert status == 200, body
    got = body["payload"]
    assert (got["name"], got["email"], got["phone_number"]) == (
        "Grace Hopper",
        "grace@navy.example",
        "+14155552671",
    )
    conv = await get_ok(client, conv_url(world, did), world.agent)
    assert conv["meta"]["sender"]["name"] == "Grace Hopper"
    rows = [r for r in await outbox_rows(client) if r["event"] == events.CONTACT_UPDATED]
    assert len(rows) == 1
    assert rows[0]["channels"] == [events.account_channel(world.account["id"])]
    assert orjson.loads(rows[0]["payload"])["data"]["email"] == "grace@navy.example"

    # Chatwoot's nested shape; clearing the phone number.
    status, body = await call(client, "PATCH", url, world.agent, {"contact": {"phone_number": ""}})
    assert status == 200 and body["payload"]["phone_number"] is None

    # The widget resolves it; a new one opens: both are the contact's conversations.
    assert (await visitor.get("conversations/toggle_status")).status == 200
    resp = await visitor.post("conversations", {"message": {"content": "again"}})
    assert resp.status == 200
    newer = (await resp.json())["id"]
    listed = await get_ok(client, url + "/conversations", world.agent)
    assert [c["id"] for c in listed["payload"]] == [newer, did]


async def test_contact_bad_input_changes_nothing(client: TestClient, world: World) -> None:
    visitor = await started(client, world.inbox["website_token"])
    other = await started(client, world.inbox["website_token"])
    resp = await other.patch("contact", {"email": "taken@x.example"})
    assert resp.status == 200
    url = acc_url(world, f"/contacts/{visitor.contact_id}")

    async def contact_row() -> Any:
        async def op(conn: Any) -> Any:
            rows = await conn.execute(select(contacts).order_by(contacts.c.id))
            return [tuple(r) for r in rows]

        return await client.app[SERVICES].db.read(op)

    before = await contact_row()
    n_events = len(await outbox_rows(client))
    cases: list[tuple[Any, int, str]] = [
        ({"name": "x" * 256}, 400, "name is too long (at most 255 characters)"),
        ({"name": ["x"]}, 400, "name must be a string"),
        ({"email": "nope"}, 422, "email is not a valid email address"),
        ({"email": "taken@x.example"}, 422, "email has already been taken"),
        (
            {"phone_number": "555-1234"},
            422,
            "phone_number must be in E.164 format, e.g. +14155552671",
        ),
        (
            {"phone_number": "+1" + "2" * 40},
            400,
            "phone_number is too long (at most 32 characters)",
        ),
        ({}, 400, "nothing to change: send name, email or phone_number"),
        ({"avatar_url": "x"}, 400, "nothing to change: send name, email or phone_number"),
    ]
    for body, status, error in cases:
        got_status, got = await call(client, "PUT", url, world.agent, body)
        assert (got_status, got) == (status, {"error": error}), body
    assert await contact_row() == before
    assert len(await outbox_rows(client)) == n_events


async def test_contacts_are_scoped_to_visible_inboxes(client: TestClient, world: World) -> None:
    theirs = await started(client, world.other_inbox["website_token"])
    _, outsider = await second_account(client)
    url = acc_url(world, f"/contacts/{theirs.contact_id}")
    for method, suffix, body in [
        ("GET", "", None),
        ("PUT", "", {"name": "x"}),
        ("GET", "/conversations", None),
    ]:
        status, got = await call(client, method, url + suffix, world.agent, body)
        assert status == 404, (method, suffix, got)
        assert got == {"error": "Resource could not be found"}
        status, _ = await call(client, method, url + suffix, outsider, body)
        assert status == 401
    status, _ = await call(client, "GET", acc_url(world, "/contacts/abc"), world.agent)
    assert status == 404
    # The administrator sees every inbox of the account.
    assert (await get_ok(client, url, world.admin))["payload"]["id"] == theirs.contact_id


# -- over /cable --------------------------------------------------------------------------------


async def test_assignment_and_its_line_reach_agents_live_and_the_visitor_not(
    client: TestClient, world: World
) -> None:
    visitor = await started(client, world.inbox["website_token"])
    did = display_id(visitor)
    await relayed(client)
    agent_socket = await CableClient.connect(client)
    await agent_socket.subscribe(
        agent_identifier(world.agent["pubsub_token"], world.account["id"], world.agent["id"])
    )
    visitor_socket = await CableClient.connect(client)
    await visitor_socket.subscribe(visitor_identifier(visitor.pubsub_token or ""))
    try:
        url = conv_url(world, did, "/assignments")
        await post_ok(client, url, world.agent, {"assignee_id": world.agent["id"]})
        line = await agent_socket.wait_event(events.MESSAGE_CREATED)
        assert line["message_type"] == events.ACTIVITY
        assert line["content"] == "Agent A self-assigned this conversation"
        changed = await agent_socket.wait_event(events.ASSIGNEE_CHANGED)
        assert changed["meta"]["assignee"]["id"] == world.agent["id"]
        updated = await agent_socket.wait_event(events.CONVERSATION_UPDATED)
        assert updated["meta"]["assignee"]["id"] == world.agent["id"]
        # The visitor hears the conversation change; then a reply, which follows the line and
        # assignee.changed in commit order: neither of those reached the visitor before it.
        seen = await visitor_socket.wait_event(events.CONVERSATION_UPDATED)
        assert seen["meta"]["assignee"]["id"] == world.agent["id"]
        await post_ok(client, conv_url(world, did, "/messages"), world.agent, {"content": "hi"})
        await visitor_socket.wait_event(events.MESSAGE_CREATED, lambda d: d["content"] == "hi")
        got = [e["event"] for e in visitor_socket.events() if e["event"] != "presence.update"]
        assert events.ASSIGNEE_CHANGED not in got
        assert [e["data"]["content"] for e in visitor_socket.events(events.MESSAGE_CREATED)] == [
            "hi"
        ]
    finally:
        await agent_socket.close()
        await visitor_socket.close()


async def test_contact_shows_a_proven_identifier_as_verified(
    client: TestClient, world: World
) -> None:
    plain = await started(client, world.inbox["website_token"])
    resp = await plain.patch("contact/set_user", {"identifier": "plain-1"})
    assert resp.status == 200
    shown = await get_ok(client, acc_url(world, f"/contacts/{plain.contact_id}"), world.agent)
    assert (shown["payload"]["identifier"], shown["payload"]["identifier_verified"]) == (
        "plain-1",
        False,
    )
    proven = await started(client, world.inbox["website_token"])
    proof = identifier_hash(world.inbox["hmac_token"], "proven-1")
    resp = await proven.patch(
        "contact/set_user", {"identifier": "proven-1", "identifier_hash": proof}
    )
    assert resp.status == 200, await resp.text()
    assert "widget_auth_token" not in await resp.json()  # still the visitor's own contact
    shown = await get_ok(client, acc_url(world, f"/contacts/{proven.contact_id}"), world.agent)
    assert (shown["payload"]["identifier"], shown["payload"]["identifier_verified"]) == (
        "proven-1",
        True,
    )


async def test_search_is_rate_limited_per_agent(client: TestClient, world: World) -> None:
    """A script searching in a loop meets a 429 with Retry-After (each search scans the
    agent's messages); another agent can still search."""
    search = conv_url(world, "", "/search") + "?q=needle"
    statuses = []
    for _ in range(200):  # the default budget is 60 at once
        status, body = await call(client, "GET", search, world.agent)
        statuses.append(status)
        if status == 429:
            assert "conversation searches" in body["error"]
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {200}
    status, _ = await call(client, "GET", search, world.admin)
    assert status == 200


async def test_two_contacts_given_one_email_at_once(client: TestClient, world: World) -> None:
    """Two agents give two contacts the same email at the same moment: one edit wins, the
    other is the 422 a later edit would get (on PostgreSQL the two run in parallel)."""

    async def holders(conn: Any, email: str) -> int:
        rows = await conn.execute(select(contacts.c.id).where(contacts.c.email == email))
        return len(rows.all())

    for round_ in range(5):
        first = await started(client, world.inbox["website_token"])
        second = await started(client, world.inbox["website_token"])
        email = f"shared-{round_}-{secrets.token_hex(3)}@x.example"
        body = {"email": email}
        results = await asyncio.gather(
            *(
                call(client, "PUT", acc_url(world, f"/contacts/{v.contact_id}"), who, body)
                for v, who in ((first, world.agent), (second, world.admin))
            )
        )
        assert sorted(status for status, _ in results) == [200, 422], results
        assert await client.app[SERVICES].db.read(holders, email) == 1
