"""The identity rules of server/widget/identity.py, one test per rule, on both databases,
over real HTTP and /cable. The first test is the takeover of issue 13 §1, step by step."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server.app import create_app
from server.auth import identifier_hash
from server.services import SERVICES
from server.store import accounts as accounts_store
from server.store.tables import contacts
from tests.cable import CableClient, visitor_identifier
from tests.conftest import Visitor, World

HMAC_FAILED = {"error": "HMAC failed: Invalid Identifier Hash Provided"}


def proof(world: World, identifier: str) -> str:
    return identifier_hash(world.inbox["hmac_token"], identifier)


async def contents(v: Visitor) -> list[str]:
    resp = await v.get("messages")
    assert resp.status == 200, await resp.text()
    return [m["content"] for m in (await resp.json())["payload"]]


async def contact_row(client: TestClient, contact_id: int) -> dict[str, Any]:
    async def op(conn: Any) -> dict[str, Any]:
        row = (await conn.execute(select(contacts).where(contacts.c.id == contact_id))).mappings()
        return dict(row.one())

    return await client.app[SERVICES].db.read(op)


async def verified_contacts(client: TestClient, identifier: str) -> list[int]:
    async def op(conn: Any) -> list[int]:
        rows = await conn.execute(
            select(contacts.c.id).where(
                contacts.c.identifier == identifier, contacts.c.identifier_verified.is_(True)
            )
        )
        return [r[0] for r in rows]

    return await client.app[SERVICES].db.read(op)


@pytest.mark.parametrize("path", ["contact/set_user", "contact"])
async def test_an_unverified_claim_does_not_capture_the_real_user(
    client: TestClient, world: World, path: str
) -> None:
    """Issue 13 §1: A claims V's identifier without the hash; V then proves it."""
    token = world.inbox["website_token"]
    attacker = await Visitor(client, token).start()
    resp = await attacker.patch(path, {"identifier": "victim-1"})
    assert resp.status == 200, await resp.text()
    spy = await CableClient.connect(client)
    await spy.subscribe(visitor_identifier(attacker.pubsub_token or ""))

    victim = await Visitor(client, token).start()
    resp = await victim.patch(
        "contact/set_user",
        {
            "identifier": "victim-1",
            "identifier_hash": proof(world, "victim-1"),
            "name": "Val",
            "email": "val@x.io",
        },
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["id"] == victim.contact_id  # V stays in V's own contact (rule 4c)
    assert body["id"] != attacker.contact_id
    assert "widget_auth_token" not in body

    await victim.send("my reset code is 123456")
    await attacker.send("attacker's own line")
    # The attacker's socket sees its own message, and never the victim's (same relay, in
    # commit order: the victim's would have come first).
    await spy.wait_event("message.created", lambda d: d["content"] == "attacker's own line")
    assert all("123456" not in str(e) for e in spy.events())
    assert await contents(attacker) == ["attacker's own line"]
    assert await contents(victim) == ["my reset code is 123456"]

    a_row = await contact_row(client, attacker.contact_id or 0)
    assert (a_row["name"], a_row["email"], bool(a_row["identifier_verified"])) == ("", None, False)
    v_row = await contact_row(client, victim.contact_id or 0)
    assert (v_row["name"], v_row["email"], bool(v_row["identifier_verified"])) == (
        "Val",
        "val@x.io",
        True,
    )
    await spy.close()


async def test_rule3_an_unproven_claim_never_reaches_the_verified_owner(
    client: TestClient, world: World
) -> None:
    token = world.inbox["website_token"]
    owner = await Visitor(client, token).start()
    await owner.patch(
        "contact/set_user", {"identifier": "u-1", "identifier_hash": proof(world, "u-1")}
    )
    await owner.send("owner's secret")

    claimer = await Visitor(client, token).start()
    resp = await claimer.patch("contact/set_user", {"identifier": "u-1", "name": "Mallory"})
    assert resp.status == 200
    body = await resp.json()
    assert body["id"] == claimer.contact_id and "widget_auth_token" not in body
    assert await contents(claimer) == []
    assert (await contact_row(client, owner.contact_id or 0))["name"] == ""
    claimed = await contact_row(client, claimer.contact_id or 0)
    assert claimed["identifier"] == "u-1" and not claimed["identifier_verified"]
    assert await verified_contacts(client, "u-1") == [owner.contact_id]


async def test_rule4b_a_proven_identifier_switches_and_old_tokens_keep_only_their_contact(
    client: TestClient, world: World
) -> None:
    token = world.inbox["website_token"]
    laptop = await Visitor(client, token).start()
    await laptop.patch(
        "contact/set_user", {"identifier": "u-2", "identifier_hash": proof(world, "u-2")}
    )
    await laptop.send("from the laptop")

    phone = await Visitor(client, token).start()
    await phone.send("anonymous question on the phone")
    old_pubsub = phone.pubsub_token or ""
    old_socket = await CableClient.connect(client)
    await old_socket.subscribe(visitor_identifier(old_pubsub))
    resp = await phone.patch(
        "contact/set_user", {"identifier": "u-2", "identifier_hash": proof(world, "u-2")}
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["id"] == laptop.contact_id

    switched = Visitor(client, token)
    switched.auth_token = body["widget_auth_token"]
    assert await contents(switched) == ["from the laptop"]
    # The phone's old token still reaches only the anonymous contact it was issued for.
    assert (await (await phone.get("contact")).json())["id"] == phone.contact_id
    assert await contents(phone) == ["anonymous question on the phone"]
    # And its old socket hears nothing of the verified contact's conversation.
    await laptop.send("second from the laptop")
    await phone.send("still anonymous")
    await old_socket.wait_event("message.created", lambda d: d["content"] == "still anonymous")
    assert all("laptop" not in str(e) for e in old_socket.events())
    await old_socket.close()


async def test_rule4c_an_anonymous_visitor_becomes_verified_in_place(
    visitor: Visitor, world: World
) -> None:
    await visitor.send("before login")
    resp = await visitor.patch(
        "contact/set_user", {"identifier": "u-3", "identifier_hash": proof(world, "u-3")}
    )
    body = await resp.json()
    assert body["id"] == visitor.contact_id and "widget_auth_token" not in body
    assert await contents(visitor) == ["before login"]
    assert await verified_contacts(visitor.client, "u-3") == [visitor.contact_id]


async def test_rule4d_proving_an_identifier_first_claimed_without_proof_starts_afresh(
    visitor: Visitor, world: World
) -> None:
    await visitor.patch("contact/set_user", {"identifier": "u-4", "name": "Claimed"})
    await visitor.send("said while unverified")
    resp = await visitor.patch(
        "contact/set_user", {"identifier": "u-4", "identifier_hash": proof(world, "u-4")}
    )
    body = await resp.json()
    assert body["id"] != visitor.contact_id
    fresh = Visitor(visitor.client, visitor.website_token)
    fresh.auth_token = body["widget_auth_token"]
    assert await contents(fresh) == []
    assert await verified_contacts(visitor.client, "u-4") == [body["id"]]
    old = await contact_row(visitor.client, visitor.contact_id or 0)
    assert not old["identifier_verified"]
    assert (await contact_row(visitor.client, body["id"]))["name"] == ""

    # A verified contact proving another identifier is someone else too.
    resp = await fresh.patch(
        "contact/set_user", {"identifier": "u-5", "identifier_hash": proof(world, "u-5")}
    )
    other = (await resp.json())["id"]
    assert other not in (body["id"], visitor.contact_id)
    assert await verified_contacts(visitor.client, "u-5") == [other]


async def test_rule4a_proving_your_own_identifier_again_changes_nothing(
    visitor: Visitor, world: World
) -> None:
    claim = {"identifier": "u-6", "identifier_hash": proof(world, "u-6")}
    await visitor.patch("contact/set_user", claim)
    resp = await visitor.patch("contact/set_user", {**claim, "name": "Six"})
    body = await resp.json()
    assert body["id"] == visitor.contact_id and body["has_name"]
    assert "widget_auth_token" not in body


async def test_rule5_two_visitors_proving_one_identifier_at_once_share_one_contact(
    client: TestClient, world: World
) -> None:
    token = world.inbox["website_token"]
    visitors = [await Visitor(client, token).start() for _ in range(4)]
    # Each has another identifier already, so each would make a new verified contact.
    for n, v in enumerate(visitors):
        await v.patch("contact/set_user", {"identifier": f"before-{n}"})
    claim = {"identifier": "u-7", "identifier_hash": proof(world, "u-7")}
    answers = await asyncio.gather(*(v.patch("contact/set_user", claim) for v in visitors))
    ids = set()
    for resp in answers:
        assert resp.status == 200, await resp.text()
        ids.add((await resp.json())["id"])
    assert len(ids) == 1
    assert await verified_contacts(client, "u-7") == list(ids)


@pytest.fixture
async def strict(client: TestClient, world: World) -> dict[str, Any]:
    async def op(conn: Any) -> dict[str, Any]:
        return await accounts_store.create_inbox(
            conn, account_id=world.account["id"], name="Strict", hmac_mandatory=True
        )

    return await client.app[SERVICES].db.write(op)


@pytest.mark.parametrize("path", ["contact/set_user", "contact"])
async def test_hmac_mandatory_refuses_every_unproven_identifier(
    client: TestClient, strict: dict[str, Any], path: str
) -> None:
    v = await Visitor(client, strict["website_token"]).start()
    for body in (
        {"identifier": "u-8"},
        {"identifier": "u-8", "identifier_hash": "0" * 64},
        {"identifier": "u-8", "identifier_hash": identifier_hash("wrong key", "u-8")},
    ):
        resp = await v.patch(path, {**body, "name": "N"})
        assert resp.status == 401, body
        assert await resp.json() == HMAC_FAILED
    row = await contact_row(client, v.contact_id or 0)
    assert (row["identifier"], row["name"]) == (None, "")  # nothing half-written

    good = identifier_hash(strict["hmac_token"], "u-8")
    resp = await v.patch(path, {"identifier": "u-8", "identifier_hash": good})
    assert resp.status == 200
    # Profile fields without an identifier need no hash.
    resp = await v.patch(path, {"name": "Eight", "custom_attributes": {"plan": "pro"}})
    assert resp.status == 200


async def test_a_claim_in_one_account_never_reaches_another(
    client: TestClient, world: World
) -> None:
    async def op(conn: Any) -> dict[str, Any]:
        account = await accounts_store.create_account(conn, "Other tenant")
        return await accounts_store.create_inbox(conn, account_id=account["id"], name="Theirs")

    theirs = await client.app[SERVICES].db.write(op)
    ours = await Visitor(client, world.inbox["website_token"]).start()
    await ours.patch(
        "contact/set_user", {"identifier": "u-9", "identifier_hash": proof(world, "u-9")}
    )
    await ours.send("ours")
    foreign = await Visitor(client, theirs["website_token"]).start()
    digest = identifier_hash(theirs["hmac_token"], "u-9")
    resp = await foreign.patch("contact/set_user", {"identifier": "u-9", "identifier_hash": digest})
    assert (await resp.json())["id"] == foreign.contact_id
    assert await contents(foreign) == []


async def test_profile_attributes_merge_and_a_blank_identifier_is_no_claim(
    visitor: Visitor,
) -> None:
    await visitor.patch("contact", {"custom_attributes": {"plan": "pro"}})
    resp = await visitor.patch("contact", {"identifier": "  ", "custom_attributes": {"seats": 3}})
    assert resp.status == 200
    row = await contact_row(visitor.client, visitor.contact_id or 0)
    assert row["custom_attributes"] == {"plan": "pro", "seats": 3}
    assert row["identifier"] is None


async def test_rule5_a_claim_that_loses_the_race_joins_the_winner(
    tmp_path: Any, aiohttp_client: Any
) -> None:
    """Deterministic race on PostgreSQL: another transaction has made the verified contact
    of "u-race" but not committed; the visitor's claim finds no owner, blocks on the unique
    index, fails when the other commits, and is retried onto the winner."""
    from tests.conftest import make_settings, temp_pg_database

    async with temp_pg_database() as url:
        client = await aiohttp_client(create_app(make_settings(url, tmp_path)))
        try:
            await _race(client)
        finally:
            await client.close()


async def _race(client: TestClient) -> None:
    import asyncpg

    from tests.conftest import build_world

    url = client.app[SERVICES].settings.database_url
    w = await build_world(client.app[SERVICES].db)
    v = await Visitor(client, w.inbox["website_token"]).start()
    await v.patch("contact/set_user", {"identifier": "someone-else"})

    dsn = url.replace("postgresql+asyncpg", "postgresql")
    held, watch = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        tx = held.transaction()
        await tx.start()
        winner = await held.fetchval(
            "INSERT INTO contacts (account_id, name, identifier, identifier_verified,"
            " avatar_url, blocked, additional_attributes, custom_attributes, created_at,"
            " updated_at) VALUES ($1, 'W', 'u-race', TRUE, '', FALSE, '{}', '{}', 0, 0)"
            " RETURNING id",
            w.account["id"],
        )
        digest = identifier_hash(w.inbox["hmac_token"], "u-race")
        request = asyncio.ensure_future(
            v.patch("contact/set_user", {"identifier": "u-race", "identifier_hash": digest})
        )
        deadline = asyncio.get_running_loop().time() + 10
        while not await watch.fetchval(  # the claim waits on our uncommitted row
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        ):
            assert asyncio.get_running_loop().time() < deadline, "the claim never blocked"
            assert not request.done(), await request.result().text()
            await asyncio.sleep(0.02)
        await tx.commit()
        resp = await request
    finally:
        await held.close()
        await watch.close()
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["id"] == winner
    assert "widget_auth_token" in body


async def test_config_never_reuses_a_token_of_another_inbox(
    client: TestClient, world: World
) -> None:
    a = await Visitor(client, world.inbox["website_token"]).start()
    resp = await client.post(
        f"/api/v1/widget/config?website_token={world.other_inbox['website_token']}",
        headers={"X-Auth-Token": a.auth_token or ""},
    )
    body = await resp.json()
    assert resp.status == 200
    assert body["contact"]["id"] != a.contact_id
    assert body["contact"]["pubsub_token"] != a.pubsub_token
