"""Labels over real HTTP on both databases (issue 17 item 3): the account's labels
(GET/POST /api/v1/accounts/{id}/labels), a conversation's (GET/POST .../labels, replacing the
set), the widget's add and remove calls (204, an unknown label ignored), labels in the
conversation payloads and `conversation.updated` on real sockets, the bounds, and
`python -m server admin create-label`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.services import SERVICES
from server.store import label_writes
from tests.conftest import Visitor, World, build_world
from tests.test_admin_cli import admin_in_process as run_admin
from tests.test_admin_cli import one_json_object
from tests.test_agent_api import call, started
from tests.test_realtime_events import agent_cable, relayed, visitor_cable

API = "/api/v1"


def labels_url(world: World) -> str:
    return f"{API}/accounts/{world.account['id']}/labels"


def conv_labels_url(world: World, display_id: int | str) -> str:
    return f"{API}/accounts/{world.account['id']}/conversations/{display_id}/labels"


async def make_label(client: TestClient, world: World, title: str, **extra: Any) -> Any:
    status, body = await call(
        client, "POST", labels_url(world), world.admin, {"title": title, **extra}
    )
    assert status == 200, body
    return body


async def test_an_administrator_creates_labels_and_every_agent_lists_them(
    client: TestClient, world: World
) -> None:
    made = await make_label(client, world, "VIP", description="Big spender", color="#FF0000")
    assert made == {
        "id": made["id"],
        "title": "vip",  # lower case, as Chatwoot stores titles
        "description": "Big spender",
        "color": "#ff0000",
        "show_on_sidebar": True,
    }
    # Chatwoot's nested form too.
    status, nested = await call(
        client, "POST", labels_url(world), world.admin, {"label": {"title": "billing-2_x"}}
    )
    assert status == 200 and nested["title"] == "billing-2_x" and nested["color"] == "#1f93ff"

    status, listed = await call(client, "GET", labels_url(world), world.agent)
    assert status == 200
    assert [label["title"] for label in listed["payload"]] == ["billing-2_x", "vip"]
    assert listed["payload"][1] == made


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"title": "vip"}, 422, "Title has already been taken"),
        ({"title": "VIP"}, 422, "Title has already been taken"),
        ({"title": ""}, 422, "can't be blank"),
        ({}, 422, "can't be blank"),
        ({"title": "two words"}, 422, "letters, digits"),
        ({"title": "semi;colon"}, 422, "letters, digits"),
        ({"title": "x" * 256}, 422, "too long"),
        ({"title": 7}, 400, "must be a string"),
        ({"title": ["a"]}, 400, "must be a string"),
        ({"title": "ok", "color": "red"}, 422, "hex colour"),
        ({"title": "ok", "show_on_sidebar": "yes"}, 400, "true or false"),
        ({"title": "ok", "description": "d" * 1025}, 400, "too long"),
    ],
)
async def test_a_bad_label_is_refused_and_nothing_is_written(
    client: TestClient, world: World, body: dict[str, Any], status: int, says: str
) -> None:
    await make_label(client, world, "vip")
    got, answer = await call(client, "POST", labels_url(world), world.admin, body)
    assert got == status, answer
    assert says in answer["error"]
    _, listed = await call(client, "GET", labels_url(world), world.admin)
    assert [label["title"] for label in listed["payload"]] == ["vip"]


async def test_who_may_list_and_create_labels(client: TestClient, world: World) -> None:
    status, body = await call(client, "POST", labels_url(world), world.agent, {"title": "x"})
    assert (status, body) == (401, {"error": "You are not authorized to do this action"})
    other = await build_world(client.app[SERVICES].db)
    await make_label(client, other, "theirs")
    for method in ("GET", "POST"):
        status, body = await call(client, method, labels_url(world), other.admin, {"title": "y"})
        assert (status, body) == (401, {"error": "You are not authorized to access this account"})
    resp = await client.get(labels_url(world))
    assert resp.status == 401
    _, listed = await call(client, "GET", labels_url(world), world.admin)
    assert listed == {"payload": []}  # the other account's label is its own


async def test_an_account_has_a_bounded_number_of_labels(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(label_writes, "MAX_PER_ACCOUNT", 2)
    await make_label(client, world, "one")
    await make_label(client, world, "two")
    status, body = await call(client, "POST", labels_url(world), world.admin, {"title": "three"})
    assert status == 422 and "at most 2 labels" in body["error"]


async def test_an_agent_replaces_a_conversations_labels_with_events(
    client: TestClient, world: World
) -> None:
    visitor = await started(client, world.inbox["website_token"])
    did = visitor.display_id  # type: ignore[attr-defined]
    await relayed(client)
    acable = await agent_cable(client, world)
    vcable = await visitor_cable(client, visitor)

    status, body = await call(client, "GET", conv_labels_url(world, did), world.agent)
    assert (status, body) == (200, {"payload": []})
    status, body = await call(
        client, "POST", conv_labels_url(world, did), world.agent, {"labels": ["Billing", "vip"]}
    )
    assert (status, body) == (200, {"payload": ["billing", "vip"]})
    for cable in (acable, vcable):
        updated = await cable.wait_event("conversation.updated")
        assert updated["id"] == did and updated["labels"] == ["billing", "vip"]

    status, body = await call(
        client, "POST", conv_labels_url(world, did), world.agent, {"labels": ["vip", "vip"]}
    )
    assert (status, body) == (200, {"payload": ["vip"]})
    for cable in (acable, vcable):
        await cable.wait_event("conversation.updated", lambda d: d["labels"] == ["vip"])

    # In every conversation payload and the messages' meta.
    base = f"{API}/accounts/{world.account['id']}/conversations"
    _, shown = await call(client, "GET", f"{base}/{did}", world.agent)
    assert shown["labels"] == ["vip"]
    _, listed = await call(client, "GET", base, world.agent)
    assert listed["data"]["payload"][0]["labels"] == ["vip"]
    _, msgs = await call(client, "GET", f"{base}/{did}/messages", world.agent)
    assert msgs["meta"]["labels"] == ["vip"]
    status, body = await call(client, "GET", conv_labels_url(world, did), world.agent)
    assert body == {"payload": ["vip"]}
    await acable.close()
    await vcable.close()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 400),
        ({"labels": "vip"}, 400),
        ({"labels": [1]}, 400),
        ({"labels": ["two words"]}, 422),
        ({"labels": [""]}, 422),
        ({"labels": [f"l{i}" for i in range(51)]}, 422),
    ],
)
async def test_bad_conversation_labels_change_nothing(
    client: TestClient, world: World, body: dict[str, Any], status: int
) -> None:
    visitor = await started(client, world.inbox["website_token"])
    did = visitor.display_id  # type: ignore[attr-defined]
    await call(client, "POST", conv_labels_url(world, did), world.agent, {"labels": ["kept"]})
    got, answer = await call(client, "POST", conv_labels_url(world, did), world.agent, body)
    assert got == status, answer
    _, now = await call(client, "GET", conv_labels_url(world, did), world.agent)
    assert now == {"payload": ["kept"]}


async def test_conversation_labels_are_scoped_to_the_agents_inboxes(
    client: TestClient, world: World
) -> None:
    elsewhere = await started(client, world.other_inbox["website_token"])
    did = elsewhere.display_id  # type: ignore[attr-defined]
    for method in ("GET", "POST"):
        status, _ = await call(
            client, method, conv_labels_url(world, did), world.agent, {"labels": ["x"]}
        )
        assert status == 404  # the agent is not a member of the other inbox
        status, _ = await call(
            client, method, conv_labels_url(world, 999_999), world.admin, {"labels": ["x"]}
        )
        assert status == 404
        status, _ = await call(
            client, method, conv_labels_url(world, "nope"), world.admin, {"labels": ["x"]}
        )
        assert status == 404
    status, body = await call(client, "GET", conv_labels_url(world, did), world.admin)
    assert (status, body) == (200, {"payload": []})


async def test_the_widget_adds_and_removes_the_accounts_labels(
    client: TestClient, world: World, visitor: Visitor
) -> None:
    await make_label(client, world, "vip")
    # No conversation yet: nothing to label, still 204.
    resp = await visitor.post("labels", {"label": "vip"})
    assert resp.status == 204
    sent = await visitor.send("hello")
    did = sent["conversation_id"]
    await relayed(client)
    vcable = await visitor_cable(client, visitor)
    acable = await agent_cable(client, world)

    resp = await visitor.post("labels", {"label": "VIP"})
    assert resp.status == 204 and await resp.read() == b""
    for cable in (vcable, acable):
        await cable.wait_event("conversation.updated", lambda d: d["labels"] == ["vip"])
    for unknown in ({"label": "not-a-label"}, {"label": "bad title"}, {"label": ""}, {}):
        resp = await visitor.post("labels", unknown)
        assert resp.status == 204  # ignored, as Chatwoot
    _, body = await call(client, "GET", conv_labels_url(world, did), world.agent)
    assert body == {"payload": ["vip"]}

    resp = await visitor.request("DELETE", "labels/vip")
    assert resp.status == 204
    for cable in (vcable, acable):
        await cable.wait_event("conversation.updated", lambda d: d["labels"] == [])
    resp = await visitor.request("DELETE", "labels/never-there")
    assert resp.status == 204
    _, body = await call(client, "GET", conv_labels_url(world, did), world.agent)
    assert body == {"payload": []}
    await vcable.close()
    await acable.close()


async def test_the_widget_label_calls_need_a_visitor(client: TestClient, world: World) -> None:
    token = world.inbox["website_token"]
    resp = await client.post(f"{API}/widget/labels?website_token={token}", json={"label": "x"})
    assert resp.status == 404
    resp = await client.delete(
        f"{API}/widget/labels/x?website_token={token}", headers={"X-Auth-Token": "forged"}
    )
    assert resp.status == 404
    resp = await client.post(f"{API}/widget/labels?website_token=nope", json={"label": "x"})
    assert resp.status == 404


async def test_admin_create_label(db_url: str, tmp_path: Path) -> None:
    code, out, err = await run_admin(db_url, tmp_path, "create-account", "--name", "A")
    assert code == 0, err
    account = str(one_json_object(out)["id"])
    code, out, err = await run_admin(
        db_url, tmp_path, "create-label", "--account", account, "--title", "Urgent"
    )
    assert code == 0, err
    label = one_json_object(out)
    assert label["title"] == "urgent" and label["color"] == "#1f93ff"
    code, out, err = await run_admin(
        db_url, tmp_path, "create-label", "--account", account, "--title", "urgent"
    )
    assert code == 2 and "Title has already been taken" in err and out == ""
    code, out, err = await run_admin(
        db_url, tmp_path, "create-label", "--account", account, "--title", "a b"
    )
    assert code == 2 and "letters, digits" in err
    code, out, err = await run_admin(
        db_url, tmp_path, "create-label", "--account", "999", "--title", "x"
    )
    assert code == 2 and "no account" in err
    code, out, err = await run_admin(
        db_url, tmp_path, "create-inbox", "--account", account, "--name", "S", "--csat-survey"
    )
    assert code == 0, err
    assert one_json_object(out)["csat_survey_enabled"] is True
