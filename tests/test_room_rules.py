"""The rules of server/hub/room.py at their edges, over real /cable frames on both
databases, each held by a test that fails when it is flipped or deleted: what a
pubsub_token may be (1 to 128 characters, no NUL) and what an id may be (a positive
integer that fits a BIGINT, as a JSON number or a string of at most 19 ASCII digits).

Rows with the edge values (a 128-character token, a user whose id is 2**63-1) are written
straight into the database, so an edge that is accepted is seen to work, not merely to
reach the lookup."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import insert, update

from server.services import SERVICES
from server.store.tables import account_users, contact_inboxes, users
from tests.cable import CableClient, agent_identifier, visitor_identifier
from tests.conftest import Visitor, World

MAX_ID = 2**63 - 1


def identifier(**fields: Any) -> str:
    return json.dumps({"channel": "RoomChannel", **fields}, separators=(",", ":"))


async def write(client: TestClient, statement: Any) -> None:
    async def op(conn: Any) -> None:
        await conn.execute(statement)

    await client.app[SERVICES].db.write(op)


async def add_user(client: TestClient, account_id: int, user_id: int) -> dict[str, Any]:
    """An agent of the account with exactly this id."""
    user = {
        "id": user_id,
        "name": f"Edge {user_id}",
        "email": f"edge-{user_id}@x.io",
        "access_token": f"at-{user_id}",
        "pubsub_token": f"ps-{user_id}",
        "availability": "online",
        "avatar_url": "",
        "created_at": time.time(),
    }
    await write(client, insert(users).values(**user))
    await write(
        client, insert(account_users).values(account_id=account_id, user_id=user_id, role="agent")
    )
    return user


async def test_contact_token_of_128_subscribes_129_does_not(
    client: TestClient, world: World
) -> None:
    at_limit = await Visitor(client, world.inbox["website_token"]).start()
    over = await Visitor(client, world.inbox["website_token"]).start()
    tokens = {}
    for visitor, length in ((at_limit, 128), (over, 129)):
        token = "P" * (length - 3) + f"{length:03d}"
        await write(
            client,
            update(contact_inboxes)
            .where(contact_inboxes.c.pubsub_token == visitor.pubsub_token)
            .values(pubsub_token=token),
        )
        tokens[length] = token
    cable = await CableClient.connect(client)
    await cable.subscribe(visitor_identifier(tokens[128]))
    await cable.subscribe(visitor_identifier(tokens[129]), expect="reject_subscription")
    await cable.close()


async def test_agent_token_of_128_subscribes_129_does_not(client: TestClient, world: World) -> None:
    account_id = world.account["id"]
    for user, length, expect in (
        (world.agent, 128, "confirm_subscription"),
        (world.admin, 129, "reject_subscription"),
    ):
        token = "U" * (length - 3) + f"{length:03d}"
        await write(
            client, update(users).where(users.c.id == user["id"]).values(pubsub_token=token)
        )
        cable = await CableClient.connect(client)
        await cable.subscribe(agent_identifier(token, account_id, user["id"]), expect=expect)
        await cable.close()


async def test_nul_and_empty_tokens_are_rejected_and_the_socket_lives_on(
    client: TestClient, visitor: Visitor
) -> None:
    """PostgreSQL cannot even compare a text with a NUL: the token is refused before the
    lookup, with the usual reject, and the socket goes on serving."""
    cable = await CableClient.connect(client)
    for token in ("a\x00b", "\x00", visitor.pubsub_token + "\x00", ""):
        await cable.subscribe(identifier(pubsub_token=token), expect="reject_subscription")
    await cable.subscribe(
        identifier(pubsub_token=visitor.pubsub_token, account_id=1, user_id="a\x00"),
        expect="reject_subscription",
    )
    await cable.subscribe(visitor_identifier(visitor.pubsub_token))
    await cable.close()


async def test_an_empty_token_names_no_one(client: TestClient, visitor: Visitor) -> None:
    """Even a row whose token is empty (none should be) cannot be subscribed to with ""."""
    await write(
        client,
        update(contact_inboxes)
        .where(contact_inboxes.c.pubsub_token == visitor.pubsub_token)
        .values(pubsub_token=""),
    )
    cable = await CableClient.connect(client)
    await cable.subscribe(visitor_identifier(""), expect="reject_subscription")
    await cable.close()


async def test_a_null_user_id_is_a_visitor(client: TestClient, visitor: Visitor) -> None:
    cable = await CableClient.connect(client)
    await cable.subscribe(identifier(pubsub_token=visitor.pubsub_token, user_id=None))
    await cable.close()


async def test_ids_at_the_bigint_edge(client: TestClient, world: World) -> None:
    """2**63-1 is an id, as a number or as its 19 digits; 2**63, 20 characters of digits,
    and anything else are not, and are rejected before the database is asked (where an
    out-of-range integer makes the driver raise)."""
    account_id = world.account["id"]
    user = await add_user(client, account_id, MAX_ID)
    token = user["pubsub_token"]
    cable = await CableClient.connect(client)
    await cable.subscribe(agent_identifier(token, account_id, MAX_ID))
    await cable.subscribe(
        identifier(pubsub_token=token, account_id=account_id, user_id=str(MAX_ID))
    )
    await cable.subscribe(
        identifier(pubsub_token=token, account_id=str(account_id), user_id=MAX_ID)
    )
    for user_id in (
        MAX_ID + 1,
        str(MAX_ID + 1),
        "0" + str(MAX_ID),  # 20 characters, the same number
        2**64,
        -MAX_ID,
        str(MAX_ID) + ".0",
        float(MAX_ID),
    ):
        await cable.subscribe(
            identifier(pubsub_token=token, account_id=account_id, user_id=user_id),
            expect="reject_subscription",
        )
    for bad_account in (MAX_ID + 1, str(MAX_ID + 1), "0" * 19 + str(account_id)):
        await cable.subscribe(
            identifier(pubsub_token=token, account_id=bad_account, user_id=MAX_ID),
            expect="reject_subscription",
        )
    await cable.subscribe(
        agent_identifier(token, account_id, MAX_ID), expect="confirm_subscription"
    )
    await cable.close()


@pytest.mark.parametrize("user_id", [0, "0", "00"])
async def test_ids_are_positive(client: TestClient, world: World, user_id: Any) -> None:
    """A user row with id 0 exists; it still cannot be named: ids start at 1."""
    user = await add_user(client, world.account["id"], 0)
    cable = await CableClient.connect(client)
    await cable.subscribe(
        identifier(
            pubsub_token=user["pubsub_token"], account_id=world.account["id"], user_id=user_id
        ),
        expect="reject_subscription",
    )
    await cable.close()


async def test_ids_are_ascii_integers_not_bools(client: TestClient, world: World) -> None:
    """`true` is 1 to Python and "\\uff11" (a full-width digit) is 1 to int(): neither names
    user 1 or account 1."""
    agent, account_id = world.agent, world.account["id"]
    assert agent["id"] == 1 and account_id == 1  # a fresh database: the names above mean them
    token = agent["pubsub_token"]
    cable = await CableClient.connect(client)
    await cable.subscribe(agent_identifier(token, 1, 1))  # the real thing works
    for account, user_id in (
        (1, True),
        (True, 1),
        (1, "\uff11"),
        ("\uff11", 1),
        (1, "\u0661"),  # ARABIC-INDIC DIGIT ONE
        (1, 1.0),
        (1, " 1"),
        (1, "+1"),
    ):
        await cable.subscribe(
            identifier(pubsub_token=token, account_id=account, user_id=user_id),
            expect="reject_subscription",
        )
    await cable.subscribe(identifier(pubsub_token=token, account_id="1", user_id="1"))
    await cable.close()
